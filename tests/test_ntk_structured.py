"""The structured (Taylor-stream) NTK equals the Jacobian path, and the declared operators equal the residuals."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinnlab import derivatives, make_net, make_problem, nets, ntk, residuals, streams
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


def _kernel(apply, params, terms, points) -> np.ndarray:
    """``ns.kernel`` (the traceable one-program K) under ``jit``: eagerly, its backward pass runs op by
    op and took ~5x longer than compiling it."""
    return np.asarray(jax.jit(lambda p, x: ns.kernel(apply, p, terms, x))(params, points))


@pytest.mark.parametrize("name,conv,act", CASES)
def test_structured_kernel_equals_jacobian_path(name, conv, act):
    with jax.enable_x64(True):
        problem, net, params, points = _setup(name, conv, act)
        reference = ntk.kernel(net.apply, params, problem.terms, points, method="jacobian")
        structured = _kernel(net.apply, params, problem.terms, points)
    assert np.abs(reference).max() > 0
    np.testing.assert_allclose(structured, reference, rtol=0, atol=1e-10 * np.abs(reference).max())


def test_structured_float32_close_to_jacobian_path():
    problem, net, params, points = _setup("wave", "paper_code", "tanh", width=32, depth=3, n=20, dtype=jnp.float32)
    reference = ntk.kernel(net.apply, params, problem.terms, points, method="jacobian")
    structured = _kernel(net.apply, params, problem.terms, points)
    assert np.abs(structured - reference).max() <= 1e-5 * np.abs(reference).max()


@pytest.mark.parametrize("name", ["poisson", "wave", "heat"])
def test_declared_operators_equal_the_residuals(name):
    """residual(u) - residual(0) is the operator applied to u: a wrong declaration fails here."""
    with jax.enable_x64(True):
        problem, net, params, points = _setup(name, "paper_code", "tanh")
        zero = lambda p, x: jnp.zeros(x.shape[:-1], x.dtype)
        for term, x in zip(problem.terms, points):
            linear = term.residuals(net.apply, params, x) - term.residuals(zero, params, x)
            (declared,) = residuals.operator_values(net.apply.mlp_spec, params, [term.operator], [x])
            np.testing.assert_allclose(declared, linear, rtol=1e-10, atol=1e-12, err_msg=term.name)
            wrong = {k: 2.0 * c for k, c in term.operator.items()}
            (bad,) = residuals.operator_values(net.apply.mlp_spec, params, [wrong], [x])
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
        reference = ntk.block(net.apply, params, r, x[1], u, x[0], method="jacobian")
        structured = np.asarray(jax.jit(lambda p, a, b: ns.block(net.apply, p, r, a, u, b))(params, x[1], x[0]))
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
    with pytest.raises(ValueError, match="declares no linear operator"):
        ntk.kernel(net.apply, params, (problem.term("u"), plain), points, method="structured")
    with pytest.raises(ValueError, match="unknown NTK method 'fast'"):
        ntk.traces(net.apply, params, problem.terms, points, method="fast")
    assert ntk.explain(net.apply, problem.terms) == {"u": "structured", "r": "structured"}
    assert ntk.explain(net.apply, (problem.term("u"), plain)) == {
        "u": "structured", "r": "jacobian: term 'r' declares no linear operator (Term.operator)"}
    assert ntk.resolve_method(net.apply, problem.terms) == "structured"
    assert ntk.resolve_method(net.apply, (problem.term("u"), plain)) == "jacobian"
    assert ntk.resolve_method(other, problem.terms) == "jacobian"


def test_auto_falls_back_to_the_jacobian_path_with_the_same_numbers():
    """A term without an operator (and a net that is not a pinnlab MLP) still gets its exact kernel."""
    with jax.enable_x64(True):
        problem, net, params, points = _setup("heat", "paper_code", "tanh")
        plain = tuple(dataclasses.replace(t, operator=None) if t.name == "r" else t for t in problem.terms)
        reference = ntk.kernel(net.apply, params, problem.terms, points, method="jacobian")
        auto = ntk.kernel(net.apply, params, plain, points)
        other = ntk.kernel(lambda p, x: net.apply(p, x), params, problem.terms, points)
    np.testing.assert_allclose(auto, reference, rtol=1e-12, atol=1e-12 * np.abs(reference).max())
    np.testing.assert_allclose(other, reference, rtol=1e-12, atol=1e-12 * np.abs(reference).max())


def test_compiled_kernels_are_keyed_by_the_operator():
    """Term equality ignores ``operator``: a cached kernel of one operator must not serve another."""
    with jax.enable_x64(True):
        problem, net, params, points = _setup("poisson", "paper_code", "tanh")
        r = problem.term("r")
        doubled = dataclasses.replace(r, operator={k: 2.0 * c for k, c in r.operator.items()})
        assert doubled == r
        k1 = ntk.block(net.apply, params, r, points[1])
        k2 = ntk.block(net.apply, params, doubled, points[1])
    np.testing.assert_allclose(k2, 4.0 * k1, rtol=1e-12)


@pytest.mark.parametrize("name", ["poisson", "wave", "heat"])
def test_matvec_equals_kernel_times_vector(name):
    with jax.enable_x64(True):
        problem, net, params, points = _setup(name, "paper_text", "sin")
        reference = ntk.kernel(net.apply, params, problem.terms, points, method="jacobian")
        kv = ns.matvec(net.apply, params, problem.terms, points)
        for seed in range(2):
            v = np.random.default_rng(seed).normal(size=reference.shape[0])
            np.testing.assert_allclose(np.asarray(kv(jnp.asarray(v))), reference @ v, rtol=1e-10,
                                       atol=1e-10 * np.abs(reference @ v).max())


def stream_keys(operator: dict) -> tuple[str, ...]:
    """One stream per derivative: the primal, d/dx_i for every direction used, d2/dx_i2 where asked."""
    parsed = [streams.parse(k) for k in operator if k != streams.PRIMAL]
    keys = [streams.PRIMAL]
    for i in sorted({i for _, i in parsed}):
        keys.append(f"d{i}")
        if (2, i) in parsed:
            keys.append(f"dd{i}")
    return tuple(keys)


def pure_streams(operator: dict) -> tuple[str, ...]:
    """The reference count of the factor streams: the streams of the operator's nonzero terms that no
    other stream reads (every d2/dx_i2, d/dx_i where d2/dx_i2 is not needed, the primal when it is the
    only stream). Their gradients are proportional (``g_k = c_k b``: the same linear recursion backward),
    so the factor pass may carry them as one stream: ``len(stream_keys) - len(pure) + 1`` in all."""
    operator = {k: c for k, c in operator.items() if c != 0}  # a zero term needs none of its streams
    keys = stream_keys(operator)
    read = {f"d{streams.parse(k)[1]}" for k in keys if k.startswith("dd")}
    read |= {streams.PRIMAL} if len(keys) > 1 else set()
    return tuple(k for k in keys if k in operator and k not in read)


# Operators no problem declares: first and second derivatives in one direction, several first
# derivatives, the primal alone, a zero coefficient.
OTHER_OPERATORS = [{"u": 0.5, "d1": 2.0, "dd1": -3.0, "dd0": 1.0}, {"d0": 1.0, "dd0": 2.0}, {"d0": -1.0, "d1": 0.25},
                   {"u": 2.0}, {"dd0": 0.0, "dd1": 1.0}]


def _operator_term(problem, operator):
    """The wave's interior term with ``residual = sum_k c_k u_k`` (derivatives by nested jvp)."""
    def value(u, key, x):
        if key == streams.PRIMAL:
            return u(x)
        order, i = streams.parse(key)
        return (derivatives.d1 if order == 1 else derivatives.d2)(u, i)(x)

    residual = lambda u, x: sum(c * value(u, k, x) for k, c in operator.items())  # noqa: E731
    return dataclasses.replace(problem.term("r"), name="op", residual=residual, operator=operator)


# Factor streams S per operator, counted by hand from the combined-stream form: the primal, d/dx_j for
# each direction j with a nonzero second derivative (the curvature reads it), and one combined stream of
# every nonzero derivative term (absent when there is none). Each line's second entry is that count.
HAND_STREAM_COUNTS = [
    ({"u": 1.0}, 1),  # the primal alone
    ({"d0": 1.0}, 2),  # u, S = u_t
    ({"dd0": 1.0, "dd1": -4.0}, 4),  # the wave: u, u_t, u_x, S = u_tt - 4 u_xx
    ({"d0": 1.0, "dd1": -0.1}, 3),  # the heat: u, u_x, S = u_t - 0.1 u_xx
    ({"d0": 1.0, "dd0": 2.0}, 3),  # u, u_t, S = u_t + 2 u_tt
    ({"u": 1.0, "dd0": 1.0}, 3),  # u, u_t, S = u_tt
    ({"dd0": 0.0, "dd1": 1.0}, 3),  # the zero term needs no stream: u, u_x, S = u_xx
]


@pytest.mark.parametrize("operator,count", HAND_STREAM_COUNTS, ids=lambda v: str(v))
def test_merged_factor_streams_give_each_layers_jacobian(operator, count):
    """The factor pass carries the hand-counted S streams, and per layer they give the explicit Jacobian:
    sum_k a_k g_k^T = dr/dW and g_u = dr/db with J by jacfwd of the nested-jvp residual (float64, NTK
    parameterisation so that a_k carries the layer scale s). Merging streams whose gradients are not
    proportional changes dr/dW; carrying streams that could be merged changes S."""
    with jax.enable_x64(True):
        problem, net, params, points = _setup("wave", "paper_text", "tanh")
        term, x = _operator_term(problem, operator), points[2]
        f = jax.jit(lambda p, y: ns.factors(net.apply.mlp_spec, p, term, y))(params, x)
        jac = jax.jit(jax.jacfwd(lambda p: term.residuals(net.apply, p, x)))(params)
    layers = streams.layers(params)
    assert len(f) == len(layers) == 3
    for depth, (factor, layer, grad) in enumerate(zip(f, layers, streams.layers(jac), strict=True)):
        assert factor.a.shape == (count, len(x), layer["w"].shape[0]), (depth, factor.a.shape)
        assert factor.g.shape == (count, len(x), layer["w"].shape[1]), (depth, factor.g.shape)
        d_w, d_b = np.asarray(grad["w"]), np.asarray(grad["b"])  # (n, in, out), (n, out)
        scale = max(np.abs(d_w).max(), np.abs(d_b).max())
        assert scale > 0
        np.testing.assert_allclose(np.einsum("snp,snq->npq", factor.a, factor.g), d_w, rtol=0, atol=1e-12 * scale,
                                   err_msg=f"dr/dW of layer {depth}")
        np.testing.assert_allclose(factor.g[0], d_b, rtol=0, atol=1e-12 * scale, err_msg=f"dr/db of layer {depth}")


@pytest.mark.parametrize("operator", OTHER_OPERATORS, ids=str)
def test_structured_kernel_of_other_operators_in_one_and_in_several_factor_batches(operator, monkeypatch):
    with jax.enable_x64(True):
        problem, net, params, points = _setup("wave", "paper_text", "tanh")
        terms, x = (problem.term("u"), _operator_term(problem, operator)), [points[0], points[2]]
        reference = ntk.kernel(net.apply, params, terms, x, method="jacobian")
        whole = _kernel(net.apply, params, terms, x)
        monkeypatch.setattr(ns, "FACTOR_BATCH", 2)  # 5 points: two batches of 2 and a remainder of 1
        batched = _kernel(net.apply, params, terms, x)
        diag = np.asarray(jax.jit(lambda p, y: ns.diagonal(net.apply, p, terms[1], y))(params, x[1]))
    assert np.abs(reference).max() > 0
    for k in (whole, batched):
        np.testing.assert_allclose(k, reference, rtol=0, atol=1e-10 * np.abs(reference).max())
    np.testing.assert_allclose(diag, np.diag(reference)[5:], rtol=1e-10)


def test_factor_pass_carries_the_pure_streams_as_one():
    """Per layer, ``a`` (S, n, in) and ``g`` (S, n, out) with S = len(stream_keys) - len(pure) + 1: the
    wave residual takes 4 streams where the per-point streams are 5; a zero coefficient drops its streams."""
    problem, net, params, points = _setup("wave", "paper_code", "tanh", dtype=jnp.float32)
    widths = [(layer["w"].shape[0], layer["w"].shape[1]) for layer in streams.layers(params)]

    def count(operator):
        term = dataclasses.replace(problem.term("r"), operator=operator)
        f = jax.eval_shape(lambda p, x: ns.factors(net.apply.mlp_spec, p, term, x), params, points[2])  # shapes only
        assert [(x.a.shape[2], x.g.shape[2]) for x in f] == widths
        assert {x.a.shape[:2] for x in f} == {x.g.shape[:2] for x in f} == {(f[0].a.shape[0], points[2].shape[0])}
        return f[0].a.shape[0]

    assert count(problem.term("r").operator) == 4
    for operator in [*OTHER_OPERATORS, {"u": 1.0, "d0": 0.0}, {"dd0": 1.0, "d1": 0.0, "dd1": 0.0}]:
        nonzero = {k: c for k, c in operator.items() if c != 0}
        pure = pure_streams(operator)
        assert count(operator) == len(stream_keys(nonzero)) - len(pure) + 1, operator
    assert count({"dd0": 0.0, "dd1": 1.0}) == count({"dd1": 1.0}) == 3
    assert count({"u": 1.0, "d0": 0.0}) == 1


@pytest.mark.parametrize("direct", [True, False], ids=["layer-jacobians", "stream-grams"])
def test_both_routes_of_every_layer_equal_the_jacobian_path(direct, monkeypatch):
    """Every layer and block forced through J_l itself, then through the stream Grams (the small nets of
    the other tests mostly take J_l), float64, with terms of 1, 3 and 4 streams and panel-sized blocks."""
    monkeypatch.setattr(ns, "_direct_is_cheaper", lambda fi, fj: direct)
    with jax.enable_x64(True):
        problem, net, params, points = _setup("wave", "paper_text", "tanh", width=8, depth=3)
        terms = (problem.term("u"), _operator_term(problem, {"d0": 1.0, "dd1": -2.0}), problem.term("r"))
        x = [points[0], points[1], points[2]]
        reference = ntk.kernel(net.apply, params, terms, x, method="jacobian")
        structured = _kernel(net.apply, params, terms, x)
        panels = np.asarray(jax.jit(lambda p, a, b: ns.block(net.apply, p, terms[2], a, terms[1], b, max_bytes=1))(
            params, x[2], x[1]))
    n0, n1 = len(x[0]), len(x[0]) + len(x[1])
    assert np.abs(reference).max() > 0
    np.testing.assert_allclose(structured, reference, rtol=0, atol=1e-10 * np.abs(reference).max())
    np.testing.assert_allclose(panels, reference[n1:, n0:n1], rtol=0, atol=1e-10 * np.abs(reference).max())


def test_float32_points_with_float64_params_keep_float64_and_float32_stays_float32():
    with jax.enable_x64(True):
        problem, net, params, points = _setup("wave", "paper_text", "tanh")  # NTK parameterisation: s = 1/sqrt(n)
        low = [x.astype(jnp.float32) for x in points]
        reference = ntk.kernel(net.apply, params, problem.terms, low, method="jacobian")
        k = ntk.kernel(net.apply, params, problem.terms, low, method="structured")
        params32 = jax.tree.map(lambda a: a.astype(jnp.float32), params)
        f = jax.eval_shape(lambda p, x: ns.factors(net.apply.mlp_spec, p, problem.term("r"), x), params32, low[2])
    assert k.dtype == reference.dtype == np.float64
    np.testing.assert_allclose(k, reference, rtol=0, atol=1e-10 * np.abs(reference).max())
    assert {layer.a.dtype for layer in f} == {layer.g.dtype for layer in f} == {np.dtype(np.float32)}


def test_host_kernel_places_the_blocks_and_mirrors_the_upper_ones():
    """ntk.kernel (structured) is assembled on the host from per-term and per-block calls: each block
    is ntk.block's, the lower ones exact transposes, and the whole equals the one-program kernel."""
    problem, net, params, points = _setup("wave", "paper_code", "tanh", dtype=jnp.float32)
    k = ntk.kernel(net.apply, params, problem.terms, points, method="structured")
    assert k.shape == (15, 15) and k.dtype == np.float32
    tol = 1e-6 * np.abs(k).max()
    ends = np.cumsum([0, *(len(x) for x in points)])
    part = lambda i, j: k[ends[i] : ends[i + 1], ends[j] : ends[j + 1]]  # noqa: E731
    for i, (ti, xi) in enumerate(zip(problem.terms, points)):
        np.testing.assert_allclose(part(i, i), ntk.block(net.apply, params, ti, xi), rtol=0, atol=tol)
        for j in range(i + 1, len(points)):
            ref = ntk.block(net.apply, params, ti, xi, problem.terms[j], points[j])
            np.testing.assert_allclose(part(i, j), ref, rtol=0, atol=tol)
            np.testing.assert_array_equal(part(j, i), part(i, j).T)
    np.testing.assert_allclose(k, _kernel(net.apply, params, problem.terms, points), rtol=0, atol=tol)
