"""The linearised PINN and the eigenmodes of K-tilde = K D, against independent float64 computations: an
explicit Jacobian (jacfwd of the stacked residuals), matrix powers and numpy eigendecompositions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pinnlab import linearized, modes
from tests.conftest import explicit_jacobian, float64, sample_points, small_net, small_problem, to64


def _case(name="poisson", n=8, width=12):
    problem = small_problem(name)
    net = small_net(problem, width=width, depth=2)
    params = to64(net.params)
    points = sample_points(problem, n)
    return problem, net, params, points


@pytest.mark.parametrize("name,weights", [("poisson", (1.0, 1.0)), ("poisson", (100.0, 1.0)),
                                          ("wave", (1.0, 2.0, 0.5))])
def test_gradient_descent_on_the_linearised_loss_follows_the_closed_form(name, weights):
    """r_t = (I - eta K D)^t r_0 with K = J J^T from an explicit Jacobian: the jvp-based run in float64
    agrees to 1e-8 over 60 steps, at a learning rate that moves every mode (eta = 1 / lambda_max)."""
    with float64():
        problem, net, params, points = _case(name)
        lin = linearized.linearize(net.apply, problem.terms, params, points)
        factors = np.asarray(linearized.row_factors(problem.terms, points, weights))
        jac = explicit_jacobian(net.apply, params, problem.terms, points)
        kernel = jac @ jac.T
        lr = 1.0 / modes.decompose(kernel, factors).values[0]
        _, rs = jax.jit(lambda: linearized.train(lin, problem.terms, points, weights, optax.sgd(lr), 60))()
        r0 = np.asarray(linearized.stacked_residuals(net.apply, problem.terms, params, points))
    closed = linearized.gd_residuals(kernel, factors, lr, r0, 60)
    assert rs.dtype == jnp.float64 and rs.shape == closed.shape
    np.testing.assert_allclose(rs[0], r0, rtol=0, atol=0)
    scale = np.abs(closed).max()
    np.testing.assert_allclose(np.asarray(rs), closed, rtol=0, atol=1e-8 * scale)
    assert np.linalg.norm(closed[-1]) < 0.9 * np.linalg.norm(closed[0])  # it trained


def test_the_linearisation_error_is_second_order_in_the_step():
    """||r(theta_0 + s v) - r_lin(theta_0 + s v)|| shrinks ~4x when s halves (Taylor: O(s^2))."""
    with float64():
        problem, net, params, points = _case("wave")
        lin = linearized.linearize(net.apply, problem.terms, params, points)
        direction = jax.tree.map(lambda a, k: jax.random.normal(k, a.shape, a.dtype), params,
                                 jax.tree.unflatten(jax.tree.structure(params),
                                                    list(jax.random.split(jax.random.key(3),
                                                                          len(jax.tree.leaves(params))))))
        gaps = []
        for s in (1e-2, 5e-3, 2.5e-3):
            p = jax.tree.map(lambda a, v, s=s: a + s * v, params, direction)
            real = linearized.stacked_residuals(net.apply, problem.terms, p, points)
            gaps.append(float(jnp.linalg.norm(real - lin.residuals(p))))
    assert gaps[0] > 0
    for a, b in zip(gaps, gaps[1:]):
        assert 3.5 < a / b < 4.5, gaps


def test_modes_are_right_eigenvectors_and_their_coefficients_decay_geometrically():
    """K D v_k = lambda_k v_k, and the closed-form residuals projected on the modes are
    c_k(0) (1 - eta lambda_k)^t (a matrix power against an eigendecomposition)."""
    with float64():
        problem, net, params, points = _case("poisson")
        jac = explicit_jacobian(net.apply, params, problem.terms, points)
        r0 = np.asarray(linearized.stacked_residuals(net.apply, problem.terms, params, points))
    kernel = jac @ jac.T
    factors = np.asarray(linearized.row_factors(problem.terms, points, (30.0, 1.0)))
    m = modes.decompose(kernel, factors)
    assert np.all(np.diff(m.values) <= 0) and m.values[0] > 0
    tilde = kernel * factors[None, :]
    np.testing.assert_allclose(tilde @ m.vectors, m.vectors * m.values[None, :], rtol=0,
                               atol=1e-9 * m.values[0] * np.abs(m.vectors).max())
    np.testing.assert_allclose(np.sort(np.linalg.eigvals(tilde).real)[::-1], m.values, rtol=1e-8,
                               atol=1e-10 * m.values[0])
    lr = 1.5 / m.values[0]
    closed = linearized.gd_residuals(kernel, factors, lr, r0, 40)
    measured = m.project(closed)
    predicted = modes.gd_prediction(m, m.project(r0), lr, np.arange(41))
    np.testing.assert_allclose(measured, predicted, rtol=0, atol=1e-9 * np.abs(predicted).max())
    np.testing.assert_allclose(m.vectors @ m.project(r0), r0, rtol=0, atol=1e-10 * np.abs(r0).max())  # a basis
    learn = modes.steps_to_learn(m, lr)
    assert learn[0] == pytest.approx(1 / 1.5) and np.all(np.diff(learn[m.values > 0]) >= 0)


@pytest.mark.parametrize("kernel,factors,match", [
    (np.ones((3, 2)), np.ones(3), "square kernel"),
    (np.eye(3), np.ones(2), "one factor per row"),
    (np.eye(2), np.array([1.0, 0.0]), "positive"),
    (np.full((2, 2), np.nan), np.ones(2), "finite"),
])
def test_decompose_refuses_bad_input(kernel, factors, match):
    with pytest.raises(ValueError, match=match):
        modes.decompose(kernel, factors)


def test_k_tilde_has_real_eigenvalues_for_any_positive_weights_and_gd_is_stable_below_two_over_lambda_max():
    """K D is similar to D^1/2 K D^1/2 (symmetric PSD): a general eigensolver finds imaginary parts only at
    rounding level even at lambda_b = 1e4, and the closed-form GD residual shrinks at 1.9 / lambda_max and
    grows at 2.1 / lambda_max (the growth of the top mode, (1 - eta lambda_max)^t)."""
    with float64():
        problem, net, params, points = _case("poisson")
        jac = explicit_jacobian(net.apply, params, problem.terms, points)
        r0 = np.asarray(linearized.stacked_residuals(net.apply, problem.terms, params, points))
    kernel = jac @ jac.T
    for lambda_b in (1.0, 100.0, 1e4):
        factors = np.asarray(linearized.row_factors(problem.terms, points, (lambda_b, 1.0)))
        m = modes.decompose(kernel, factors)
        general = np.linalg.eigvals(kernel * factors[None, :])
        assert np.abs(general.imag).max() <= 1e-10 * m.values[0], lambda_b
        np.testing.assert_allclose(np.sort(general.real)[::-1], m.values, rtol=0, atol=1e-9 * m.values[0])
        limit = modes.stable_lr(m)
        below = linearized.gd_residuals(kernel, factors, 0.95 * limit, r0, 400)
        above = linearized.gd_residuals(kernel, factors, 1.05 * limit, r0, 400)
        assert np.linalg.norm(below[-1]) < np.linalg.norm(r0) < np.linalg.norm(above[-1]), lambda_b
