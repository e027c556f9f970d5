"""Taylor-stream residuals (:mod:`pinnlab.residuals`) equal the nested-``jvp`` ones, and training uses them."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinnlab import derivatives, make_net, make_problem, nets, residuals, streams, training
from pinnlab.training import TrainConfig, Trainer

CASES = [(p, c, "tanh") for p in ("poisson", "wave", "heat") for c in nets.CONVENTIONS]
CASES += [("wave", "paper_code", "sin"), ("heat", "paper_code", "gelu"), ("poisson", "paper_text", "softplus")]
SMALL = {"poisson": dict(n_b=10, n_r=12, n_eval=50), "wave": dict(n_u=12, n_ut=6, n_r=12, n_ntk=9, n_eval=10),
         "heat": dict(n_u=12, n_r=12, n_ntk=9, n_eval=10)}  # as in conftest: the instances are shared


def small_problem(name):
    return make_problem(name, **SMALL[name])


def _net(problem, conv, act, width=7, depth=3, seed=0):
    config = nets.convention(conv, problem.default_init, width=width, depth=depth, activation=act)
    return make_net(config, problem.dim, problem.mean, problem.std, jax.random.key(seed))


def _batches(problem, seed=1, dtype=jnp.float64):
    return [jnp.asarray(x, dtype) for x in problem.sample(jax.random.key(seed))]


def _streamed_losses(apply, terms, params, batches):
    """Every term with an operator through the streams (training only streams where it pays)."""
    return residuals.losses(apply, terms, params, batches, select=residuals.can_stream)


def _nested_losses(apply, terms, params, batches):
    return [t.loss(apply, params, x) for t, x in zip(terms, batches, strict=True)]


def _rel(a, b) -> float:
    a, b = (np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(t)]) for t in (a, b))
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _without_operators(problem):
    return dataclasses.replace(problem, terms=tuple(dataclasses.replace(t, operator=None) for t in problem.terms))


@pytest.mark.parametrize("name,conv,act", CASES)
def test_streamed_residuals_loss_and_gradient_equal_nested_jvp(name, conv, act):
    problem = small_problem(name)
    with jax.enable_x64(True):
        net = _net(problem, conv, act)
        params = jax.tree.map(lambda a: a.astype(jnp.float64), net.params)
        batches = _batches(problem)
        assert all(residuals.can_stream(net.apply, t) for t in problem.terms)

        @jax.jit
        def both(p):
            streamed = residuals.residuals(net.apply, problem.terms, p, batches, select=residuals.can_stream)
            nested = [t.residuals(net.apply, p, x) for t, x in zip(problem.terms, batches, strict=True)]
            total = lambda fn: jax.value_and_grad(lambda q: sum(fn(net.apply, problem.terms, q, batches)))(p)  # noqa: E731
            return streamed, nested, total(_streamed_losses), total(_nested_losses)

        streamed, nested, (loss, grad), (ref_loss, ref_grad) = both(params)
    for t, r, ref in zip(problem.terms, streamed, nested, strict=True):
        assert r.dtype == jnp.float64 and r.shape == ref.shape
        np.testing.assert_allclose(r, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max(), err_msg=t.name)
    assert float(ref_loss) > 0
    assert abs(float(loss) - float(ref_loss)) <= 1e-10 * float(ref_loss)
    assert _rel(grad, ref_grad) <= 1e-10


def _nested_operator(apply, params, operator, x):
    """``sum_k c_k u_k`` at every point of x by nested ``jax.jvp`` of the net (pinnlab.derivatives)."""
    def value(key, y):
        u = lambda z: apply(params, z)  # noqa: E731
        if key == streams.PRIMAL:
            return u(y)
        order, i = streams.parse(key)
        return (derivatives.d1 if order == 1 else derivatives.d2)(u, i)(y)

    return jax.vmap(lambda y: sum(c * value(k, y) for k, c in operator.items()))(x)


def test_one_pass_equals_nested_jvp_and_splits_the_operator():
    """Operators no problem declares (first and second derivatives in one direction, the primal alone, a
    zero coefficient) through :func:`pinnlab.streams.forward`, against nested ``jax.jvp`` of the net."""
    problem = small_problem("wave")
    with jax.enable_x64(True):
        net = _net(problem, "paper_text", "swish", depth=2)
        params = jax.tree.map(lambda a: a.astype(jnp.float64), net.params)
        x = _batches(problem)[2]
        operators = [{"u": 0.5, "d1": 2.0, "dd1": -3.0}, {"dd0": 1.0}, {"d0": -1.0, "d1": 0.25}, {"u": 2.0},
                     {"u": 1.0, "d0": 0.0, "dd1": 1.5}]
        spec, points = net.apply.mlp_spec, [x[: 3 + i] for i in range(len(operators))]
        values, refs = jax.jit(lambda p: (
            residuals.operator_values(spec, p, operators, points),
            [_nested_operator(net.apply, p, op, z) for op, z in zip(operators, points)],
        ))(params)
    for op, v, ref in zip(operators, values, refs, strict=True):
        assert np.abs(ref).max() > 0
        np.testing.assert_allclose(v, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max(), err_msg=str(op))
    split = streams.split({"u": 0.5, "d1": 2.0, "dd1": -3.0, "dd0": 1.0, "d0": 0.0})
    assert split == streams.Split(0.5, ((1, 2.0),), ((0, 1.0), (1, -3.0)))
    assert split.count == 4 and streams.split({"u": 1.0}).count == 1 and streams.split({"d0": 1.0}).count == 2


@settings(max_examples=5, deadline=None)
@given(width=st.integers(2, 9), depth=st.integers(1, 3), act=st.sampled_from(sorted(nets.ACTIVATIONS)),
       param=st.sampled_from(nets.PARAMETERIZATIONS), standardize=st.booleans())
def test_streamed_losses_on_random_architectures(width, depth, act, param, standardize):
    problem = small_problem("wave")
    with jax.enable_x64(True):
        config = nets.NetConfig(width=width, depth=depth, parameterization=param, init="lecun_normal",
                                standardize=standardize, activation=act)
        net = make_net(config, problem.dim, problem.mean, problem.std, jax.random.key(width + 10 * depth))
        params = jax.tree.map(lambda a: a.astype(jnp.float64), net.params)
        batches = _batches(problem, seed=depth)
        new, ref = jax.jit(lambda p: [jnp.stack(fn(net.apply, problem.terms, p, batches))
                                      for fn in (_streamed_losses, _nested_losses)])(params)
    np.testing.assert_allclose(new, ref, rtol=1e-10)


def test_streams_only_where_two_or_more_derivative_streams_and_fall_back_otherwise():
    heat, wave, poisson = (small_problem(n) for n in ("heat", "wave", "poisson"))
    net = _net(heat, "paper_code", "tanh")
    plain_apply = lambda p, x: net.apply(p, x)  # noqa: E731  (no mlp_spec: not known to be a pinnlab MLP)
    chosen = {(p.name, t.name): residuals.should_stream(net.apply, t) for p in (heat, wave, poisson) for t in p.terms}
    assert chosen == {("heat", "u"): False, ("heat", "r"): True, ("wave", "u"): False, ("wave", "ut"): False,
                      ("wave", "r"): True, ("poisson", "u"): False, ("poisson", "r"): False}
    assert all(residuals.can_stream(net.apply, t) for p in (heat, wave, poisson) for t in p.terms)
    assert not residuals.can_stream(plain_apply, heat.terms[1])
    without = dataclasses.replace(heat.terms[1], operator=None)
    assert not residuals.can_stream(net.apply, without) and not residuals.should_stream(net.apply, without)
    batches = _batches(heat, dtype=jnp.float32)
    ref = jax.jit(lambda p: _nested_losses(net.apply, heat.terms, p, batches))(net.params)
    for apply, terms in ((net.apply, (heat.terms[0], without)), (plain_apply, heat.terms), (net.apply, heat.terms)):
        losses = jax.jit(lambda p, apply=apply, terms=terms: residuals.losses(apply, terms, p, batches))(net.params)
        np.testing.assert_allclose(losses, ref, rtol=1e-5)


def test_total_loss_streams_the_wave_residual(monkeypatch):
    problem = small_problem("wave")
    net = _net(problem, "paper_code", "tanh")
    calls = []
    original = residuals.operator_values
    monkeypatch.setattr(residuals, "operator_values",
                        lambda spec, params, ops, pts: calls.append(ops) or original(spec, params, ops, pts))
    batches = _batches(problem, dtype=jnp.float32)
    jax.make_jaxpr(lambda p: training.total_loss(net.apply, problem, p, batches, jnp.ones(3)))(net.params)
    assert calls == [[problem.term("r").operator]]


def test_training_run_unchanged_to_float32_rounding():
    """The same wave run with every term's operator declared (r by streams) and with none (all nested jvp)."""
    problem = small_problem("wave")
    net = nets.convention("paper_code", problem.default_init, width=16, depth=2)
    config = TrainConfig(optimizer="adam", lr=1e-3, steps=30, chunk=10, weighting="ntk", update_every=10, seed=3)
    runs = [Trainer(p, net, config) for p in (problem, _without_operators(problem))]
    for trainer in runs:
        trainer.advance(30)
    streamed, nested = (t.history.curve("losses") for t in runs)
    assert streamed.shape == (30, len(problem.terms)) and np.all(np.isfinite(streamed))
    np.testing.assert_allclose(streamed, nested, rtol=2e-5)
    np.testing.assert_allclose(*(t.history.curve("weights") for t in runs), rtol=2e-5)
    assert _rel(runs[0].state.params, runs[1].state.params) < 1e-6
    assert nested[-1].sum() < nested[0].sum()  # the fallback path trains
