"""The problem registry: each PDE file registers its factory with what the CLI and the lab need to know.

A problem's file calls :func:`register` once, at import; :mod:`pinnlab.problems` imports every module of
the package, so adding a PDE is one new file (plus its test) and the CLI (``--problem``, its parameter
options, ``--batch`` names, defaults and help) and the lab (its preset, parameter box and point counts)
derive the rest from the :class:`Entry`.

The one preset system: a problem's :class:`Recipe` is its reference training set-up (for the paper's
problems, the paper's: net, optimiser, schedule, step budget, weighting), stated once in its file. The
CLI's defaults (:attr:`Entry.train`, the recipe with the entry's ``cli`` changes), the lab's preset of
the problem (:func:`pinnlab.lab.state.recipe_fields` with the entry's ``lab`` changes) and the paper's
experiments (:mod:`pinnlab.paper`) all read it; the lab's figure presets are the experiments' changes
over it (:data:`pinnlab.paper.LAB_FIGURES`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from pinnlab.problems.base import Problem


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A training set-up: the network's size, the optimiser and its schedule, the step budget, the
    weighting rule and its refresh period (``None``: once, at step 0), and the steps per jitted chunk."""

    width: int
    depth: int
    optimizer: str
    lr: float
    steps: int
    weighting: str
    update_every: int | None
    chunk: int
    decay_steps: int | None = None
    decay_rate: float = 1.0

    def fields(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered problem.

    Attributes:
      name: the registry name (``--problem NAME``, ``problem=NAME`` in the lab).
      factory: ``factory(**parameters) -> Problem``; its float keywords are the PDE's parameters, its
        ``n_*`` keywords the point counts.
      summary: one line for ``pinnlab train --help``.
      params_help: what each float parameter means, e.g. ``{"a": "u = sin(a pi x)"}``.
      param: the one parameter the lab's box exposes.
      recipe: the problem's reference training set-up (the paper's, for the paper's problems).
      cli: where the CLI's defaults differ from the recipe (e.g. a CPU-sized net), :class:`Recipe` fields.
      lab, lab_caption: where the lab preset of the problem differs from the recipe
        (:class:`pinnlab.lab.state.LabState` fields) and its one-line caption.
      lab_points: the factory's point-count keywords for the lab's ``(n_b, n_r, n_ntk)`` boxes.
      aliases: ``--batch`` names that are not ``n_<term>`` (e.g. Poisson's ``u`` -> ``n_b``).
    """

    name: str
    factory: Callable[..., Problem]
    summary: str
    params_help: dict[str, str]
    param: str
    recipe: Recipe
    cli: dict[str, Any]
    lab: dict[str, Any]
    lab_caption: str
    lab_points: Callable[[int, int, int], dict[str, int]]
    aliases: dict[str, str] = dataclasses.field(default_factory=dict)

    def keywords(self) -> dict[str, inspect.Parameter]:
        return dict(inspect.signature(self.factory).parameters)

    @property
    def floats(self) -> tuple[str, ...]:
        """The factory's float parameters (its PDE parameters), in signature order."""
        return tuple(k for k, p in self.keywords().items() if isinstance(p.default, float))

    @property
    def train(self) -> dict[str, Any]:
        """The CLI's defaults: the recipe's fields with the entry's ``cli`` changes."""
        return {**self.recipe.fields(), **self.cli}

    @property
    def param_default(self) -> float:
        """The factory's default value of the lab's parameter."""
        return float(self.keywords()[self.param].default)

    @property
    def own_probe_points(self) -> bool:
        """Whether the NTK uses its own probe points (``n_ntk``) rather than the training points."""
        return "n_ntk" in self.keywords()


ENTRIES: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    """Add ``entry`` to :data:`ENTRIES` (checked: its lab parameter, documented parameters, CLI changes)."""
    if entry.param not in entry.floats:
        raise ValueError(f"problem {entry.name}: param {entry.param!r} is not a float keyword of its factory "
                         f"({', '.join(entry.floats)})")
    unknown = set(entry.cli) - set(entry.recipe.fields())
    if unknown:
        raise ValueError(f"problem {entry.name}: cli changes {sorted(unknown)} are no Recipe fields")
    undocumented = set(entry.floats) - set(entry.params_help)
    if undocumented:
        raise ValueError(f"problem {entry.name}: params_help lacks {sorted(undocumented)}")
    ENTRIES[entry.name] = entry
    return entry
