"""The viscous Burgers problem, added as one file (pinnlab/problems/burgers.py): a nonlinear residual on the
Jacobian path, its exact shock, and the CLI and lab reaching it through the registry with no other edit."""

from __future__ import annotations

import contextlib
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinnlab import cli, make_problem, ntk
from pinnlab.lab.state import PRESETS, build, resolve
from tests.conftest import explicit_jacobian, float64, sample_points, small_net, to64

NU = 0.1


@pytest.fixture(scope="module")
def problem():
    return make_problem("burgers", nu=NU, n_u=8, n_r=10, n_ntk=5, n_eval=20)


def test_the_shock_zeroes_every_residual_and_the_residual_is_burgers(problem):
    with float64():
        shock = lambda x: 0.5 - jnp.tanh((x[..., 1] - 0.5 * x[..., 0]) / (2 * NU))  # noqa: E731
        for term, x in zip(problem.terms, sample_points(problem, 7), strict=True):
            np.testing.assert_allclose(jax.vmap(lambda p: term.residual(shock, p))(x), 0.0, atol=1e-11)
        # u = t + x^2: u_t + u u_x - nu u_xx = 1 + (t + x^2) 2 x - 2 nu
        poly = lambda x: x[..., 0] + x[..., 1] ** 2  # noqa: E731
        pts = jnp.asarray([[0.2, -0.7], [0.9, 0.4]], jnp.float64)
        want = 1 + (pts[:, 0] + pts[:, 1] ** 2) * 2 * pts[:, 1] - 2 * NU
        np.testing.assert_allclose(jax.vmap(lambda p: problem.term("r").residual(poly, p))(pts), want, rtol=1e-12)
    assert problem.term("r").operator is None and problem.term("u").operator == {"u": 1.0}
    with pytest.raises(ValueError, match="nu must be a positive number"):
        make_problem("burgers", nu=-1.0)


def test_its_ntk_equals_an_explicit_jacobian_product(problem):
    net = small_net(problem)
    assert ntk.resolve_method(net.apply, problem.terms) == "jacobian"  # the nonlinear residual
    with float64():
        params, points = to64(net.params), sample_points(problem, 4)
        jac = explicit_jacobian(net.apply, params, problem.terms, points)
        kernel = ntk.kernel(net.apply, params, problem.terms, points)
    np.testing.assert_allclose(kernel, jac @ jac.T, rtol=1e-10, atol=1e-12 * np.abs(jac @ jac.T).max())


def test_the_cli_and_the_lab_reach_it(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["train", "--problem", "burgers", "--nu", "0.2", "--batch", "u=16,r=16", "--ntk-points", "8",
                         "--width", "8", "--steps", "20", "--chunk", "10", "--weighting", "none", "--no-progress",
                         "--no-report", "--out", str(tmp_path)])
    assert code == 0, err.getvalue()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["problem_params"] == {"nu": 0.2, "n_u": 16, "n_r": 16, "n_ntk": 8}
    assert "burgers" in PRESETS
    problem, net, train = build(resolve("burgers", width=8, n_b=10, n_r=10, n_ntk=6), chunk=10)
    assert problem.name == "burgers" and problem.params["nu"] == 0.05 and net.width == 8
