"""The stability bound drawn on the Fig. 5 map (``benchmarks/bench_fig5_map.py``): ``lr < 2 / lambda_max(K D)``.

The bench computes lambda_max with ``ntk.kernel`` + ``linearized.row_factors`` + ``modes.decompose``. Here the
same number comes from an explicit Jacobian (jacfwd of the stacked residuals), loss factors written out by
hand and a general (non-symmetric) dense eigensolver on ``K @ diag(D)``; then gradient descent itself, on the
linearised and on the real network, has to change behaviour at the bound.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.flatten_util
import numpy as np
import optax
import pytest

from pinnlab import linearized, modes, ntk, paper
from pinnlab.training import Trainer, total_loss
from tests.conftest import explicit_jacobian, float64, sample_points, small_net, small_problem, to64

LAMBDAS = (1.0, 100.0, 1e4)


def _case(n=8, width=12):
    """The Poisson problem (sin(4 pi x), its own boundary/collocation samplers), a one-hidden-layer tanh net
    in float64, ``n`` points per term."""
    problem = small_problem("poisson")
    net = small_net(problem, width=width, depth=1)
    params = to64(net.params)
    points = sample_points(problem, n)
    return problem, net, params, points


def _factors_by_hand(problem, points, weights) -> np.ndarray:
    """D for pinnlab's loss sum_i lambda_i s_i mean(r_i^2): its gradient is J^T D r with D = 2 lambda_i s_i / n_i."""
    return np.concatenate([np.full(len(x), 2.0 * w * t.scale / len(x))
                           for t, x, w in zip(problem.terms, points, weights, strict=True)])


@pytest.fixture(scope="module")
def case():
    with float64():
        problem, net, params, points = _case()
        jac = explicit_jacobian(net.apply, params, problem.terms, points)
        kernel = ntk.kernel(net.apply, params, problem.terms, points)
        r0 = np.asarray(linearized.stacked_residuals(net.apply, problem.terms, params, points))
        # the training loss's own gradient, for the D check
        grad = jax.jit(jax.grad(lambda p, w: total_loss(net.apply, problem, p, points, w)[0]))
        grads = {lam: np.asarray(jax.flatten_util.ravel_pytree(grad(params, np.array([lam, 1.0])))[0])
                 for lam in LAMBDAS}
    return problem, net, params, points, jac, kernel, r0, grads


@pytest.mark.parametrize("lam_b", LAMBDAS)
def test_lambda_max_matches_a_dense_general_eigensolver(case, lam_b):
    problem, _, _, points, jac, kernel, r0, grads = case
    d = _factors_by_hand(problem, points, (lam_b, 1.0))
    # the factors are the training loss's: grad L = J^T D r (so K D is the map GD applies to the residuals)
    np.testing.assert_allclose(grads[lam_b], jac.T @ (d * r0), rtol=1e-10, atol=1e-10 * np.abs(grads[lam_b]).max())
    np.testing.assert_allclose(np.asarray(linearized.row_factors(problem.terms, points, (lam_b, 1.0))), d, rtol=1e-14)

    eig = np.linalg.eigvals((jac @ jac.T) @ np.diag(d))  # no symmetry assumed
    top = eig[np.argmax(eig.real)]
    assert abs(top.imag) < 1e-10 * abs(top.real)
    m = modes.decompose(kernel, linearized.row_factors(problem.terms, points, (lam_b, 1.0)))
    np.testing.assert_allclose(m.values[0], top.real, rtol=1e-10)
    np.testing.assert_allclose(modes.stable_lr(m), 2.0 / top.real, rtol=1e-10)


def test_the_bound_falls_as_lambda_b_grows(case):
    problem, _, _, points, _, kernel, _, _ = case
    bounds = [modes.stable_lr(modes.decompose(kernel, _factors_by_hand(problem, points, (lam, 1.0))))
              for lam in LAMBDAS]
    assert bounds[0] > bounds[1] > bounds[2]
    # once the boundary block dominates, lambda_max grows ~ linearly in lambda_b
    assert 50 < bounds[1] / bounds[2] < 150


@pytest.mark.parametrize("lam_b", (1.0, 100.0))
def test_linearised_gradient_descent_grows_above_the_bound_and_shrinks_below(case, lam_b):
    """Gradient descent on the parameters of the linearised network (jvp, J never formed) at 0.8x / 1.2x the
    bound: the residual shrinks / grows. The bound comes from the dense eigensolver, not from pinnlab.modes."""
    problem, net, params, points, jac, _, r0, _ = case
    d = _factors_by_hand(problem, points, (lam_b, 1.0))
    bound = 2.0 / np.linalg.eigvals((jac @ jac.T) @ np.diag(d)).real.max()
    norms = {}
    with float64():
        lin = linearized.linearize(net.apply, problem.terms, params, points)
        for factor in (0.8, 1.2):
            _, rs = linearized.train(lin, problem.terms, points, (lam_b, 1.0), optax.sgd(factor * bound), 150)
            norms[factor] = float(np.linalg.norm(np.asarray(rs[-1])) / np.linalg.norm(r0))
    assert norms[0.8] < 1.0, norms
    assert norms[1.2] > 1e6, norms  # the top mode is multiplied by |1 - 1.2 * 2| = 1.4 each step


def test_the_real_e3_network_diverges_well_above_the_bound_and_trains_below():
    """The Fig. 5 set-up itself (1 x 100 tanh, 100 + 100 points, float32, lambda_b = 100, seed 0): plain GD at
    0.5x the bound trains (loss falls, never above its start); at 2.5x it diverges or its loss grows."""
    problem, net, config, _ = paper.e3_sweep_runs((100.0,), 1, 200)
    config = dataclasses.replace(config, initial_weights=(100.0, 1.0), chunk=100)
    start = Trainer(problem, net, config)
    kernel = ntk.kernel(start.apply, start.state.params, problem.terms, start.data)
    bound = modes.stable_lr(modes.decompose(kernel, linearized.row_factors(problem.terms, start.data, (100.0, 1.0))))
    assert 1e-5 < bound < 1e-3  # the paper's lr 1e-5 is stable at lambda_b = 100
    runs = {}
    for factor in (0.5, 2.5):
        trainer = Trainer(problem, net, dataclasses.replace(config, lr=bound))
        trainer.lr_scale = factor  # a live control: both runs share one compiled chunk
        h = trainer.run()
        loss = h.curve("losses").astype(np.float64) @ np.array([100.0, 1.0])
        runs[factor] = (h.status, loss)
    status, loss = runs[0.5]
    assert status == "completed" and loss[-1] < 0.5 * loss[0] and loss.max() <= loss[0] * (1 + 1e-6)
    status, loss = runs[2.5]
    assert status == "diverged" or np.nanmax(loss) > 10 * loss[0], (status, loss[0], np.nanmax(loss))
