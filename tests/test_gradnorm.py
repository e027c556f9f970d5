"""The inverse gradient-norm rule (learning-rate annealing, Wang, Teng & Perdikaris 2021), added as one file
(pinnlab/weighting/gradnorm.py): its weights against gradients taken term by term in float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from pinnlab import TrainConfig, Trainer, cli, convention, make_problem, weighting
from pinnlab.ensemble import run_ensemble
from pinnlab.lab.state import resolve
from tests.conftest import float64, to64

NET = convention("paper_code", width=8)


@pytest.fixture(scope="module")
def poisson():
    return make_problem("poisson", n_b=10, n_r=12)


def _expected(trainer, previous, momentum):
    """max |dL_r/dtheta| / mean |dL_i/dtheta| from one float64 gradient per term, then the moving average."""
    with float64():
        params, data = to64(trainer.state.params), [jnp.asarray(x, jnp.float64) for x in trainer.data]
        grads = [np.abs(ravel_pytree(jax.grad(lambda p, t=t, x=x: t.loss(trainer.apply, p, x))(params))[0])
                 for t, x in zip(trainer.problem.terms, data, strict=True)]
    target = np.array([grads[-1].max() / g.mean() for g in grads])
    target[-1] = 1.0
    return momentum * np.asarray(previous, np.float64) + (1 - momentum) * target


def test_switching_to_the_rule_computes_it_at_once(poisson):
    trainer = Trainer(poisson, NET, TrainConfig(chunk=5, momentum=0.5))
    before = np.asarray(trainer.state.weights)
    trainer.set_rule("gradnorm")
    np.testing.assert_allclose(trainer.state.weights, _expected(trainer, before, 0.5), rtol=2e-4)
    assert trainer.history.events[-1] == {"step": 0, "field": "rule", "value": "gradnorm"}


def test_inside_the_jitted_step_it_refreshes_on_schedule(poisson):
    trainer = Trainer(poisson, NET, TrainConfig(chunk=3, weighting="gradnorm", update_every=3, momentum=0.9))
    trainer.advance(3)
    at_step_3 = trainer.state
    snap = trainer.advance(3)  # step 3 refreshes from the parameters at step 3, before its update
    trainer.state = at_step_3  # (for _expected, which reads the trainer's parameters)
    np.testing.assert_allclose(snap.weights[0], _expected(trainer, at_step_3.weights, 0.9), rtol=2e-4)
    np.testing.assert_array_equal(snap.weights[1], snap.weights[0])  # held between refreshes
    compiled, at_step_6 = trainer.compilations, trainer.state
    trainer.momentum = 0.3  # closed over by the rule as a traced control: no recompile
    snap = trainer.advance(3)
    trainer.state = at_step_6
    np.testing.assert_allclose(snap.weights[0], _expected(trainer, at_step_6.weights, 0.3), rtol=2e-4)
    assert trainer.compilations == compiled


def test_the_transform_against_numpy():
    max_abs, mean_abs = np.array([0.5, 3.0, 4.0], np.float32), np.array([0.02, 0.8, 0.1], np.float32)
    stats = weighting.Stats(jnp.ones(3), jnp.ones(3), lambda: (jnp.asarray(max_abs), jnp.asarray(mean_abs)))
    transform = weighting.make("gradnorm", momentum=0.25)
    state = transform.init(jnp.asarray([7.0, 2.0, 1.0]))
    expected = np.array([7.0, 2.0, 1.0])
    for _ in range(2):  # the state (the previous weights) chains the moving average
        weights, state = transform.update(stats, state)
        expected = 0.25 * expected + 0.75 * np.array([4.0 / 0.02, 4.0 / 0.8, 1.0])
        np.testing.assert_allclose(weights, expected, rtol=1e-6)
        np.testing.assert_array_equal(state, weights)


def test_only_runs_that_use_it_compile_its_statistics(poisson):
    assert not Trainer(poisson, NET, TrainConfig(chunk=4))._compiled.gradients
    plain = Trainer(poisson, NET, TrainConfig(chunk=4, weighting="ntk"))
    plain.advance(4)
    plain.set_rule("gradnorm")
    plain.advance(4)  # the first switch to a gradient rule takes the step with its statistics (one compile)
    assert plain._compiled.gradients
    compiled = plain.compilations
    for rule in ("ntk", "gradnorm", "none"):
        plain.set_rule(rule)
        plain.advance(4)
    assert plain.compilations == compiled  # from then on, switching never recompiles


def test_where_it_is_offered(poisson, tmp_path):
    assert "gradnorm" in weighting.RULES and weighting.needs_gradients("gradnorm")
    assert not weighting.needs_gradients("ntk")
    with pytest.raises(ValueError, match="unknown rule 'gradnorm'"):  # the lab toggles never compile
        resolve("poisson", rule="gradnorm")
    with pytest.raises(ValueError, match="trace-based weighting rules only"):
        run_ensemble(poisson, NET, TrainConfig(weighting="gradnorm", steps=4, chunk=4), [0, 1])
    code = cli.main(["train", "--problem", "poisson", "--width", "8", "--steps", "20", "--chunk", "10",
                     "--weighting", "gradnorm", "--update-every", "10", "--no-progress", "--no-report",
                     "--out", str(tmp_path)])
    assert code == 0
