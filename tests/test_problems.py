"""Problems: exact solutions satisfy their PDEs and side conditions; samplers and statistics as documented."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinnlab import make_problem
from pinnlab.problems import PROBLEMS

# Size of the PDE's terms, so "zero" means small relative to them: Poisson (a pi)^2 with a = 4, wave
# (2 c^2 pi)^2 a with c = 2, heat k (3 pi)^2. In float64 the residuals are ~1e-13 of these.
SCALE = {"poisson": (4 * np.pi) ** 2, "wave": (8 * np.pi) ** 2, "heat": 0.1 * (3 * np.pi) ** 2}


def _points(problem, term, n=40, seed=0):
    return jnp.asarray(term.sampler(jax.random.key(seed), n), jnp.float64)


def _exact_point(problem):
    return lambda x: problem.exact(x[None])[0]


def _perturbed_point(problem):
    # Quadratic in every coordinate, non-zero on every boundary, with a non-zero time derivative and a
    # non-zero PDE residual for each of the three PDEs (checked below, not assumed).
    bump = lambda x: 0.1 * (1.0 + jnp.sum(x) + jnp.sum((1.0 + jnp.arange(x.shape[0])) * x**2))
    return lambda x: problem.exact(x[None])[0] + bump(x)


def test_exact_solution_satisfies_every_term(h, problem):
    with h.float64():
        u = _exact_point(problem)
        for term in problem.terms:
            x = _points(problem, term)
            r = jax.vmap(lambda y, t=term: t.residual(u, y))(x)
            assert r.dtype == jnp.float64
            assert np.max(np.abs(r)) <= 1e-10 * SCALE[problem.name], term.name


def test_perturbed_solution_violates_every_term(h, problem):
    with h.float64():
        u = _perturbed_point(problem)
        for term in problem.terms:
            x = _points(problem, term)
            r = jax.vmap(lambda y, t=term: t.residual(u, y))(x)
            assert np.min(np.abs(r)) > 1e-3, term.name


def test_residuals_of_known_derivatives(h):
    """The PDE residuals are the documented differential operators, checked on u = polynomial."""
    with h.float64():
        # u = t^2 x^3 + x t: u_t = 2 t x^3 + x, u_tt = 2 x^3, u_xx = 6 t^2 x.
        u = lambda p: p[0] ** 2 * p[1] ** 3 + p[1] * p[0]
        p = jnp.asarray([0.3, 0.7])
        t, x = 0.3, 0.7
        wave, heat = make_problem("wave", c=1.5), make_problem("heat", k=0.2)
        assert float(wave.term("r").residual(u, p)) == pytest.approx(2 * x**3 - 1.5**2 * 6 * t**2 * x, rel=1e-12)
        assert float(wave.term("ut").residual(u, p)) == pytest.approx(2 * t * x**3 + x, rel=1e-12)
        assert float(heat.term("r").residual(u, p)) == pytest.approx(2 * t * x**3 + x - 0.2 * 6 * t**2 * x, rel=1e-12)
        poisson = make_problem("poisson", a=2)
        v = lambda y: y[0] ** 4
        f = -((2 * np.pi) ** 2) * np.sin(2 * np.pi * 0.3)
        assert float(poisson.term("r").residual(v, jnp.asarray([0.3]))) == pytest.approx(12 * 0.3**2 - f, rel=1e-12)
        assert float(poisson.term("u").residual(v, jnp.asarray([0.3]))) == pytest.approx(
            0.3**4 - np.sin(2 * np.pi * 0.3), rel=1e-12)


def test_exact_solutions_match_their_formulas_and_side_conditions(h):
    with h.float64():
        s = jnp.linspace(0.0, 1.0, 11, dtype=jnp.float64)
        zero, one = jnp.zeros_like(s), jnp.ones_like(s)
        poisson = make_problem("poisson", a=3)
        np.testing.assert_allclose(poisson.exact(s[:, None]), np.sin(3 * np.pi * np.asarray(s)), atol=1e-14)
        wave = make_problem("wave", c=2.0, a=0.5)
        tx = jnp.stack([s, s[::-1]], 1)
        t, x = np.asarray(s), np.asarray(s[::-1])
        ref = np.sin(np.pi * x) * np.cos(2 * np.pi * t) + 0.5 * np.sin(4 * np.pi * x) * np.cos(8 * np.pi * t)
        np.testing.assert_allclose(wave.exact(tx), ref, atol=1e-14)  # paper.md: u for c = 2
        initial = np.sin(np.pi * np.asarray(s)) + 0.5 * np.sin(4 * np.pi * np.asarray(s))  # u(x, 0)
        np.testing.assert_allclose(wave.exact(jnp.stack([zero, s], 1)), initial, atol=1e-14)
        heat = make_problem("heat", k=0.1)
        ref = np.exp(-0.1 * np.pi**2 * t) * np.sin(np.pi * x)
        ref += 0.5 * np.exp(-0.9 * np.pi**2 * t) * np.sin(3 * np.pi * x)
        np.testing.assert_allclose(heat.exact(tx), ref, atol=1e-14)
        for p in (wave, heat):  # u = 0 on x = 0 and x = 1
            for side in (zero, one):
                assert np.max(np.abs(p.exact(jnp.stack([s, side], 1)))) <= 1e-14
        ut0 = jax.vmap(jax.grad(lambda y: wave.exact(y[None])[0]))(jnp.stack([zero, s], 1))[:, 0]
        assert np.max(np.abs(ut0)) <= 1e-12


def test_boundary_terms_sample_the_boundary():
    key = jax.random.key(3)
    poisson = make_problem("poisson", n_b=9, n_r=11)
    xb = np.asarray(poisson.term("u").sampler(key, 9))[:, 0]
    assert list(xb) == [0.0] * 4 + [1.0] * 5  # n_b // 2 copies of x = 0, the rest at x = 1
    np.testing.assert_allclose(np.asarray(poisson.term("r").sampler(key, 11))[:, 0], np.linspace(0, 1, 11), atol=1e-7)
    for name in ("wave", "heat"):
        p = make_problem(name)
        pts = np.asarray(p.term("u").sampler(key, 30))
        t, x = pts[:, 0], pts[:, 1]
        assert np.all((pts >= 0) & (pts <= 1))
        assert np.all(t[:10] == 0) and np.all(x[10:20] == 0) and np.all(x[20:] == 1)
        inside = np.asarray(p.term("r").sampler(key, 200))
        assert np.all((inside >= 0) & (inside <= 1)) and inside.std(0).min() > 0.2
    ut = np.asarray(make_problem("wave").term("ut").sampler(key, 20))
    assert np.all(ut[:, 0] == 0) and ut[:, 1].std() > 0.2


def test_sample_sizes_and_statistics(problem):
    key = jax.random.key(0)
    train, probe = problem.sample(key), problem.sample(key, ntk=True)
    for term, x, y in zip(problem.terms, train, probe, strict=True):
        assert x.shape == (term.n, problem.dim) and y.shape == (term.n_ntk, problem.dim)
    assert problem.mean.shape == problem.std.shape == (problem.dim,)
    assert problem.grid.shape == (int(np.prod(problem.grid_shape)), problem.dim)
    if problem.name == "poisson":  # statistics of the collocation points, population std
        x_r = np.linspace(0, 1, problem.params["n_r"])
        np.testing.assert_allclose(problem.mean, [x_r.mean()], rtol=1e-12)
        np.testing.assert_allclose(problem.std, [x_r.std()], rtol=1e-12)
    else:  # exact statistics of U[0, 1]
        np.testing.assert_allclose(problem.mean, [0.5, 0.5], rtol=1e-12)
        np.testing.assert_allclose(problem.std, [12**-0.5] * 2, rtol=1e-12)


def test_loss_and_rel_l2(h):
    problem = make_problem("wave", n_u=12, n_ut=6, n_r=12, n_ntk=9, n_eval=10)
    apply = lambda params, x: problem.exact(x) + params
    assert float(problem.rel_l2(apply, 0.0)) == pytest.approx(0.0, abs=1e-6)
    zero = lambda params, x: jnp.zeros(x.shape[:-1]) if x.ndim > 1 else jnp.zeros(())
    assert float(problem.rel_l2(zero, None)) == pytest.approx(1.0, rel=1e-6)
    x = problem.sample(jax.random.key(0))[0]
    term = problem.term("u")
    res = term.residuals(apply, 0.25, x)
    np.testing.assert_allclose(res, 0.25, rtol=1e-6)
    assert float(term.loss(apply, 0.25, x)) == pytest.approx(3.0 * 0.25**2, rel=1e-6)  # scale 3 (code's sum of 3 means)


@pytest.mark.parametrize("name, kwargs, bad", [
    ("poisson", {"a": float("inf")}, r"^a .*got inf"), ("poisson", {"n_b": 1}, r"^n_b .*got 1"),
    ("poisson", {"n_r": 0}, r"^n_r .*got 0"), ("wave", {"c": 0.0}, r"^c .*got 0\.0"),
    ("wave", {"c": float("nan")}, r"^c .*got nan"), ("heat", {"k": -1.0}, r"^k .*got -1\.0"),
])
def test_bad_problem_parameters_raise(name, kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        make_problem(name, **kwargs)


def test_unknown_problem_and_term():
    with pytest.raises(ValueError, match="'navier_stokes'; choose one of poisson, wave, heat"):
        make_problem("navier_stokes")
    with pytest.raises(KeyError, match="'q'"):
        make_problem("poisson").term("q")
    assert list(PROBLEMS)[:3] == ["poisson", "wave", "heat"]  # the paper's problems first, then the others
    assert make_problem("wave").term_names == ("u", "ut", "r")
    assert make_problem("heat").coords == ("t", "x") and make_problem("poisson").coords == ("x",)


def test_a_linear_operator_is_stated_once_and_gives_both_the_residual_and_the_stream_coefficients():
    from pinnlab.problems.base import Linear, fixed, linear

    op = Linear(u=2.0, d={1: 3.0}, dd={0: -4.0, 1: 0.0})
    assert op.streams() == {"u": 2.0, "d1": 3.0, "dd0": -4.0}  # zero coefficients carry no stream
    same = Linear(2.0, {1: 3.0}, {1: 0.0, 0: -4.0})  # a value: equal and hashed by its coefficients
    assert op == same and hash(op) == hash(same)
    u = lambda x: x[0] ** 3 + x[0] * x[1] ** 2  # noqa: E731  u_y = 2 x y, u_xx = 6 x
    x = jnp.asarray([0.5, -2.0])
    assert float(op(u, x)) == pytest.approx(2 * (0.125 + 2.0) + 3 * (2 * 0.5 * -2.0) - 4 * (6 * 0.5), rel=1e-6)
    term = linear("r", op, lambda x: x[0], fixed([[0.5, -2.0]]), 1, 1)
    assert term.operator == op.streams()
    assert float(term.residual(u, x)) == pytest.approx(float(op(u, x)) - 0.5, rel=1e-6)
    assert linear("ut", Linear(d={0: 1.0}), None, fixed([[0.0, 0.0]]), 1, 1).residual(u, x) == pytest.approx(
        3 * 0.25 + 4.0, rel=1e-6)
    with pytest.raises(ValueError, match="no non-zero coefficient"):
        linear("z", Linear(dd={0: 0.0}), None, fixed([[0.0, 0.0]]), 1, 1)
