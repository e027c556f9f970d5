"""Weighting rules: the formulas, the traced switch, and the relation between ``ntk`` and ``ntk_mean``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinnlab import weighting

TRACES = np.array([3.0, 250.0, 0.7], np.float32)
COUNTS = np.array([300.0, 100.0, 300.0], np.float32)
PREVIOUS = np.array([2.0, 5.0, 0.5], np.float32)


def test_ntk_is_algorithm_1():
    got = weighting.ntk(jnp.asarray(TRACES), jnp.asarray(COUNTS), jnp.asarray(PREVIOUS), 0.9)
    np.testing.assert_allclose(got, TRACES.sum() / TRACES, rtol=1e-6)  # raw traces, previous ignored


def test_ntk_mean_is_an_ema_of_mean_diagonal_ratios():
    mean_diag = TRACES / COUNTS
    target = mean_diag.mean() / mean_diag
    for momentum in (0.0, 0.5, 0.9, 1.0):
        got = weighting.ntk_mean(jnp.asarray(TRACES), jnp.asarray(COUNTS), jnp.asarray(PREVIOUS), momentum)
        np.testing.assert_allclose(got, momentum * PREVIOUS + (1 - momentum) * target, rtol=1e-6)


def test_none_keeps_the_weights():
    got = weighting.none(jnp.asarray(TRACES), jnp.asarray(COUNTS), jnp.asarray(PREVIOUS), 0.9)
    np.testing.assert_array_equal(got, PREVIOUS)


def test_update_with_each_index_equals_the_rule_without_recompiling():
    calls = []

    @jax.jit
    def update(index, traces, counts, previous, momentum):
        calls.append(1)
        return weighting.update(index, traces, counts, previous, momentum)

    for name, rule in (("none", weighting.none), ("ntk", weighting.ntk), ("ntk_mean", weighting.ntk_mean)):
        index = weighting.rule_index(name)
        for momentum in (0.3, 0.9):
            args = (jnp.asarray(TRACES), jnp.asarray(COUNTS), jnp.asarray(PREVIOUS), jnp.float32(momentum))
            np.testing.assert_allclose(update(jnp.int32(index), *args), rule(*args), rtol=1e-6)
            np.testing.assert_allclose(weighting.update(index, *args), rule(*args), rtol=1e-6)
    assert len(calls) == 1  # the rule index and momentum are traced values


def test_ntk_mean_target_is_ntk_over_m_for_equal_counts():
    for m in (2, 3, 5):
        traces = jnp.asarray(np.random.default_rng(m).uniform(0.1, 1e4, m), jnp.float32)
        counts = jnp.full(m, 150.0)
        target = weighting.ntk_mean(traces, counts, jnp.zeros(m), 0.0)
        np.testing.assert_allclose(target, weighting.ntk(traces, counts, None) / m, rtol=1e-5)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(st.lists(st.floats(1e-3, 1e6), min_size=2, max_size=5), st.floats(1e-3, 1e3))
def test_ntk_weight_invariants(traces, scale):
    """lambda_i Tr K_ii is the same for every term (it is sum_j Tr K_jj), sum_i 1/lambda_i = 1, and
    the weights do not change when the kernel is scaled."""
    traces = np.asarray(traces)
    w = np.asarray(weighting.ntk(jnp.asarray(traces, jnp.float32), None, None))
    np.testing.assert_allclose(w * traces, traces.sum(), rtol=1e-5)
    assert np.sum(1 / w) == pytest.approx(1.0, rel=1e-5)
    assert np.all(w >= 1.0 - 1e-6)
    np.testing.assert_allclose(weighting.ntk(jnp.asarray(traces * scale, jnp.float32), None, None), w, rtol=1e-5)


def test_rule_index():
    assert list(weighting.RULES)[:3] == ["none", "ntk", "ntk_mean"]  # "none" is 0: the step tests rule > 0
    assert [weighting.rule_index(r) for r in weighting.RULES] == list(range(len(weighting.RULES)))
    with pytest.raises(ValueError, match="'grad_norm'"):
        weighting.rule_index("grad_norm")
