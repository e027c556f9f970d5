"""The infinite-width NTK of a one-hidden-layer PINN against an independent Monte Carlo estimate: the
empirical kernel of one very wide pinnlab net (paper_text convention, width 100,000: 100,000 independent
neurons, an O(m^-1/2) ~ 1% estimate), computed by pinnlab.ntk from the net's own Jacobians."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinnlab import infinite_width, make_problem, nets, ntk

WIDE = 100_000


def _empirical(problem, points, width=WIDE, seed=0):
    config = nets.convention("paper_text", width=width, depth=1)
    net = nets.make_net(config, problem.dim, problem.mean, problem.std, jax.random.key(seed))
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), net.params)
        return np.asarray(ntk.kernel(net.apply, params, problem.terms, [jnp.asarray(x) for x in points]))


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def poisson_case():
    problem = make_problem("poisson", n_b=2, n_r=20)
    points = [np.array([[0.0], [1.0]]), np.linspace(0.0, 1.0, 20)[:, None]]
    return problem, points, infinite_width.kernel(problem.terms, points)


def test_the_quadrature_has_converged(poisson_case):
    problem, points, limit = poisson_case
    finer = infinite_width.kernel(problem.terms, points, nodes=256)
    assert _rel(limit, finer) < 1e-6
    assert np.allclose(limit, limit.T, rtol=0, atol=1e-12 * np.abs(limit).max())
    assert np.linalg.eigvalsh(limit).min() > -1e-9 * np.abs(limit).max()  # PSD


def test_every_block_of_the_limit_matches_a_very_wide_net(poisson_case):
    problem, points, limit = poisson_case
    empirical = _empirical(problem, points)
    for name, rows, cols in (("K_uu", slice(0, 2), slice(0, 2)), ("K_ur", slice(0, 2), slice(2, None)),
                             ("K_rr", slice(2, None), slice(2, None))):
        assert _rel(empirical[rows, cols], limit[rows, cols]) < 0.05, name
    # the check can tell kernels apart: the limit of another activation is far off
    other = infinite_width.kernel(problem.terms, points, activation="sin")
    assert _rel(empirical, other) > 0.2


def test_a_two_dimensional_problem_matches_a_very_wide_net():
    problem = make_problem("wave", n_u=4, n_ut=4, n_r=6, n_ntk=4)
    points = [np.asarray(t.sampler(jax.random.key(i), 5), np.float64) for i, t in enumerate(problem.terms)]
    limit = infinite_width.kernel(problem.terms, points, nodes=24)  # within ~1e-3 of 32 nodes
    assert _rel(_empirical(problem, points), limit) < 0.05


def test_gauss_hermite_integrates_normal_moments():
    x, w = infinite_width.gauss_hermite(12, 2)
    assert x.shape == (144, 2) and w.sum() == pytest.approx(1.0)
    assert np.sum(w * x[:, 0] ** 2) == pytest.approx(1.0)
    assert np.sum(w * x[:, 0] ** 4 * x[:, 1] ** 2) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="nodes >= 1"):
        infinite_width.gauss_hermite(0, 1)
