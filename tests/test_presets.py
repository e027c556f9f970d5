"""One preset system: each problem's recipe is stated once, and the CLI, the lab and the paper's
experiments read it. The expected set-ups are the paper's (../shared/paper.md Secs. 5-6: Poisson 1x100,
GD 1e-5, 40,000 steps; wave 3x500, Adam 1e-3 x0.9 per 1000 steps, 80,000 steps, Algorithm 1 every 100)."""

from __future__ import annotations

import dataclasses

import pytest

from pinnlab import cli, paper
from pinnlab.problems import ENTRIES
from pinnlab.problems.registry import Entry, Recipe, register

PAPER = {  # problem: (width, depth, optimizer, lr, decay_steps, decay_rate, steps, update_every)
    "poisson": (100, 1, "sgd", 1e-5, None, 1.0, 40_000, None),
    "wave": (500, 3, "adam", 1e-3, 1000, 0.9, 80_000, 100),
}


def _setup(r: Recipe) -> tuple:
    return (r.width, r.depth, r.optimizer, r.lr, r.decay_steps, r.decay_rate, r.steps, r.update_every)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_the_paper_problems_recipes_are_the_papers_set_ups(name):
    assert _setup(ENTRIES[name].recipe) == PAPER[name]


def test_the_paper_experiments_read_the_recipes():
    width, depth, optimizer, lr, decay_steps, decay_rate, steps, every = PAPER["wave"]
    assert paper.E4_SCALES["full"]["width"] == width and paper.E4_SCALES["full"]["depth"] == depth
    assert paper.E4_SCALES["full"]["steps"] == steps and paper.E4_SCALES["full"]["spectra_at"][-1] == steps
    assert paper.E3_STEPS["full"] == paper.E2_SCALES["full"] == paper.E3_SWEEP_SCALES["full"]["steps"] == 40_000
    problem, net, config, members = paper.e3_sweep_runs((1.0,), 1, 10)
    assert (net.width, net.depth, config.optimizer, config.lr) == (100, 1, "sgd", 1e-5)


def test_the_cli_defaults_are_the_recipe_with_the_entrys_changes():
    assert ENTRIES["poisson"].train == ENTRIES["poisson"].recipe.fields()
    wave = ENTRIES["wave"].train
    assert (wave["width"], wave["steps"]) == (100, 2000)  # a CPU-sized run
    assert {k: v for k, v in wave.items() if k not in ("width", "steps")} == {
        k: v for k, v in ENTRIES["wave"].recipe.fields().items() if k not in ("width", "steps")}
    args = cli.build_parser().parse_args(["train", "--problem", "wave", "--out", "unused"])
    problem, net, preset = cli._setup(args)
    config = cli.train_config(args, preset, None)
    assert (net.width, net.depth, config.optimizer, config.lr, config.decay_steps, config.decay_rate,
            config.steps, config.update_every) == (100, 3, "adam", 1e-3, 1000, 0.9, 2000, 100)


def test_a_registered_recipe_reaches_the_cli_defaults_and_the_lab_fields():
    from pinnlab.lab.state import recipe_fields

    base = ENTRIES["heat"]
    recipe = Recipe(width=7, depth=2, optimizer="sgd", lr=0.5, steps=123, weighting="none", update_every=None,
                    chunk=10, decay_steps=500, decay_rate=0.81)
    entry = dataclasses.replace(base, name="heat_copy", recipe=recipe, cli=dict(steps=5))
    try:
        register(entry)
        assert entry.train == {**recipe.fields(), "steps": 5}
        fields = recipe_fields("heat_copy")
        assert fields == dict(problem="heat_copy", param=0.1, width=7, depth=2, optimizer="sgd", lr=0.5,
                              decay=pytest.approx(0.81**2), budget=123)
        with pytest.raises(ValueError, match="no Recipe fields"):
            register(dataclasses.replace(entry, name="bad", cli=dict(widht=3)))
    finally:
        ENTRIES.pop("heat_copy", None)
        ENTRIES.pop("bad", None)
    assert isinstance(base, Entry)
