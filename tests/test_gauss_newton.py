"""The kernel solve (``optimizer="lm"``) against independent float64 computations: the primal
Levenberg-Marquardt step from the explicit Jacobian, a linear least-squares problem solved in one step,
the structured and Jacobian paths, and rejected steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from pinnlab import TrainConfig, Trainer, convention, gauss_newton, make_problem, training
from pinnlab.problems.base import Linear, fixed, linear
from tests.conftest import explicit_jacobian, float64, sample_points, small_net, small_problem, to64

# The step under test, compiled as the trainer compiles it: run op by op, each call dispatched ~10 s of
# primitives on these machines. (apply, terms and the optimizer are hashable values: static.)
_step = jax.jit(gauss_newton.step, static_argnums=(0, 1, 7))

WEIGHTS = (2.0, 0.5, 3.0)


def _state(mu: float) -> gauss_newton.LMState:
    return gauss_newton.LevenbergMarquardt(mu0=mu).init({"w": jnp.zeros(1, jnp.float64)})


def _reference_step(apply, terms, params, points, weights, mu_rel, lr=1.0):
    """The primal LM step -(Jw^T Jw + mu I)^(-1) Jw^T b in float64 numpy, Jw = W J from jacfwd."""
    jac = explicit_jacobian(apply, params, terms, points)
    r = np.concatenate([np.asarray(t.residuals(apply, params, x)) for t, x in zip(terms, points)])
    w = np.concatenate([np.full(len(x), np.sqrt(lam * t.scale / len(x))) for t, x, lam in zip(terms, points, weights)])
    jw, b = w[:, None] * jac, w * r
    mu = mu_rel * np.sum(jw**2) / len(b)  # relative to Tr(Jw Jw^T) / N
    delta = -lr * np.linalg.solve(jw.T @ jw + mu * np.eye(jac.shape[1]), jw.T @ b)
    return delta, jw, b


@pytest.fixture(scope="module")
def wave_case():
    problem = small_problem("wave")
    net = small_net(problem, width=6, depth=2)
    with float64():
        params, points = to64(net.params), sample_points(problem, 5)
    return problem, net, params, points


@pytest.mark.parametrize("mu", [1e-1, 1e-4])
def test_one_step_equals_the_dense_primal_solve(wave_case, mu):
    problem, net, params, points = wave_case
    with float64():
        new, state, losses = _step(net.apply, problem.terms, params, _state(mu), points,
                                               jnp.asarray(WEIGHTS), 1.0)
        delta, jw, b = _reference_step(net.apply, problem.terms, params, points, WEIGHTS, mu)
        flat0, unravel = ravel_pytree(params)
        np.testing.assert_allclose(ravel_pytree(new)[0] - flat0, delta, rtol=1e-7, atol=1e-10 * np.abs(delta).max())
        # the gain ratio: actual over predicted (linearised) decrease of ||W r||^2
        r1 = np.concatenate([np.asarray(t.residuals(net.apply, unravel(flat0 + delta), x))
                             for t, x in zip(problem.terms, points)])
        w = b / np.concatenate([np.asarray(t.residuals(net.apply, params, x)) for t, x in zip(problem.terms, points)])
        rho = (b @ b - np.sum((w * r1) ** 2)) / (b @ b - np.sum((b + jw @ delta) ** 2))
    assert int(state.accepted) == 1 and int(state.rejected) == 0
    np.testing.assert_allclose(float(state.rho), rho, rtol=1e-6)
    ends = np.cumsum([0] + [len(x) for x in points])
    want = [t.scale * np.mean((b[a:e] / w[a:e]) ** 2) for t, a, e in zip(problem.terms, ends[:-1], ends[1:])]
    np.testing.assert_allclose(losses, want, rtol=1e-10)


def _features(params, x):
    """A model linear in its parameters: u(x) = sum_k w_k cos(k pi x)."""
    k = jnp.arange(params["w"].shape[0])
    return jnp.cos(jnp.pi * k * x[..., 0:1]) @ params["w"]


def _linear_terms(n_u: int, n_r: int):
    exact = lambda x: jnp.sin(2.5 * jnp.pi * x[..., 0]) + x[..., 0] ** 2  # noqa: E731
    forcing = lambda x: -((2.5 * jnp.pi) ** 2) * jnp.sin(2.5 * jnp.pi * x[..., 0]) + 2.0  # noqa: E731
    x_u = np.linspace(0.0, 1.0, n_u)[:, None]
    x_r = np.linspace(0.03, 0.97, n_r)[:, None]
    terms = (linear("u", Linear(u=1.0), exact, fixed(x_u), n_u, n_u),
             linear("r", Linear(dd={0: 1.0}), forcing, fixed(x_r), n_r, n_r))
    return terms, [jnp.asarray(x_u), jnp.asarray(x_r)]


# mu -> 0 relative to the mean eigenvalue of A = W K W. With N > P, A is singular and a smaller mu costs
# digits in the residual-space solve (about log10(1 / mu) of them), so that case stops at 1e-9.
@pytest.mark.parametrize("n_params, n_u, n_r, mu", [(20, 4, 8, 1e-14), (8, 15, 25, 1e-9)],
                         ids=["underdetermined", "overdetermined"])
def test_a_linear_least_squares_problem_is_solved_in_one_step(n_params, n_u, n_r, mu):
    with float64():
        terms, points = _linear_terms(n_u, n_r)
        weights = jnp.asarray([10.0, 0.01])
        params = {"w": jnp.linspace(-1.0, 1.0, n_params)}
        new, state, _ = _step(_features, terms, params, _state(mu), points, weights, 1.0)
        jac = explicit_jacobian(_features, params, terms, points)
        r0 = np.concatenate([np.asarray(t.residuals(_features, params, x)) for t, x in zip(terms, points)])
        r1 = np.concatenate([np.asarray(t.residuals(_features, new, x)) for t, x in zip(terms, points)])
    w = np.concatenate([np.full(len(x), np.sqrt(float(lam) / len(x))) for x, lam in zip(points, weights)])
    # the minimum-norm least-squares step of W (r0 + J d) = 0
    best = np.asarray(params["w"]) + np.linalg.lstsq(w[:, None] * jac, -w * r0, rcond=None)[0]
    assert int(state.accepted) == 1
    np.testing.assert_allclose(np.asarray(new["w"]), best, rtol=1e-5, atol=1e-7 * np.abs(best).max())
    if len(r0) < n_params:  # interpolation: every residual vanishes
        assert np.max(np.abs(r1)) < 1e-7 * np.max(np.abs(r0))


def test_structured_and_jacobian_paths_give_the_same_step(wave_case):
    problem, net, params, points = wave_case
    plain = lambda p, x: net.apply(p, x)  # noqa: E731  no mlp_spec: the Jacobian path, nested-jvp residuals
    with float64():
        k_s = gauss_newton.kernel(net.apply, problem.terms, params, points)
        k_j = gauss_newton.kernel(plain, problem.terms, params, points)
        args = (_state(1e-3), points, jnp.asarray(WEIGHTS), 1.0)
        a = _step(net.apply, problem.terms, params, *args)[0]
        b = _step(plain, problem.terms, params, *args)[0]
    np.testing.assert_allclose(k_s, k_j, rtol=1e-10, atol=1e-12 * np.abs(k_j).max())
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("structured", [True, False])
@pytest.mark.parametrize("mu", [1e-1, 1e-3])
def test_the_matrix_free_step_equals_the_dense_step(wave_case, structured, mu):
    # CG on A v = W J (J^T (W v)) products, run to convergence (N iterations at most in exact arithmetic)
    problem, net, params, points = wave_case
    apply = net.apply if structured else (lambda p, x: net.apply(p, x))  # noqa: E731  the Jacobian path
    n = sum(len(x) for x in points)
    cg = gauss_newton.LevenbergMarquardt(solver="cg", cg_iters=4 * n, cg_tol=1e-14)
    with float64():
        args = (_state(mu), points, jnp.asarray(WEIGHTS), 1.0)
        dense = _step(apply, problem.terms, params, *args)
        free = _step(apply, problem.terms, params, *args, cg)
    for x, y in zip(jax.tree.leaves(free[0]), jax.tree.leaves(dense[0]), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(float(free[1].rho), float(dense[1].rho), rtol=1e-6)
    np.testing.assert_allclose(float(free[1].mu), float(dense[1].mu), rtol=1e-6)


def test_a_truncated_matrix_free_solve_is_judged_by_its_own_gain_ratio(wave_case):
    # two CG iterations: not the dense step, but a step the gain ratio measures against its own prediction
    problem, net, params, points = wave_case
    cg = gauss_newton.LevenbergMarquardt(solver="cg", cg_iters=2)
    with float64():
        p, state, _ = _step(net.apply, problem.terms, params, _state(1e-3), points,
                                        jnp.asarray(WEIGHTS), 1.0, cg)
        dense = _step(net.apply, problem.terms, params, _state(1e-3), points, jnp.asarray(WEIGHTS), 1.0)
        loss = lambda q: float(training.total_loss(net.apply, problem, q, points, jnp.asarray(WEIGHTS))[0])  # noqa: E731
        before, after = loss(params), loss(p)
        far = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(dense[0])))
    assert 0 < float(state.rho) and int(state.accepted) == 1
    assert after < before
    assert far > 1e-6  # truncated: it is not the exact step


def test_an_unknown_solver_is_refused(wave_case):
    problem, net, params, points = wave_case
    with float64(), pytest.raises(ValueError, match="solver 'qr'"):
        _step(net.apply, problem.terms, params, _state(1e-3), points, jnp.asarray(WEIGHTS), 1.0,
                          gauss_newton.LevenbergMarquardt(solver="qr"))


def test_a_rejected_step_leaves_the_parameters_and_grows_the_damping(wave_case):
    problem, net, params, points = wave_case
    with float64():
        # lr 3 overshoots the linearised minimum: the predicted loss rises, so the step is rejected
        state, p = _state(1e-2), params
        for _ in range(2):
            p, state, _ = _step(net.apply, problem.terms, p, state, points, jnp.asarray(WEIGHTS), 3.0)
    for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(x, y)
    assert (int(state.accepted), int(state.rejected)) == (0, 2)
    np.testing.assert_allclose([float(state.mu), float(state.nu)], [1e-2 * 2 * 4, 8.0])


def test_the_trainer_steps_exactly_as_the_solve_and_reaches_the_poisson_solution():
    problem = make_problem("poisson")
    with float64():
        trainer = Trainer(problem, convention("paper_code", problem.default_init, width=100, depth=1),
                          TrainConfig(optimizer="lm", lr=1.0, steps=300, chunk=50))
        p0, s0 = trainer.state.params, trainer.state.opt_state
        trainer.advance(1)
        want, state, _ = _step(trainer.apply, problem.terms, p0, s0, trainer.data,
                                           trainer.state.weights, 1.0)
        for x, y in zip(jax.tree.leaves(trainer.state.params), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)
        history = trainer.run(299)
    # paper E3 (1x100 tanh, 200 fixed points): 40,000 GD steps with lambda_b = 100 reach 1.63e-3
    assert history.rel_l2[-1] < 1e-5
    assert trainer.solver_state()["accepted"] > 250


def test_a_step_scale_schedule_scales_each_step():
    problem = small_problem("poisson")
    config = TrainConfig(optimizer="lm", lr=0.5, decay_steps=1, decay_rate=0.5, chunk=2)
    with float64():
        trainer = Trainer(problem, convention("paper_code", width=4), config)
        for step in range(2):
            p, s = trainer.state.params, trainer.state.opt_state
            trainer.advance(1)
            want = _step(trainer.apply, problem.terms, p, s, trainer.data, trainer.state.weights,
                                     0.5 * 0.5**step)[0]
            for x, y in zip(jax.tree.leaves(trainer.state.params), jax.tree.leaves(want), strict=True):
                np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)


def test_ensemble_members_equal_lone_kernel_solve_runs():
    from pinnlab.ensemble import Ensemble, Member

    problem = make_problem("poisson", n_b=10, n_r=12, n_eval=50)
    net = convention("paper_code", "lecun_normal", width=8, depth=1)
    config = TrainConfig(optimizer="lm", lr=1.0, steps=12, chunk=6, ntk_every=4)
    members = [Member(0), Member(1, (100.0, 1.0))]
    with float64():
        got = Ensemble(problem, net, config, members).run().histories
        for member, history in zip(members, got, strict=True):
            weights = member.initial_weights
            lone = Trainer(problem, net, TrainConfig(optimizer="lm", lr=1.0, steps=12, chunk=6, ntk_every=4,
                                                     seed=member.seed, initial_weights=weights)).run()
            np.testing.assert_allclose(history.curve("losses"), lone.curve("losses"), rtol=1e-9, atol=0)
            np.testing.assert_allclose(history.rel_l2, lone.rel_l2, rtol=1e-9)
            # accepted steps lower the weighted loss, rejected ones keep it: it never rises
            loss = np.sum(history.curve("losses") * history.curve("weights"), axis=1)
            assert np.all(np.diff(loss) <= 1e-12 * loss[:-1]) and loss[-1] < 0.5 * loss[0]


def test_an_unset_lr_and_chunk_follow_the_optimizer():
    # TrainConfig(optimizer="lm") took gradient descent's lr 1e-5 as its step scale: a run that hardly moved.
    lm = TrainConfig(optimizer="lm")
    assert (lm.lr, lm.chunk) == (1.0, 10)
    assert (TrainConfig().lr, TrainConfig().chunk) == (1e-5, 100)
    assert (TrainConfig(optimizer="adam").lr, TrainConfig(optimizer="adam").chunk) == (1e-5, 100)
    own = TrainConfig(optimizer="lm", lr=0.5, chunk=3)
    assert (own.lr, own.chunk) == (0.5, 3)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(optimizer="lm", lr=-1.0)


def test_the_matrix_free_trainer_reaches_the_poisson_solution():
    # the default 200 CG iterations per step (N = 200 rows here): 5.9e-7 after 300 steps when it was chosen
    problem = make_problem("poisson")
    with float64():
        trainer = Trainer(problem, convention("paper_code", problem.default_init, width=100, depth=1),
                          TrainConfig(optimizer="lm_cg", steps=300, chunk=50))
        history = trainer.run()
    assert history.rel_l2[-1] < 1e-5


def test_the_solve_stops_early_when_its_damping_reaches_the_cap():
    # float32 Poisson: from about step 200 every step is rejected (the loss is at float32 rounding)
    problem = make_problem("poisson")
    trainer = Trainer(problem, convention("paper_code", problem.default_init, width=100, depth=1),
                      TrainConfig(optimizer="lm", steps=1000, eval_every=50))
    history = trainer.run()
    assert history.status == "completed" and trainer.step < 1000
    assert f"stopped early at step {trainer.step} of 1000" in history.message and "float32" in history.message
    assert trainer.solver_state()["mu"] == gauss_newton.MU_MAX
    assert history.eval_step[-1] == trainer.step and history.rel_l2[-1] < 1e-4
