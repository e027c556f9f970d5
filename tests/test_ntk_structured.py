"""The structured (Taylor-stream) NTK equals the Jacobian path, and the declared operators equal the residuals."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinnlab import make_net, make_problem, nets, ntk
from pinnlab import ntk_structured as ns

SMALL = {"poisson": dict(n_eval=20), "wave": dict(n_eval=10), "heat": dict(n_eval=10)}
CASES = [(p, c, "tanh") for p in ("poisson", "wave", "heat") for c in ("paper_code", "paper_text")]
CASES += [("wave", "paper_code", a) for a in ("sin", "gelu", "softplus", "swish")]


def _setup(name, conv, act, width=6, depth=2, n=5, seed=0, dtype=jnp.float64):
    problem = make_problem(name, **SMALL[name])
    config = nets.convention(conv, problem.default_init, width=width, depth=depth, activation=act)
    net = make_net(config, problem.dim, problem.mean, problem.std, jax.random.key(seed))
    params = jax.tree.map(lambda a: a.astype(dtype), net.params)
    points = [x[:n].astype(dtype) for x in problem.sample(jax.random.key(seed + 1), ntk=True)]
    return problem, net, params, points


@pytest.mark.parametrize("name,conv,act", CASES)
def test_structured_kernel_equals_jacobian_path(name, conv, act):
    with jax.enable_x64(True):
        problem, net, params, points = _setup(name, conv, act)
        reference = ntk.kernel(net.apply, params, problem.terms, points)
        structured = np.asarray(ns.kernel(net.apply, params, problem.terms, points))
    assert np.abs(reference).max() > 0
    np.testing.assert_allclose(structured, reference, rtol=0, atol=1e-10 * np.abs(reference).max())


def test_structured_float32_close_to_jacobian_path():
    problem, net, params, points = _setup("wave", "paper_code", "tanh", width=32, depth=3, n=20, dtype=jnp.float32)
    reference = ntk.kernel(net.apply, params, problem.terms, points)
    structured = np.asarray(ns.kernel(net.apply, params, problem.terms, points))
    assert np.abs(structured - reference).max() <= 1e-5 * np.abs(reference).max()


@pytest.mark.parametrize("name", ["poisson", "wave", "heat"])
def test_declared_operators_equal_the_residuals(name):
    """residual(u) - residual(0) is the operator applied to u: a wrong declaration fails here."""
    with jax.enable_x64(True):
        problem, net, params, points = _setup(name, "paper_code", "tanh")
        zero = lambda p, x: jnp.zeros(x.shape[:-1], x.dtype)
        for term, x in zip(problem.terms, points):
            linear = term.residuals(net.apply, params, x) - term.residuals(zero, params, x)
            declared = jax.vmap(lambda p: ns.operator_value(net.apply.mlp_spec, params, p, term.operator))(x)
            np.testing.assert_allclose(declared, linear, rtol=1e-10, atol=1e-12, err_msg=term.name)
            wrong = {k: 2.0 * c for k, c in term.operator.items()}
            bad = jax.vmap(lambda p: ns.operator_value(net.apply.mlp_spec, params, p, wrong))(x)
            assert not np.allclose(bad, linear, rtol=1e-6)


@settings(max_examples=4, deadline=None)
@given(width=st.integers(2, 9), depth=st.integers(1, 3), act=st.sampled_from(sorted(nets.ACTIVATIONS)),
       param=st.sampled_from(nets.PARAMETERIZATIONS), standardize=st.booleans())
def test_structured_block_on_random_architectures(width, depth, act, param, standardize):
    with jax.enable_x64(True):
        problem = make_problem("heat", **SMALL["heat"])
        config = nets.NetConfig(width=width, depth=depth, parameterization=param, init="glorot_normal",
                                standardize=standardize, activation=act)
        net = make_net(config, problem.dim, problem.mean, problem.std, jax.random.key(width))
        params = jax.tree.map(lambda a: a.astype(jnp.float64), net.params)
        x = [p[:4].astype(jnp.float64) for p in problem.sample(jax.random.key(depth), ntk=True)]
        r, u = problem.term("r"), problem.term("u")
        reference = ntk.block(net.apply, params, r, x[1], u, x[0])
        structured = np.asarray(ns.block(net.apply, params, r, x[1], u, x[0]))
    np.testing.assert_allclose(structured, reference, rtol=0, atol=1e-10 * np.abs(reference).max())


def test_says_why_it_does_not_apply():
    problem, net, params, points = _setup("poisson", "paper_code", "tanh", dtype=jnp.float32)
    term = problem.term("r")
    assert ns.reason_not_structured(net.apply, term) is None
    plain = dataclasses.replace(term, operator=None)
    assert "declares no linear operator" in ns.reason_not_structured(net.apply, plain)
    other = lambda p, x: net.apply(p, x)  # not a pinnlab MLP as far as the structured path can tell
    assert "not a pinnlab MLP" in ns.reason_not_structured(other, term)
    with pytest.raises(ValueError, match="declares no linear operator"):
        ns.block(net.apply, params, plain, points[1])
