"""The convection problem, added as one file (pinnlab/problems/convection.py): its math, and that the
CLI and the lab reach it through the registry with no other edit."""

from __future__ import annotations

import contextlib
import io
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinnlab import cli, make_problem, ntk
from pinnlab.lab.state import PRESETS, build, resolve
from tests.conftest import explicit_jacobian, float64, sample_points, small_net, to64

BETA = 3.0


@pytest.fixture(scope="module")
def problem():
    return make_problem("convection", beta=BETA, n_u=8, n_p=6, n_r=10, n_ntk=5, n_eval=20)


def test_the_exact_solution_zeroes_every_residual_and_the_periodic_term_compares_both_ends(problem):
    with float64():
        exact = lambda x: jnp.sin(x[..., 1] - BETA * x[..., 0])  # noqa: E731  u = sin(x - beta t)
        for term, x in zip(problem.terms, sample_points(problem, 7), strict=True):
            np.testing.assert_allclose(jax.vmap(lambda p: term.residual(exact, p))(x), 0.0, atol=1e-12)
        # a function that is not 2 pi periodic in x leaves the periodic residual u(t, 0) - u(t, 2 pi)
        ramp = lambda x: x[..., 1] + x[..., 0]  # noqa: E731
        points = jnp.asarray([[0.3, 0.0], [0.9, 0.0]], jnp.float64)
        np.testing.assert_allclose(jax.vmap(lambda p: problem.term("p").residual(ramp, p))(points), -2 * math.pi)
        # the PDE residual of u = t + 2 x is u_t + beta u_x = 1 + 2 beta
        line = lambda x: x[..., 0] + 2 * x[..., 1]  # noqa: E731
        np.testing.assert_allclose(jax.vmap(lambda p: problem.term("r").residual(line, p))(points), 1 + 2 * BETA)
    assert problem.term_names == ("u", "p", "r") and problem.coords == ("t", "x")
    grid = np.asarray(problem.grid)
    assert grid[:, 0].max() == 1.0 and np.isclose(grid[:, 1].max(), 2 * math.pi, rtol=1e-6)


def test_the_samplers_put_each_term_where_it_belongs(problem):
    u, p, r = (np.asarray(x) for x in problem.sample(jax.random.key(0)))
    assert np.all(u[:, 0] == 0) and np.all((0 <= u[:, 1]) & (u[:, 1] <= 2 * math.pi))
    assert np.all(p[:, 1] == 0) and np.all((0 <= p[:, 0]) & (p[:, 0] <= 1))
    assert np.all((0 <= r) & (r <= np.asarray([1, 2 * math.pi], np.float32)))


def test_its_ntk_equals_an_explicit_jacobian_product(problem):
    net = small_net(problem)
    with float64():
        params, points = to64(net.params), sample_points(problem, 4)
        jac = explicit_jacobian(net.apply, params, problem.terms, points)
        kernel = ntk.kernel(net.apply, params, problem.terms, points)
    np.testing.assert_allclose(kernel, jac @ jac.T, rtol=1e-10, atol=1e-12 * np.abs(jac @ jac.T).max())


def _main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def test_the_cli_trains_it_with_its_own_parameter_and_term_names(tmp_path):
    code, out, err = _main(["train", "--problem", "convection", "--beta", "1", "--batch", "u=16,p=8,r=16",
                            "--ntk-points", "8", "--width", "8", "--steps", "40", "--chunk", "20", "--no-progress",
                            "--no-report", "--out", str(tmp_path)])
    assert code == 0, err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["problem_params"] == {"beta": 1.0, "n_u": 16, "n_p": 8, "n_r": 16, "n_ntk": 8}
    assert set(metrics["weights"]) == {"u", "p", "r"} and metrics["steps"] == 40
    assert "--beta BETA" in _main(["train", "--help"])[1]
    code, _, err = _main(["train", "--problem", "convection", "--k", "1", "--out", str(tmp_path / "x")])
    assert code == 2 and "--k 1.0 does not apply to problem convection (its parameters: --beta)" in err


def test_the_lab_has_its_preset_and_builds_it():
    assert "convection" in PRESETS
    state = resolve("convection", n_b=20, n_r=30, n_ntk=10)
    problem, net, _ = build(state, chunk=10)
    assert problem.name == "convection" and problem.params["beta"] == 30.0 and state.param_name == "beta"
    assert [t.n for t in problem.terms] == [20, 10, 30] and {t.n_ntk for t in problem.terms} == {10}
    assert resolve("problem=convection&param=1.5").param == 1.5
