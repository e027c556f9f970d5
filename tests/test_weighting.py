"""Weighting rules as (init, update) transforms: each pinned against numpy, the traced switch over the
registry (a rule registered here is selectable by index), and the relation between ``ntk`` and ``ntk_mean``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinnlab import make_problem, nets, weighting
from pinnlab.training import TrainConfig, Trainer
from pinnlab.weighting import Rule, Stats, Transform

TRACES = np.array([3.0, 250.0, 0.7], np.float32)
COUNTS = np.array([300.0, 100.0, 300.0], np.float32)
PREVIOUS = np.array([2.0, 5.0, 0.5], np.float32)
MAX_ABS = np.array([0.3, 2.0, 7.0], np.float32)
MEAN_ABS = np.array([0.01, 0.5, 0.2], np.float32)


def _stats(traces=TRACES, gradients=True) -> Stats:
    grads = (lambda: (jnp.asarray(MAX_ABS), jnp.asarray(MEAN_ABS))) if gradients else None
    return Stats(jnp.asarray(traces), jnp.asarray(COUNTS), grads)


def _numpy(name: str, traces, counts, previous, momentum) -> np.ndarray:
    """Each rule written out in float64 numpy, independently of pinnlab."""
    traces, counts, previous = (np.asarray(x, np.float64) for x in (traces, counts, previous))
    if name == "none":
        return previous
    if name == "ntk":  # Algorithm 1
        return traces.sum() / traces
    if name == "ntk_mean":
        mean_diag = traces / counts
        return momentum * previous + (1 - momentum) * (mean_diag.mean() / mean_diag)
    if name == "gradnorm":
        target = np.float64(MAX_ABS[-1]) / MEAN_ABS.astype(np.float64)
        target[-1] = 1.0
        return momentum * previous + (1 - momentum) * target
    raise KeyError(name)


@pytest.mark.parametrize("name", ["none", "ntk", "ntk_mean", "gradnorm"])
def test_each_rule_init_and_update_equal_numpy_over_several_refreshes(name):
    momentum = 0.7
    transform = weighting.make(name, momentum=momentum)
    state = transform.init(jnp.asarray(PREVIOUS))
    np.testing.assert_array_equal(state, PREVIOUS)  # the state is the weights
    expected = PREVIOUS.astype(np.float64)
    rng = np.random.default_rng(0)
    for _ in range(3):  # the EMA rules chain their state from refresh to refresh
        traces = rng.uniform(0.1, 1e3, 3).astype(np.float32)
        weights, state = transform.update(_stats(traces), state)
        expected = _numpy(name, traces, COUNTS, expected, momentum)
        np.testing.assert_allclose(weights, expected, rtol=1e-5)
        np.testing.assert_array_equal(state, weights)


def test_ntk_ignores_the_state_and_ntk_mean_momentum_is_the_weight_on_the_old_value():
    got, _ = weighting.ntk().update(_stats(), jnp.asarray(PREVIOUS))
    np.testing.assert_allclose(got, TRACES.sum() / TRACES, rtol=1e-6)
    target = _numpy("ntk_mean", TRACES, COUNTS, PREVIOUS, 0.0)
    for momentum in (0.0, 0.5, 0.9, 1.0):
        got, _ = weighting.ntk_mean(momentum).update(_stats(), jnp.asarray(PREVIOUS))
        np.testing.assert_allclose(got, momentum * PREVIOUS + (1 - momentum) * target, rtol=1e-6)


def test_hyperparameters_are_read_from_the_factories():
    assert weighting.RULES["ntk"].hyperparameters == ()
    assert weighting.RULES["ntk_mean"].hyperparameters == ("momentum",)
    assert weighting.RULES["gradnorm"].hyperparameters == ("momentum",)
    a, _ = weighting.make("ntk_mean", momentum=0.2).update(_stats(), jnp.asarray(PREVIOUS))
    b, _ = weighting.make("ntk_mean").update(_stats(), jnp.asarray(PREVIOUS))  # the factory's default, 0.9
    np.testing.assert_allclose(a, _numpy("ntk_mean", TRACES, COUNTS, PREVIOUS, 0.2), rtol=1e-6)
    np.testing.assert_allclose(b, _numpy("ntk_mean", TRACES, COUNTS, PREVIOUS, 0.9), rtol=1e-6)


def test_update_with_each_index_equals_the_rule_without_recompiling():
    calls = []

    @jax.jit
    def update(index, traces, state, momentum):
        calls.append(1)
        return weighting.update(index, _stats(traces), state, momentum)

    for name in weighting.RULES:
        index = weighting.rule_index(name)
        for momentum in (0.3, 0.9):
            expected = _numpy(name, TRACES, COUNTS, PREVIOUS, momentum)
            weights, state = update(jnp.int32(index), jnp.asarray(TRACES), jnp.asarray(PREVIOUS), jnp.float32(momentum))
            np.testing.assert_allclose(weights, expected, rtol=1e-5, err_msg=name)
            np.testing.assert_array_equal(state, weights)
            eager, _ = weighting.update(index, _stats(), jnp.asarray(PREVIOUS), momentum)
            np.testing.assert_allclose(eager, expected, rtol=1e-5, err_msg=name)
    assert len(calls) == 1  # the rule index and momentum are traced values


def test_an_eager_update_runs_only_the_chosen_rule():
    # A rule switch between chunks (Trainer.set_rule) calls update eagerly; an eager lax.switch traced every
    # branch, so switching to Algorithm 1 computed gradnorm's gradient statistics too (70-250 ms a click).
    def gradients():
        raise AssertionError("gradnorm's statistics were computed for another rule")

    stats = Stats(jnp.asarray(TRACES), jnp.asarray(COUNTS), gradients)
    for name in ("none", "ntk", "ntk_mean"):
        weights, _ = weighting.update(weighting.rule_index(name), stats, jnp.asarray(PREVIOUS), 0.9)
        np.testing.assert_allclose(weights, _numpy(name, TRACES, COUNTS, PREVIOUS, 0.9), rtol=1e-5, err_msg=name)


def test_a_gradient_rule_keeps_its_state_without_gradients():
    index = weighting.rule_index("gradnorm")
    weights, state = weighting.update(index, _stats(gradients=False), jnp.asarray(PREVIOUS), 0.5)
    np.testing.assert_array_equal(weights, PREVIOUS)
    np.testing.assert_array_equal(state, PREVIOUS)


def _scaled(momentum=0.9) -> Transform:
    """A test rule: the EMA towards twice the Algorithm 1 weights."""

    def update(stats, state):
        weights = momentum * state + (1 - momentum) * 2 * jnp.sum(stats.traces) / stats.traces
        return weights, weights

    return Transform(lambda weights: weights, update)


def test_a_rule_registered_later_is_selectable_by_index_through_the_switch():
    assert "scaled" not in weighting.RULES
    problem = make_problem("poisson", n_b=6, n_r=8, n_eval=10)
    net = nets.convention("paper_code", width=6, depth=1)
    config = TrainConfig(chunk=2, update_every=2, momentum=0.5, ntk_every=0)
    Trainer(problem, net, dataclasses.replace(config, weighting="ntk_mean")).advance(2)  # compiled without it
    try:
        weighting.register(Rule("scaled", _scaled, ("traces",), "scaled", "twice Algorithm 1, smoothed"))
        index = weighting.rule_index("scaled")
        assert index == len(weighting.RULES) - 1 and index > weighting.rule_index("ntk_mean")
        expected = 0.25 * PREVIOUS + 0.75 * 2 * TRACES.sum() / TRACES
        update = jax.jit(weighting.update)
        weights, _ = update(jnp.int32(index), _stats(gradients=False), jnp.asarray(PREVIOUS), jnp.float32(0.25))
        np.testing.assert_allclose(weights, expected, rtol=1e-6)
        # and inside a trainer's jitted step, though one of the same structure was compiled before it was
        # registered (the registry keys the compiled chunks)
        trainer = Trainer(problem, net, dataclasses.replace(config, weighting="scaled"))
        snap = trainer.advance(2)
        t = snap.traces[0].astype(np.float64)
        np.testing.assert_allclose(snap.weights[0], 0.5 + 0.5 * 2 * t.sum() / t, rtol=1e-5)
    finally:
        weighting.RULES.pop("scaled", None)
    assert "scaled" not in weighting.RULES


def test_register_refuses_what_the_switch_cannot_run():
    def stateful(momentum=0.9):  # a state that is not the weights vector
        return Transform(lambda w: (w, jnp.zeros(())), lambda stats, state: (state[0], state))

    def needs_beta(beta):
        return weighting.ntk()

    for rule, pattern in ((Rule("bad", weighting.ntk, ("hessian",)), "unknown statistics"),
                          (Rule("bad", needs_beta), "'beta' is no live control"),
                          (Rule("bad", stateful), "init must be a weights vector")):
        with pytest.raises(ValueError, match=pattern):
            weighting.register(rule)
        assert "bad" not in weighting.RULES


def test_ntk_mean_target_is_ntk_over_m_for_equal_counts():
    for m in (2, 3, 5):
        traces = jnp.asarray(np.random.default_rng(m).uniform(0.1, 1e4, m), jnp.float32)
        stats = Stats(traces, jnp.full(m, 150.0))
        target, _ = weighting.ntk_mean(0.0).update(stats, jnp.zeros(m))
        np.testing.assert_allclose(target, weighting.ntk().update(stats, jnp.zeros(m))[0] / m, rtol=1e-5)


def _ntk(traces) -> np.ndarray:
    traces = jnp.asarray(traces, jnp.float32)
    return np.asarray(weighting.ntk().update(Stats(traces), jnp.ones_like(traces))[0])


@settings(max_examples=50, deadline=None, derandomize=True)
@given(st.lists(st.floats(1e-3, 1e6), min_size=2, max_size=5), st.floats(1e-3, 1e3))
def test_ntk_weight_invariants(traces, scale):
    """lambda_i Tr K_ii is the same for every term (it is sum_j Tr K_jj), sum_i 1/lambda_i = 1, and
    the weights do not change when the kernel is scaled."""
    traces = np.asarray(traces)
    w = _ntk(traces)
    np.testing.assert_allclose(w * traces, traces.sum(), rtol=1e-5)
    assert np.sum(1 / w) == pytest.approx(1.0, rel=1e-5)
    assert np.all(w >= 1.0 - 1e-6)
    np.testing.assert_allclose(_ntk(traces * scale), w, rtol=1e-5)


def test_rule_index():
    assert list(weighting.RULES)[:3] == ["none", "ntk", "ntk_mean"]  # "none" is 0: the step tests rule > 0
    assert [weighting.rule_index(r) for r in weighting.RULES] == list(range(len(weighting.RULES)))
    with pytest.raises(ValueError, match="'grad_norm'"):
        weighting.rule_index("grad_norm")
