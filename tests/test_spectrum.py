"""Matrix-free top NTK eigenvalues: Lanczos against eigvalsh, the K v product against ntk.kernel @ v."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from pinnlab import ntk, spectrum

N = 200  # operator size of the random tests: one shape, so the Lanczos steps compile once
K = 8


def _dense(a, v):
    return a @ v


def _operator(eigs, seed=0):
    """A = Q diag(eigs) Q^T with a random orthogonal Q, as a Partial matvec (compiled once per shape)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eigs), len(eigs))))
    return Partial(_dense, jnp.asarray((q * eigs) @ q.T)), np.sort(eigs)[::-1]


SPECTRA = {  # NTK-like decays, a tight cluster on top, a rank-deficient operator
    "geometric": 10.0 ** -np.linspace(0, 10, N),
    "clustered": np.r_[3.0 + 1e-4 * np.arange(4), 0.5 ** np.arange(N - 4)],
    "power_law": 1.0 / np.arange(1, N + 1) ** 2,
    "rank_5": np.r_[[4.0, 3.0, 2.0, 1.0, 0.5], np.zeros(N - 5)],
}


def _assert_top(values, ref, rel=1e-6):
    """Each eigenvalue to ``rel`` of itself; zero ones (rounding noise in a formed matrix) to 1e-12 of the largest."""
    ref = ref[: len(values)]
    tol = np.maximum(rel * ref, 1e-12 * ref[0])
    assert np.all(np.abs(values - ref) <= tol), (values, ref)


@pytest.mark.parametrize("name", SPECTRA)
def test_lanczos_top_k_equals_eigvalsh(name):
    with jax.enable_x64(True):
        mv, ref = _operator(SPECTRA[name])
        values, bounds = spectrum.lanczos(mv, N, K, return_bounds=True)
    assert values.shape == bounds.shape == (K,) and values.dtype == np.float64
    assert np.all(np.diff(values) <= 0)
    _assert_top(values, np.linalg.eigvalsh(np.asarray(mv.args[0]))[::-1])  # eigvalsh of the matrix itself
    _assert_top(values, ref)
    # Each bound ||A y - theta y|| contains an eigenvalue of A within it.
    nearest = np.abs(values[:, None] - ref[None, :]).min(1)
    assert np.all(nearest <= bounds + 1e-13 * ref[0])


def test_degenerate_top_needs_a_block_as_large_as_the_multiplicity():
    """Four copies of 5 and three of 2: a block of 4 start vectors sees every copy."""
    with jax.enable_x64(True):
        mv, ref = _operator(np.r_[[5.0] * 4, [2.0] * 3, 1.5 * 0.9 ** np.arange(N - 7)], seed=1)
        values = spectrum.lanczos(mv, N, K, block_size=4, iterations=20)
    _assert_top(values, ref)
    np.testing.assert_allclose(values[:7], [5.0] * 4 + [2.0] * 3, rtol=1e-10)


def test_whole_spectrum_when_k_equals_n():
    with jax.enable_x64(True):
        mv, ref = _operator(np.linspace(1.0, 2.0, 12), seed=2)  # flat: no early convergence to lean on
        values = spectrum.lanczos(mv, 12, 12)
    np.testing.assert_allclose(values, ref, rtol=1e-12)


_CALLS: list = []


def _counting(a, v):
    jax.debug.callback(lambda: _CALLS.append(1))
    return a @ v


def test_breakdown_and_tol_stop_early_without_losing_accuracy():
    with jax.enable_x64(True):
        mv, ref = _operator(SPECTRA["rank_5"])
        _CALLS.clear()
        values = spectrum.lanczos(Partial(_counting, mv.args[0]), N, 6)
        # Rank 5 plus the null space: the Krylov space is invariant after 6 vectors (breakdown).
        assert len(_CALLS) == 6 < spectrum.default_iterations(N, 6)
        _assert_top(values, ref)
        mv, ref = _operator(SPECTRA["geometric"])
        _CALLS.clear()
        values, bounds = spectrum.lanczos(Partial(_counting, mv.args[0]), N, K, tol=1e-10, return_bounds=True)
    assert len(_CALLS) < spectrum.default_iterations(N, K)
    assert np.all(bounds <= 1e-10 * values[0])
    _assert_top(values, ref)


def test_unconverged_values_show_large_bounds():
    """Guard for the bound check above: a flat spectrum (no gaps) leaves visibly loose values."""
    with jax.enable_x64(True):
        mv, ref = _operator(np.linspace(1.0, 2.0, N), seed=3)
        values, bounds = spectrum.lanczos(mv, N, K, return_bounds=True)
    err = np.abs(values - ref[:K])
    assert err.max() > 1e-3 and bounds.max() > 1e-2
    assert np.all(np.abs(values[:, None] - ref[None, :]).min(1) <= bounds + 1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(k=N + 1), r"k must be an integer in 1..n = 1..200, got k=201; ask for at most n"),
    (dict(k=0), r"k must be an integer in 1..n = 1..200, got k=0"),
    (dict(k=K, iterations=3), r"iterations \* block_size >= k = 8, got iterations=3"),
    (dict(k=K, block_size=0), r"block_size must be an integer in 1..n = 1..200, got block_size=0"),
    (dict(k=K, tol=-1.0), r"tol must be a number >= 0"),
])
def test_lanczos_rejects_bad_requests(kwargs, match):
    mv, _ = _operator(SPECTRA["geometric"])
    with pytest.raises(ValueError, match=match):
        spectrum.lanczos(mv, N, **kwargs)


def test_lanczos_rejects_a_matvec_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"matvec must map shape \(200,\) to \(200,\).*got \(199,\)"):
        spectrum.lanczos(lambda v: v[1:], N, K)


# ----------------------------------------------------------------------------------------- PINN kernels


@pytest.mark.parametrize("name", ["poisson", "wave", "heat"])
def test_kernel_matvec_equals_kernel_times_v(h, name):
    c = h.ntk_case(name)  # float64 net, 5 points per term, ntk.kernel and an explicit J J^T (conftest)
    n = c.kernel.shape[0]
    with h.float64():
        mv = spectrum.kernel_matvec(c.net.apply, c.params, c.problem.terms, c.points)
        for v in (np.random.default_rng(0).normal(size=n), np.eye(n)[n - 1]):  # a vector; the last column
            kv = np.asarray(mv(jnp.asarray(v)))
            assert kv.shape == (n,) and kv.dtype == np.float64
            for full in (c.kernel, c.reference):
                ref = full @ v
                assert np.abs(kv - ref).max() <= 1e-10 * np.abs(ref).max()
        with pytest.raises(ValueError, match=rf"v must have shape \(n,\) = \({n},\).*got shape \({n + 1},\)"):
            mv(jnp.ones(n + 1))


@pytest.mark.parametrize("method", ["structured", "jacobian"])
def test_top_eigenvalues_of_a_pinn_equal_the_dense_spectrum(h, method):
    c = h.ntk_case("wave")
    ref = ntk.eigenvalues(c.reference)[:5]  # the explicit J J^T
    with h.float64():
        values = spectrum.top_eigenvalues(c.net.apply, c.params, c.problem.terms, c.points, k=5, method=method)
        np.testing.assert_allclose(values, ref, rtol=1e-6)
        blocked = spectrum.top_eigenvalues(c.net.apply, c.params, c.problem.terms, c.points, k=5, block_size=3,
                                           method=method)
        np.testing.assert_allclose(blocked, ref, rtol=1e-6)  # the product vmapped over a block
        # Any matvec of the same size is used as given: here 2 K, so the values double.
        doubled = spectrum.top_eigenvalues(c.net.apply, c.params, c.problem.terms, c.points, k=5,
                                           matvec=Partial(_dense, jnp.asarray(2.0 * c.kernel)))
    np.testing.assert_allclose(doubled, 2.0 * ref, rtol=1e-6)


def test_float32_lanczos_resolves_small_ntk_eigenvalues(h):
    """K v in float32 is accurate relative to ||K v||: Lanczos must keep going while the Krylov
    residuals are far below eps lambda_1 (a breakdown test against ||K|| stopped at ~1e-6 lambda_1 and
    missed the last of these values by 2e-2 and 0.86)."""
    c = h.ntk_case("wave")
    ref = ntk.eigenvalues(c.kernel)  # float64
    k = int(np.sum(ref > 1e-6 * ref[0]))
    assert k >= 12  # the case reaches the small end of the spectrum: 13 of 15 values
    params, points = jax.tree.map(lambda a: np.asarray(a, np.float32), (c.params, c.points))
    values = spectrum.lanczos(spectrum.kernel_matvec(c.net.apply, params, c.problem.terms, points), len(ref), k)
    np.testing.assert_allclose(values, ref[:k], rtol=1e-3)  # float32: the default dtype without x64


def test_new_params_reuse_the_compiled_product_and_lanczos_step(h):
    """A dashboard refreshes spectra as training moves the params: nothing may recompile."""
    c = h.ntk_case("wave")
    with h.float64():
        moved = jax.tree.map(lambda a: 1.1 * a, c.params)
        first = spectrum.kernel_matvec(c.net.apply, c.params, c.problem.terms, c.points)
        again = spectrum.kernel_matvec(c.net.apply, moved, c.problem.terms, c.points)
        v = jnp.ones(c.kernel.shape[0])
        kv = first(v)
        compiled = first.func._cache_size()
        assert not np.allclose(kv, again(v), rtol=1e-3)
        assert first.func is again.func and first.func._cache_size() == compiled
        for method in ("structured", "jacobian"):
            values = spectrum.top_eigenvalues(c.net.apply, c.params, c.problem.terms, c.points, k=5, method=method)
            steps = spectrum._expand._cache_size()
            moved_values = spectrum.top_eigenvalues(c.net.apply, moved, c.problem.terms, c.points, k=5,
                                                    method=method)
            assert spectrum._expand._cache_size() == steps, method
            assert not np.allclose(values, moved_values, rtol=1e-3)


def test_kernel_matvec_needs_one_point_set_per_term(h):
    c = h.ntk_case("heat")
    with pytest.raises(ValueError, match="one point set per term: got 2 terms and 1 point sets"):
        spectrum.kernel_matvec(c.net.apply, c.params, c.problem.terms, c.points[:1])
