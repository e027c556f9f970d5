"""The NTK blocks against an independently built J J^T, finite differences, chunking and spectra."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

from pinnlab import derivatives, ntk
from pinnlab.nets import ACTIVATIONS

TOL = 1e-10  # float64: J J^T agrees to rounding (~1e-15); anything structural is >> 1e-10


def _pairwise_cases():
    """Every (problem, parameterisation, standardisation) with the activation alternating so that each
    problem, each parameterisation and each standardisation setting meets both tanh and sin."""
    cases = []
    for (p, name), (q, param), (s, std) in itertools.product(
            enumerate(PROBLEMS), enumerate(["standard", "ntk"]), enumerate([True, False])):
        cases.append((name, param, std, "tanh" if (p + q + s) % 2 == 0 else "sin"))
    return cases


PROBLEMS = ("poisson", "wave", "heat")
CASES = _pairwise_cases()
METHODS = ("jacobian", "structured")  # both are pinned against the explicit J J^T


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_kernel_and_every_block_equal_explicit_jjt(h, case, method):
    c = h.ntk_case(*case, method=method)
    assert c.kernel.dtype == np.float64 and c.kernel.shape == c.reference.shape
    assert h.rel_err(c.kernel, c.reference) <= TOL
    terms, points, off = c.problem.terms, c.points, c.offsets
    with h.float64():
        for i, j in itertools.product(range(len(terms)), repeat=2):  # cross blocks in both orders, diagonal
            kij = ntk.block(c.net.apply, c.params, terms[i], points[i], terms[j], points[j], method=method)
            ref = c.reference[off[i] : off[i + 1], off[j] : off[j + 1]]
            assert kij.shape == ref.shape
            assert h.rel_err(kij, ref) <= TOL, (i, j)
        for i, (t, x) in enumerate(zip(terms, points, strict=True)):
            ref = c.reference[off[i] : off[i + 1], off[i] : off[i + 1]]
            assert h.rel_err(ntk.block(c.net.apply, c.params, t, x, method=method), ref) <= TOL
            diag = ntk.diagonal(c.net.apply, c.params, t, x, method=method)
            assert h.rel_err(diag, np.diag(ref)) <= TOL


# phi and its first three derivatives by hand (numpy, no autodiff) for the two activations of CASES.
def _tanh_derivatives(z):
    t = np.tanh(z)
    return t, 1 - t**2, -2 * t * (1 - t**2), (1 - t**2) * (6 * t**2 - 2)


_PHI = {"tanh": _tanh_derivatives, "sin": lambda z: (np.sin(z), np.cos(z), -np.sin(z), -np.cos(z))}


def _operators(problem):
    """Each term's residual as ``{stream: coefficient}``, written here from the PDEs (the forcing and data
    drop out of J): Poisson u, u_xx; wave u, u_t, u_tt - c^2 u_xx; heat u, u_t - k u_xx (inputs (t, x))."""
    c2, k = problem.params.get("c", 0.0) ** 2, problem.params.get("k", 0.0)
    return {"poisson": [{"u": 1.0}, {"dd0": 1.0}], "wave": [{"u": 1.0}, {"d0": 1.0}, {"dd0": 1.0, "dd1": -c2}],
            "heat": [{"u": 1.0}, {"d0": 1.0, "dd1": -k}]}[problem.name]


def _one_layer_jacobian(params, config, mean, std, operator, x):
    """dr(x)/dtheta, (n, P), by hand for u(x) = s2 v . phi(z) + c, z = s1 W^T xs + b (xs the z-scored or raw
    x, s = 1/sqrt(fan_in) in the NTK parameterisation) and r = sum_k c_k u_k with u_k one of u, du/dx_i,
    d2u/dx_i^2: with a = dz/dx (a_ik = s1 W_ik / std_i), u_k per hidden unit is phi(z), phi'(z) a_i or
    phi''(z) a_i^2, and dr/dW, dr/db, dr/dv, dr/dc follow by the chain rule through z and a."""
    (w, b), (v, c) = [(np.asarray(p["w"]), np.asarray(p["b"])) for p in (params["layers"][0], params["layers"][1])]
    v = v[:, 0]
    s1, s2 = (1 / np.sqrt(w.shape[0]), 1 / np.sqrt(w.shape[1])) if config.parameterization == "ntk" else (1.0, 1.0)
    inv = 1 / std if config.standardize else np.ones_like(std)
    xs = (x - mean) * inv if config.standardize else x
    f = _PHI[config.activation](xs @ (s1 * w) + b)  # phi, phi', phi'', phi''' at z, each (n, width)
    a = s1 * w * inv[:, None]  # (d, width)
    value, value_z = np.zeros_like(f[0]), np.zeros_like(f[0])  # sum_k c_k u_k per unit and its d/dz
    value_a = np.zeros((len(x), *w.shape))  # its d/da_i, (n, d, width)
    for key, coef in operator.items():
        if key == "u":
            value, value_z = value + coef * f[0], value_z + coef * f[1]
            continue
        power, i = key.count("d"), int(key.lstrip("d"))  # u_k = phi^(power)(z) a_i^power
        value = value + coef * f[power] * a[i] ** power
        value_z = value_z + coef * f[power + 1] * a[i] ** power
        value_a[:, i] += coef * f[power] * power * a[i] ** (power - 1)
    d_w = s2 * v * (value_z[:, None, :] * s1 * xs[:, :, None] + value_a * (s1 * inv)[:, None])
    d_c = np.full((len(x), 1), operator.get("u", 0.0))
    return np.concatenate([d_w.reshape(len(x), -1), s2 * v * value_z, s2 * value, d_c], axis=1)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_one_hidden_layer_kernel_equals_closed_form(h, case):
    """Over the same pairwise CASES, a one-hidden-layer net's K from both methods against J J^T with J by
    hand: the parameterisation's scales, the z-scoring, phi and its derivatives and each PDE's operator
    written out in numpy. The explicit J J^T above shares net.apply and the residuals with the code under
    test; here a wrong forward pass, parameterisation, standardisation, activation or operator fails."""
    name, param, std, act = case
    problem = h.small_problem(name)
    net = h.small_net(problem, parameterization=param, standardize=std, activation=act, width=5, depth=1)
    mean, sd = (np.float32(s).astype(np.float64) for s in (problem.mean, problem.std))  # the net's float32 stats
    with h.float64():
        params = h.to64(net.params)
        points = h.sample_points(problem, 4)
        kernels = [ntk.kernel(net.apply, params, problem.terms, points, method=m) for m in METHODS]
    jac = np.concatenate([_one_layer_jacobian(params, net.config, mean, sd, op, np.asarray(x))
                          for op, x in zip(_operators(problem), points, strict=True)])
    reference = jac @ jac.T
    assert reference.shape == (4 * len(problem.terms),) * 2 and np.abs(reference).max() > 0
    for method, full in zip(METHODS, kernels, strict=True):
        assert h.rel_err(full, reference) <= TOL, method


def test_reference_kernel_is_not_blind_to_the_parameters(h):
    """Guard for the test above: the comparison separates kernels of nearby parameters."""
    c = h.ntk_case("poisson")
    with h.float64():
        moved = jax.tree.map(lambda p: p * 1.001, c.params)
        jac = h.explicit_jacobian(c.net.apply, moved, c.problem.terms, c.points)
    assert h.rel_err(c.kernel, jac @ jac.T) > 1e-5


# Few examples, no deadline, reproducible: each example compiles two new functions (~1 s).
@settings(max_examples=3, deadline=None, derandomize=True)
@given(width=st.integers(3, 12), depth=st.integers(1, 3), activation=st.sampled_from(sorted(ACTIVATIONS)),
       parameterization=st.sampled_from(["standard", "ntk"]), standardize=st.booleans(),
       seed=st.integers(0, 2**16), method=st.sampled_from(METHODS))
def test_kernel_is_explicit_jjt_for_random_architectures(h, width, depth, activation, parameterization,
                                                         standardize, seed, method):
    problem = h.small_problem("poisson")
    net = h.small_net(problem, parameterization=parameterization, standardize=standardize, activation=activation,
                      width=width, depth=depth, seed=seed)
    with h.float64():
        params = h.to64(net.params)
        points = h.sample_points(problem, 4, seed=seed + 1)
        jac = h.explicit_jacobian(net.apply, params, problem.terms, points)
        full = ntk.kernel(net.apply, params, problem.terms, points, method=method)
    assert h.rel_err(full, jac @ jac.T) <= TOL
    assert np.array_equal(full, full.T)
    eig = ntk.eigenvalues(full)
    assert eig[-1] >= -1e-10 * eig[0]  # positive semi-definite


@pytest.mark.parametrize("name", PROBLEMS)
def test_jacobian_matches_central_differences(h, name):
    c = h.ntk_case(name)
    terms = c.problem.terms
    with h.float64():
        flat, unravel = ravel_pytree(c.params)
        flat_jac = jax.jit(ntk.flat_jacobian, static_argnums=(0, 2))  # jit: eager vmap-of-grad is slower
        jac = np.concatenate([flat_jac(c.net.apply, c.params, t, x) for t, x in zip(terms, c.points, strict=True)])
        assert h.rel_err(jac, c.jac) <= TOL  # flat_jacobian columns are in ravel_pytree order
        residuals = jax.jit(lambda theta: jnp.concatenate(
            [t.residuals(c.net.apply, unravel(theta), x) for t, x in zip(terms, c.points, strict=True)]))
        eps = 1e-5
        for k in range(3):
            v = jax.random.normal(jax.random.key(10 + k), flat.shape, jnp.float64)
            fd = (residuals(flat + eps * v) - residuals(flat - eps * v)) / (2 * eps)
            # Truncation O(eps^2) and rounding O(1e-16 / eps) errors are both far below 1e-6.
            assert h.rel_err(jac @ np.asarray(v), fd) <= 1e-6


def _known(x):
    return jnp.sin(2.0 * x[0]) * jnp.exp(0.5 * x[1]) + x[0] ** 3 * x[1]


def _known_derivatives(x):
    s, c, e = np.sin(2 * x[0]), np.cos(2 * x[0]), np.exp(0.5 * x[1])
    return {
        "d1_0": 2 * c * e + 3 * x[0] ** 2 * x[1], "d1_1": 0.5 * s * e + x[0] ** 3,
        "d2_0": -4 * s * e + 6 * x[0] * x[1], "d2_1": 0.25 * s * e,
    }


def test_derivative_helpers_match_analytic_and_finite_differences(h):
    with h.float64():
        for x in np.random.default_rng(0).uniform(-1.5, 1.5, (5, 2)):
            x = jnp.asarray(x)
            ref = _known_derivatives(np.asarray(x))
            for i in (0, 1):
                assert float(derivatives.d1(_known, i)(x)) == pytest.approx(ref[f"d1_{i}"], rel=1e-12, abs=1e-12)
                assert float(derivatives.d2(_known, i)(x)) == pytest.approx(ref[f"d2_{i}"], rel=1e-12, abs=1e-12)
                e = jnp.zeros(2).at[i].set(1e-4)
                fd1 = (_known(x + e) - _known(x - e)) / 2e-4
                fd2 = (_known(x + e) - 2 * _known(x) + _known(x - e)) / 1e-8
                assert float(derivatives.d1(_known, i)(x)) == pytest.approx(float(fd1), rel=1e-6, abs=1e-7)
                assert float(derivatives.d2(_known, i)(x)) == pytest.approx(float(fd2), rel=1e-5, abs=1e-5)
            lap = derivatives.laplacian(_known, (0, 1))(x)
            assert float(lap) == pytest.approx(ref["d2_0"] + ref["d2_1"], rel=1e-12, abs=1e-12)
            assert float(derivatives.laplacian(_known, (1,))(x)) == pytest.approx(ref["d2_1"], rel=1e-12, abs=1e-12)


def _chunk_budgets(params, n):
    """max_bytes values that force chunking: 1 byte (one point per panel) and a budget whose panels of
    4 left and 2 right points do not divide ``n`` (so the last chunk of each side is padded)."""
    row = ntk.num_params(params) * 8
    budget = 7 * row + 8
    left, right = int(0.6 * budget) // row, int(0.3 * budget) // row
    assert (left, right) == (4, 2) and n % left and n % right
    return [1, budget]


def _check_chunked(h, c, method, budgets):
    terms, points, off = c.problem.terms, c.points, c.offsets
    scale = np.abs(c.kernel).max()
    with h.float64():
        for budget in budgets:
            chunked = ntk.kernel(c.net.apply, c.params, terms, points, max_bytes=budget, method=method)
            np.testing.assert_allclose(chunked, c.kernel, rtol=1e-12, atol=1e-12 * scale)
            for i, j in [(0, 1), (1, 0), (1, 1)]:
                ref = c.kernel[off[i] : off[i + 1], off[j] : off[j + 1]]
                got = ntk.block(c.net.apply, c.params, terms[i], points[i], terms[j], points[j], max_bytes=budget,
                                method=method)
                np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * scale)
            own = ntk.block(c.net.apply, c.params, terms[1], points[1], max_bytes=budget, method=method)
            np.testing.assert_allclose(own, c.kernel[off[1] : off[2], off[1] : off[2]], rtol=1e-12, atol=1e-12 * scale)


@pytest.mark.parametrize("name", ["poisson", "heat"])
def test_chunked_block_and_kernel_equal_unchunked(h, name):
    c = h.ntk_case(name, method="jacobian")
    _check_chunked(h, c, "jacobian", _chunk_budgets(c.params, len(c.points[0])))


@pytest.mark.parametrize("name", ["poisson", "wave"])
def test_structured_gram_panels_equal_unchunked(h, name):
    """Budgets of 1 byte (one point per panel) and of 2 points' Gram rows against 5 (a padded last panel)."""
    c = h.ntk_case(name, method="structured")
    row = 3 * 3 * 3 * len(c.points[-1]) * 8  # _rows_per_panel: 3 arrays x S_i x S_j x n_j x 8 bytes
    _check_chunked(h, c, "structured", [1, 2 * row + 1])


@pytest.mark.parametrize("batch_size", [None, 1, 2, 5])
def test_diagonal_equals_kernel_diagonal_for_any_batch_size(h, batch_size):
    c = h.ntk_case("poisson")
    with h.float64():
        for term, x, a, b in zip(c.problem.terms, c.points, c.offsets[:-1], c.offsets[1:], strict=True):
            got = ntk.diagonal(c.net.apply, c.params, term, x, batch_size=batch_size, method="jacobian")
            assert got.shape == (len(x),)
            np.testing.assert_allclose(got, np.diag(c.reference)[a:b], rtol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_diagonal_and_traces_are_jittable(h, method):
    c = h.ntk_case("poisson")
    with h.float64():
        diag = jax.jit(lambda p, x: ntk.diagonal(c.net.apply, p, c.problem.terms[1], x, batch_size=2, method=method))
        np.testing.assert_allclose(diag(c.params, c.points[1]), np.diag(c.reference)[c.offsets[1] :], rtol=1e-12)
        traces = jax.jit(lambda p, xs: ntk.traces(c.net.apply, p, c.problem.terms, xs, method=method))(
            c.params, c.points)
    blocks = [np.trace(c.reference[a:b, a:b]) for a, b in zip(c.offsets[:-1], c.offsets[1:], strict=True)]
    np.testing.assert_allclose(traces, blocks, rtol=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", PROBLEMS)
def test_trace_identity_and_traces(h, name, method):
    c = h.ntk_case(name, method=method)
    blocks = [c.kernel[a:b, a:b] for a, b in zip(c.offsets[:-1], c.offsets[1:], strict=True)]
    block_traces = np.array([np.trace(b) for b in blocks])
    assert np.trace(c.kernel) == pytest.approx(block_traces.sum(), rel=1e-12)
    with h.float64():
        traces = ntk.traces(c.net.apply, c.params, c.problem.terms, c.points, method=method)
    assert traces.shape == (len(c.problem.terms),)
    np.testing.assert_allclose(traces, block_traces, rtol=1e-12)
    # Tr K_ii = sum_x ||dr(x)/dtheta||^2, from the explicit Jacobian rows.
    ref = [np.sum(c.jac[a:b] ** 2) for a, b in zip(c.offsets[:-1], c.offsets[1:], strict=True)]
    np.testing.assert_allclose(traces, ref, rtol=1e-10)


def test_eigenvalues_descending_and_equal_numpy(h):
    full = h.ntk_case("wave").kernel
    eig = ntk.eigenvalues(full)
    assert eig.dtype == np.float64 and eig.shape == (full.shape[0],)
    assert np.all(np.diff(eig) <= 0)
    np.testing.assert_allclose(eig, np.sort(np.linalg.eigvalsh(full))[::-1], rtol=1e-10, atol=1e-10 * eig[0])
    assert eig.sum() == pytest.approx(np.trace(full), rel=1e-10)
    # A non-symmetric float32 input: symmetrised, computed in float64.
    a = np.random.default_rng(0).normal(size=(6, 6)).astype(np.float32)
    np.testing.assert_allclose(ntk.eigenvalues(a), np.linalg.eigvalsh((a + a.T) / 2.0)[::-1], rtol=1e-6)


def test_relative_change():
    k = np.random.default_rng(1).normal(size=(5, 5))
    k = k @ k.T
    assert ntk.relative_change(k, k) == 0.0
    assert ntk.relative_change(2 * k, k) == pytest.approx(1.0, rel=1e-14)
    assert ntk.relative_change(k, 2 * k) == pytest.approx(0.5, rel=1e-14)
    assert ntk.relative_change(-k, k) == pytest.approx(2.0, rel=1e-14)


def test_eigenvalues_leave_their_input_alone():
    """They symmetrise a float64 copy in place, never the caller's array."""
    a = np.random.default_rng(1).normal(size=(7, 7))
    before = a.copy()
    np.testing.assert_allclose(ntk.eigenvalues(a), np.linalg.eigvalsh((a + a.T) / 2.0)[::-1], rtol=1e-12)
    assert np.array_equal(a, before)
