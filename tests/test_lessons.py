"""The lessons' figures (``pinnlab reproduce linearized infinite-width stability``) at smoke scale, through the
CLI, and one number of each pinned against an independent float64 computation: the linearised run against the
closed form ``r_T = (I - eta K D)^T r_0`` with K from an explicit Jacobian, the infinite-width kernel against a
numpy quasi-Monte Carlo over one neuron's closed-form derivatives, and the stability bound against a general
(non-symmetric) eigensolver on an explicitly formed K-tilde = K D."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm, qmc

from pinnlab import cli, lesson_figures, lessons, nets
from pinnlab.paper import FIGURES, e3_sweep_runs
from pinnlab.reproduce import FIGURE_NAMES, reproduce
from tests.conftest import explicit_jacobian, float64, to64

NAMES = ("linearized", "infinite-width", "stability")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The three lessons at smoke scale, written by :func:`pinnlab.reproduce.reproduce` into one directory
    (the CLI around it is tests/test_cli.py's; here its parser only)."""
    out = tmp_path_factory.mktemp("lessons")
    results = reproduce(list(NAMES), "smoke", out)
    assert list(results) == list(NAMES)
    return out, {name: json.loads((out / f"{name}.json").read_text()) for name in NAMES}


def _floats(tree):
    """Every number in a JSON tree (None included), depth first."""
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _floats(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from _floats(v)
    elif tree is None or (isinstance(tree, int | float) and not isinstance(tree, bool)):
        yield tree


def _rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def _factors_by_hand(terms, points, weights) -> np.ndarray:
    """D of the loss sum_i lambda_i s_i mean(r_i^2), whose gradient is J^T D r: 2 lambda_i s_i / n_i per row."""
    return np.concatenate([np.full(len(x), 2.0 * w * t.scale / len(x)) for t, x, w in zip(terms, points, weights)])


def _residuals(apply, terms, params, points) -> np.ndarray:
    return np.concatenate([np.asarray(t.residuals(apply, params, x)) for t, x in zip(terms, points)])


def test_the_lessons_are_registered_next_to_the_paper_figures(written):
    out, records = written
    assert FIGURE_NAMES[:len(FIGURES)] == tuple(FIGURES) and set(NAMES) <= set(FIGURE_NAMES)  # so `all` runs them
    assert cli.build_parser().parse_args(["reproduce", "all", *NAMES]).figure == ["all", *NAMES]
    assert set(lesson_figures.DRAW) == set(lessons.LESSONS)
    for name in NAMES:
        record = records[name]
        assert record["figure"] == name and record["experiment"] == name and record["scale"] == "smoke"
        assert record["command"] == f"pinnlab reproduce {name} --scale smoke" and record["seconds"] > 0
        html = (out / f"{name}.html").read_text()
        assert "plotly" in html and '<script src="http' not in html  # self-contained


def test_linearized_numbers_and_the_closed_form_of_gradient_descent(written):
    _, records = written
    n = records["linearized"]["numbers"]
    s = lessons.LINEARIZED_SCALES["smoke"]
    assert n["widths"] == list(s["widths"]) and n["steps"] == s["steps"] and len(n["runs"]) == len(s["widths"])
    assert all(v is not None and math.isfinite(v) for v in _floats(n))
    assert len(n["grid"]) == len(n["exact"]) == lessons.LESSON_PROBLEM["n_eval"]
    for run in n["runs"]:
        assert run["status"] == "completed"
        assert len(run["prediction_real"]) == len(run["prediction_linearised"]) == len(n["grid"])
    assert set(n["slope_vs_width"]) == {"residual_distance", "prediction_distance", "kernel_drift"}
    # the wide net stays closer to its linearisation than the narrow one
    assert n["runs"][-1]["prediction_distance"] < 0.2 * n["runs"][0]["prediction_distance"]

    problem = lessons.lesson_problem()
    for run in n["runs"]:
        with float64():
            apply, params, points = lessons.linearized_start(problem, run["width"], n["seed"])
            jac = explicit_jacobian(apply, params, problem.terms, points)
            r0 = _residuals(apply, problem.terms, params, points)
        d = _factors_by_hand(problem.terms, points, (1.0, 1.0))
        tilde = (jac @ jac.T) * d[None, :]
        lam_max = np.linalg.eigvals(tilde).real.max()
        np.testing.assert_allclose(run["lr"], lessons.LR_FACTOR / lam_max, rtol=1e-9)
        r_t = np.linalg.matrix_power(np.eye(len(r0)) - run["lr"] * tilde, n["steps"]) @ r0
        np.testing.assert_allclose(run["residual_norm_init"], np.linalg.norm(r0), rtol=1e-12)
        np.testing.assert_allclose(run["residual_norm_linearised"], np.linalg.norm(r_t), rtol=1e-8)
        assert np.linalg.norm(r_t) < 0.5 * np.linalg.norm(r0)  # it trained


def _tanh_neuron_kernel(x, n_b: int, log2_samples: int = 17, seed: int = 0) -> np.ndarray:
    """K_inf for the boundary (L = identity) rows then the interior (L = d2/dx2) rows, by scrambled-Sobol
    quasi-Monte Carlo over (w, b) ~ N(0, I): E[g g^T] + c c^T with g the gradient in (a, w, b) of
    L[a tanh(w x + b)] at a = 1 (derivatives of tanh by hand) and c = L[1] (the output bias)."""
    wb = norm.ppf(qmc.Sobol(2, scramble=True, seed=seed).random_base2(log2_samples))
    w, b = wb[:, :1], wb[:, 1:]

    def rows(xs, second: bool):
        t = np.tanh(w * xs[None, :] + b)
        s = 1.0 - t**2
        t2, t3 = -2.0 * t * s, -2.0 * s**2 + 4.0 * t**2 * s  # tanh'' and tanh'''
        if not second:
            return np.stack([t, xs * s, s])
        return np.stack([w**2 * t2, 2.0 * w * t2 + w**2 * xs * t3, w**2 * t3])

    g = np.concatenate([rows(x[:n_b], False), rows(x[n_b:], True)], axis=2).reshape(-1, len(x))
    c = np.concatenate([np.ones(n_b), np.zeros(len(x) - n_b)])
    return g.T @ g / len(w) + np.outer(c, c)


def test_infinite_width_numbers_and_an_independent_monte_carlo_of_the_limit(written):
    _, records = written
    n = records["infinite-width"]["numbers"]
    s = lessons.INFINITE_SCALES["smoke"]
    assert all(v is not None and math.isfinite(v) for v in _floats(n))
    size = len(n["points"])
    limit = np.array(n["limit_kernel"])
    assert limit.shape == (size, size) and np.allclose(limit, limit.T, rtol=0, atol=1e-12 * np.abs(limit).max())
    assert n["widths"] == list(s["widths"]) and [row["width"] for row in n["distances"]] == list(s["widths"])
    for row in n["distances"]:
        assert set(row) == {"width", "K", "K_uu", "K_ur", "K_rr"}
        assert all(len(row[b]["all"]) == s["seeds"] for b in ("K", "K_uu", "K_ur", "K_rr"))
    assert len(n["diagonal_seed0"]) == len(s["widths"]) and len(n["diagonal_limit"]) == size
    assert -1.0 < n["slope_vs_width"]["K"] < -0.2  # theory: -1/2

    # the limit against a quasi-Monte Carlo that shares nothing with pinnlab (~1e-3 accurate at 2^17 samples)
    x = np.array(n["points"])
    assert _rel(_tanh_neuron_kernel(x, n["n_b"]), limit) < 1e-2
    # one distance against the kernel J J^T of an explicit Jacobian of the narrowest net, seed 0
    problem = lessons.lesson_problem()
    width = n["widths"][0]
    with float64():
        net = nets.make_net(nets.convention("paper_text", width=width, depth=1), problem.dim, problem.mean,
                            problem.std, jax.random.key(0))
        points = [jnp.asarray(x[:n["n_b"], None]), jnp.asarray(x[n["n_b"]:, None])]
        jac = explicit_jacobian(net.apply, to64(net.params), problem.terms, points)
    np.testing.assert_allclose(n["distances"][0]["K"]["all"][0], _rel(jac @ jac.T, limit), rtol=1e-9)


def test_stability_numbers_and_the_bound_from_an_explicit_k_tilde(written):
    _, records = written
    n = records["stability"]["numbers"]
    s = lessons.STABILITY_SCALES["smoke"]
    lrs, lams, seeds = list(s["lrs"]), list(s["lambdas"]), s["seeds"]
    assert n["lr"] == lrs and n["lambda_b"] == lams and n["seeds"] == list(range(seeds))
    assert np.array(n["rel_l2"], dtype=float).shape == (len(lrs), len(lams), seeds)
    assert np.array(n["diverged"]).shape == np.array(n["mean_rel_l2"], dtype=float).shape == (len(lrs), len(lams))
    cells = [c for g in n["cells"] for row in g for c in row]
    assert len(cells) == len(lrs) * len(lams) * seeds
    for c in cells:  # an error where the run completed, a step where it diverged
        assert (c["rel_l2"] is None) == (c["status"] == "diverged") == (c["diverged_step"] is not None)
        assert c["rel_l2"] is None or math.isfinite(c["rel_l2"])
        assert math.isfinite(c["loss_peak_ratio"]) and math.isfinite(c["loss_last_ratio"])
    line = n["bound"]["line"]
    assert len(line["lambda_b"]) == len(line["lr_max"]) == lessons.LINE_POINTS
    assert np.all(np.diff(line["lr_max"]) < 0)  # a heavier boundary term lowers the bound

    # seed 0's bound from K = J J^T (jacfwd), D by hand and a general eigensolver on K D, in float64
    problem, net, _, _ = e3_sweep_runs((1.0,), 1, 1)
    key_init, key_data, _, _ = jax.random.split(jax.random.key(0), 4)  # as Trainer(seed=0) draws them
    start = nets.make_net(net, problem.dim, problem.mean, problem.std, key_init)
    with float64():
        params = to64(start.params)
        points = [jnp.asarray(x, jnp.float64) for x in problem.sample(key_data)]
        kernel = (lambda j: j @ j.T)(explicit_jacobian(start.apply, params, problem.terms, points))
    for lam, lr_max in zip(lams, n["bound"]["lr_max"]["0"]):
        eig = np.linalg.eigvals(kernel * _factors_by_hand(problem.terms, points, (lam, 1.0))[None, :])
        top = eig[np.argmax(eig.real)]
        assert abs(top.imag) <= 1e-9 * top.real
        np.testing.assert_allclose(lr_max, 2.0 / top.real, rtol=1e-8)

    # and the map changes behaviour at it: well below, gradient descent trains; well above, it blows up
    below, above = [], []
    for i, lr in enumerate(lrs):
        for j in range(len(lams)):
            for k in range(seeds):
                ratio = lr / n["bound"]["lr_max"][str(k)][j]
                c = n["cells"][i][j][k]
                (below if ratio < 0.5 else above if ratio > 2.0 else []).append(c)
    assert below and above
    assert all(c["status"] == "completed" and c["loss_peak_ratio"] <= 1.0 + 1e-6 for c in below)
    assert all(c["status"] == "diverged" or c["loss_peak_ratio"] > 10.0 for c in above)
