"""The lessons' figures (notebooks 03-05) as presets for ``pinnlab reproduce``, at the paper's three scales.

* ``linearized``: gradient descent on the real one-hidden-layer net and on its linearisation at
  ``theta_0`` (:mod:`pinnlab.linearized`) as the width grows: the distance between their predictions and
  the kernel drift ``||K_T - K_0|| / ||K_0||`` fall as powers of the width (fitted log-log slopes).
* ``infinite-width``: the empirical NTK of a one-hidden-layer net against its infinite-width limit
  (:mod:`pinnlab.infinite_width`): the relative distance falls as width^-1/2.
* ``stability``: Fig. 5 as a map: the final error over (learning rate, lambda_b) with gradient
  descent's bound ``lr < 2 / lambda_max(K-tilde)`` of the initial kernel (:func:`pinnlab.modes.stable_lr`).

``smoke`` runs in seconds (tests), ``cpu`` in minutes on a 2-core laptop, ``full`` widens the sweeps.
Each preset returns a :class:`Lesson`: plain JSON-able ``numbers`` and ``figures()`` (plotly, imported
only then). The ``cpu`` scales are the settings of ``benchmarks/bench_linearized.py`` (whose committed
numbers it reproduces for widths >= 30; width 10 trains at the edge of stability, where its kernel grows
5x and rounding differences grow with it), ``bench_infinite_width.py`` (here on the 40 interior points of
the linearised lesson, with the RMS over seeds in place of the median) and ``bench_fig5_map.py``'s grid.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from pinnlab import infinite_width, linearized, modes, nets, ntk, optimizers, training
from pinnlab.ensemble import Ensemble
from pinnlab.paper import POISSON, Progress, check_scale, e3_sweep_runs
from pinnlab.problems import Problem, make_problem


@dataclasses.dataclass
class Lesson:
    """The outcome of a lesson preset: its reported numbers (plain JSON) and its figure."""

    name: str
    scale: str
    numbers: dict

    def figures(self) -> dict:
        """``{name: plotly Figure}`` (plotly is imported only here)."""
        from pinnlab import lesson_figures

        return lesson_figures.build(self)


def power_law(x, y) -> tuple[float, float]:
    """``(slope, log intercept)`` of the least-squares line of log y against log x (NaNs with fewer than two
    positive finite pairs)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(y) & (y > 0) & (x > 0)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(slope), float(intercept)


_rel = ntk.relative_change  # ||a - b|| / ||b|| (Frobenius for matrices)


def loglog_slope(x, y) -> float:
    """The least-squares slope of log y against log x (NaN with fewer than two positive finite pairs)."""
    return power_law(x, y)[0]


def _to64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


# -- the linearised network against the real one ---------------------------------------------------
# Poisson u = sin(pi x) (Fig. 2's target), 2 boundary and 40 interior points, for both width lessons
LESSON_PROBLEM = dict(a=1.0, n_b=2, n_r=40, n_eval=200)
LINEARIZED_SCALES = {
    "smoke": dict(widths=(10, 100), steps=100),
    "cpu": dict(widths=(10, 30, 100, 300, 1_000, 3_000), steps=2_000),
    "full": dict(widths=(10, 30, 100, 300, 1_000, 3_000, 10_000), steps=10_000),
}
LR_FACTOR = 0.5  # lr = LR_FACTOR / lambda_max(K-tilde at theta_0): every mode decays, none oscillates


@functools.cache
def lesson_problem() -> Problem:
    """The width lessons' problem, one instance (its terms key the compiled kernels the two lessons share)."""
    return make_problem("poisson", **LESSON_PROBLEM)


def linearized_start(problem: Problem, width: int, seed: int = 0):
    """The one-hidden-layer paper_text net of ``width``: its ``apply``, initial parameters and training points
    in float64 (call under ``jax.enable_x64``), drawn as ``Trainer`` with ``seed`` draws them."""
    s = training.start(problem, nets.convention("paper_text", width=width, depth=1), None, seed)
    return s.net.apply, _to64(s.params), [jnp.asarray(x, jnp.float64) for x in s.data]


def _two_runs(apply, terms, params0, points, grid, lr: float, steps: int):
    """Gradient descent from ``params0`` on the real residuals and on the linearised ones, by one loop
    (:func:`pinnlab.linearized.train`, the real residual map in place of the linearised one): the
    residuals of both at every step and both predictions on ``grid``."""
    weights = (1.0,) * len(terms)
    sgd = optimizers.make("sgd", lr, None, 1.0)
    real_map = jax.tree_util.Partial(lambda p: linearized.stacked_residuals(apply, terms, p, points))
    lin = linearized.linearize(apply, terms, params0, points)
    real = linearized.Linearized(real_map, lin.r0, params0)
    p_real, r_real = linearized.train(real, terms, points, weights, sgd, steps)
    p_lin, r_lin = linearized.train(lin, terms, points, weights, sgd, steps)
    u0, du = jax.jvp(lambda p: apply(p, grid), (params0,), (jax.tree.map(jnp.subtract, p_lin, params0),))
    return p_real, r_real, r_lin, apply(p_real, grid), u0 + du


def linearized_run(problem: Problem, width: int, steps: int, lr_factor: float = LR_FACTOR, seed: int = 0) -> dict:
    """Gradient descent, ``steps`` steps at ``lr = lr_factor / lambda_max(K D)``, on the real net and on its
    linearisation at theta_0, in float64. Returns the distances between them (residuals at the training
    points, predictions on the grid; relative to the real run's), the kernel drift ``||K_T - K_0|| / ||K_0||``,
    each run's rel. L2 error, the residual norms at step 0 and T, and both predictions on the grid."""
    with jax.enable_x64(True):
        apply, params0, points = linearized_start(problem, width, seed)
        k0 = np.asarray(ntk.kernel(apply, params0, problem.terms, points))
        factors = linearized.row_factors(problem.terms, points, (1.0,) * len(problem.terms))
        lr = lr_factor / float(modes.decompose(k0, factors).values[0])
        grid = jnp.asarray(problem.grid, jnp.float64)
        run = jax.jit(_two_runs, static_argnums=(0, 1, 5, 6))
        p_real, r_real, r_lin, u_real, u_lin = run(apply, problem.terms, params0, points, grid, lr, steps)
        k_t = np.asarray(ntk.kernel(apply, p_real, problem.terms, points))
        exact = np.asarray(problem.exact(grid))
    r_real, r_lin, u_real, u_lin = (np.asarray(a) for a in (r_real, r_lin, u_real, u_lin))
    finite = bool(np.all(np.isfinite(r_real)))
    return {"width": width, "lr": lr, "status": "completed" if finite else "diverged",
            "residual_distance": _rel(r_lin[-1], r_real[-1]), "prediction_distance": _rel(u_lin, u_real),
            "kernel_drift": _rel(k_t, k0), "rel_l2_real": _rel(u_real, exact), "rel_l2_linearised": _rel(u_lin, exact),
            "residual_norm_init": float(np.linalg.norm(r_lin[0])),
            "residual_norm_real": float(np.linalg.norm(r_real[-1])),
            "residual_norm_linearised": float(np.linalg.norm(r_lin[-1])),
            "prediction_real": u_real.tolist(), "prediction_linearised": u_lin.tolist()}


def linearized_lesson(scale: str | None = None, seed: int = 0, progress: Progress | None = None) -> Lesson:
    """The linearised net vs the real one for each width of the scale; log-log slopes against width
    (the NTK theory: the kernel drift falls as width^-1/2, the predictions' distance faster)."""
    del progress  # each width's two runs are one compiled loop
    scale = check_scale(scale)
    s = LINEARIZED_SCALES[scale]
    problem = lesson_problem()
    rows = [linearized_run(problem, w, s["steps"], seed=seed) for w in s["widths"]]
    widths = [r["width"] for r in rows]
    slopes = {k: loglog_slope(widths, [r[k] for r in rows])
              for k in ("residual_distance", "prediction_distance", "kernel_drift")}
    numbers = {"problem": {"name": "poisson", **LESSON_PROBLEM}, "net": "1 hidden layer, tanh, paper_text",
               "optimizer": "sgd (gradient descent), float64", "lr_factor": LR_FACTOR, "steps": s["steps"],
               "seed": seed, "widths": widths, "runs": rows, "slope_vs_width": slopes,
               "grid": np.asarray(problem.grid[:, 0], np.float64).tolist(),
               "exact": np.asarray(problem.exact(problem.grid), np.float64).tolist()}
    return Lesson("linearized", scale, numbers)


# -- the empirical NTK against its infinite-width limit --------------------------------------------
INFINITE_SCALES = {
    "smoke": dict(widths=(10, 100, 1_000), seeds=4, nodes=64),
    "cpu": dict(widths=(10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000), seeds=3, nodes=128),
    "full": dict(widths=(10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000), seeds=10, nodes=128),
}


def kernel_blocks(n_b: int) -> dict[str, tuple[slice, slice]]:
    """K and its blocks as (rows, cols) slices, for a two-term kernel whose first ``n_b`` rows are the boundary's."""
    return {"K": (slice(None), slice(None)), "K_uu": (slice(0, n_b), slice(0, n_b)),
            "K_ur": (slice(0, n_b), slice(n_b, None)), "K_rr": (slice(n_b, None), slice(n_b, None))}


def empirical_kernel(problem: Problem, points, width: int, seed: int) -> np.ndarray:
    """The float64 NTK at initialisation of the one-hidden-layer paper_text net of ``width`` (key ``seed``)."""
    with jax.enable_x64(True):
        net = nets.make_net(nets.convention("paper_text", width=width, depth=1), problem.dim, problem.mean,
                            problem.std, jax.random.key(seed))
        return np.asarray(ntk.kernel(net.apply, _to64(net.params), problem.terms,
                                     [jnp.asarray(x, jnp.float64) for x in points]))


def infinite_width_lesson(scale: str | None = None, progress: Progress | None = None) -> Lesson:
    """Relative Frobenius distance of K and its blocks to the limit at the lesson problem's training points,
    per width and seed (seeds 0..n-1), their root mean square over the seeds and its log-log slope.

    The empirical kernel is the limit's output-bias part plus the mean of ``width`` i.i.d. neuron terms
    whose expectation is the rest of the limit, so E ||K_m - K_inf||^2 is exactly proportional to 1/m:
    the RMS over seeds falls as m^-1/2 (slope -1/2); a median of few seeds is noisier.
    """
    del progress  # nothing trains
    scale = check_scale(scale)
    s = INFINITE_SCALES[scale]
    problem = lesson_problem()
    points = [np.asarray(x, np.float64) for x in problem.sample(jax.random.key(0))]  # fixed points
    limit = infinite_width.kernel(problem.terms, points, nodes=s["nodes"])
    blocks = kernel_blocks(len(points[0]))
    rows, diagonals = [], {}
    for width in s["widths"]:
        dist = {name: [] for name in blocks}
        for seed in range(s["seeds"]):
            k = empirical_kernel(problem, points, width, seed)
            for name, (r, c) in blocks.items():
                dist[name].append(_rel(k[r, c], limit[r, c]))
            if seed == 0:
                diagonals[str(width)] = np.diag(k).tolist()
        rows.append({"width": width, **{name: {"rms": float(np.sqrt(np.mean(np.square(v)))), "all": v}
                                        for name, v in dist.items()}})
    slopes = {name: loglog_slope(s["widths"], [row[name]["rms"] for row in rows]) for name in blocks}
    numbers = {"problem": {"name": "poisson", **LESSON_PROBLEM},
               "net": "1 hidden layer, tanh, paper_text (NTK parameterisation, N(0, 1), raw inputs), float64",
               "limit": f"Gauss-Hermite, {s['nodes']} nodes per dimension", "nodes": s["nodes"], "seeds": s["seeds"],
               "widths": list(s["widths"]), "distances": rows, "slope_vs_width": slopes,
               "points": np.concatenate(points)[:, 0].tolist(), "n_b": len(points[0]),
               "limit_kernel": limit.tolist(), "diagonal_seed0": diagonals, "diagonal_limit": np.diag(limit).tolist()}
    return Lesson("infinite-width", scale, numbers)


# -- Fig. 5 as a stability map ---------------------------------------------------------------------
PAPER_LAMBDAS = tuple(float(v) for v in np.linspace(0.0, 500.0, 11).clip(1.0))
STABILITY_SCALES = {
    "smoke": dict(lrs=(1e-5, 1e-4, 1e-3), lambdas=(1.0, 100.0, 500.0), seeds=1, steps=300),
    "cpu": dict(lrs=(1e-6, 3e-6, 1e-5, 3e-5, 6e-5, 1e-4, 2e-4, 4e-4, 1e-3),
                lambdas=(1.0, 10.0, 50.0, 100.0, 200.0, 500.0), seeds=3, steps=POISSON.steps),
    "full": dict(lrs=tuple(float(v) for v in np.geomspace(1e-6, 1e-3, 13)), lambdas=PAPER_LAMBDAS, seeds=10,
                 steps=POISSON.steps),
}
LINE_POINTS = 61  # lambda_b values of the drawn bound, log-spaced over the grid's range


def stability_bounds(problem: Problem, apply, starts, lambdas, line_points: int = LINE_POINTS) -> dict:
    """``lambda_max(K D)`` and ``2 / lambda_max`` at initialisation per seed and lambda_b (lambda_r = 1), K the
    float64 NTK on the training points; ``starts`` maps a seed to its (params, points). The first seed's bound
    also on a fine log grid over the range of ``lambdas`` (the line on the map)."""
    fine = np.geomspace(min(lambdas), max(lambdas), line_points)
    out: dict = {"lambda_max": {}, "lr_max": {}, "line_seed": next(iter(starts))}
    for seed, (params, points) in starts.items():
        with jax.enable_x64(True):
            points = [jnp.asarray(x, jnp.float64) for x in points]
            k = ntk.kernel(apply, _to64(params), problem.terms, points)
            # D is linear in the weights: D(lambda_b) = lambda_b D(1, 0) + D(0, 1)
            d_b, d_r = (np.asarray(linearized.row_factors(problem.terms, points, w)) for w in ((1.0, 0.0), (0.0, 1.0)))

        def top(lam_b, k=k, d_b=d_b, d_r=d_r):
            return float(modes.decompose(k, float(lam_b) * d_b + d_r).values[0])

        values = [top(lam) for lam in lambdas]
        out["lambda_max"][str(seed)] = values
        out["lr_max"][str(seed)] = [2.0 / v for v in values]
        if "line" not in out:
            out["line"] = {"lambda_b": fine.tolist(), "lr_max": [2.0 / top(lam) for lam in fine]}
    return out


def stability_cells(ensemble: Ensemble, result) -> list[dict]:
    """Per run of one learning rate: status, final error (None where diverged), the step it diverged at,
    and the peak and last finite weighted loss over its first (gradient descent on the linearised loss
    falls monotonically below the bound, so a peak above the start marks an unstable step)."""
    cells = []
    for member, h, step in zip(result.members, result.histories, ensemble.diverged, strict=True):
        loss = h.curve("losses").astype(np.float64) @ np.asarray(member.initial_weights, np.float64)
        finite = loss[np.isfinite(loss)]
        diverged = h.status == "diverged"
        cells.append({"status": h.status, "rel_l2": None if diverged else float(h.rel_l2[-1]),
                      "diverged_step": int(step) if diverged else None,
                      "loss_peak_ratio": float(finite.max() / finite[0]),
                      "loss_last_ratio": float(finite[-1] / finite[0])})
    return cells


def stability_lesson(scale: str | None = None, progress: Progress | None = None) -> Lesson:
    """Fig. 5's set-up (Poisson sin(4 pi x), 1 x 100 tanh, paper_code, gradient descent, lambda_r = 1) over a
    grid of learning rates x lambda_b x seeds, and the bound of :func:`stability_bounds`.

    Per learning rate the (lambda_b x seed) grid trains as one :class:`~pinnlab.ensemble.Ensemble`; every
    learning rate shares one compiled chunk (the rate is the live ``lr_scale`` on the paper's 1e-5).
    """
    scale = check_scale(scale)
    s = STABILITY_SCALES[scale]
    problem, net, config, members = e3_sweep_runs(s["lambdas"], s["seeds"], s["steps"])
    shape = (len(s["lambdas"]), s["seeds"])
    grid, seconds, bound = [], [], None
    for lr in s["lrs"]:
        ensemble = Ensemble(problem, net, config, members)
        if bound is None:  # members 0..seeds-1 are the seeds at the first lambda_b: their starts are the seeds'
            starts = {m.seed: (jax.tree.map(lambda a, i=i: np.asarray(a[i]), ensemble.params0),
                               [np.asarray(x[i]) for x in ensemble.data]) for i, m in enumerate(members[:s["seeds"]])}
            bound = stability_bounds(problem, ensemble.apply, starts, s["lambdas"])
        ensemble.lr_scale = lr / config.lr
        label = f"lr {lr:.2g}: {len(members)} runs in one ensemble"
        for snap in ensemble.snapshots():
            if progress is not None:
                progress(label, ensemble, snap.member(0))
        result = ensemble.result()
        cells = stability_cells(ensemble, result)
        grid.append([cells[i * s["seeds"]:(i + 1) * s["seeds"]] for i in range(shape[0])])
        seconds.append(result.seconds)
    errors = np.array([[[np.nan if c["rel_l2"] is None else c["rel_l2"] for c in row] for row in g] for g in grid])
    with warnings.catch_warnings():  # a cell where every seed diverged has no mean
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(errors, axis=2)
    numbers = {"problem": "poisson a=4 (u = sin(4 pi x)), 100 + 100 points", "net": "1 x 100 tanh, paper_code",
               "optimizer": "sgd (gradient descent)", "lambda_r": 1.0, "steps": s["steps"],
               "lr": list(s["lrs"]), "lambda_b": list(s["lambdas"]), "seeds": list(range(s["seeds"])),
               "rel_l2": errors.tolist(), "mean_rel_l2": mean.tolist(),
               "diverged": [[sum(c["status"] == "diverged" for c in row) for row in g] for g in grid],
               "cells": grid, "bound": bound,
               "seconds_per_lr": seconds}
    return Lesson("stability", scale, numbers)


# -- registry for `pinnlab reproduce` (as paper.FIGURES: name -> (experiment, run(scale, progress))) --
LESSONS = {
    "linearized": ("linearized", lambda scale, progress: linearized_lesson(scale, progress=progress)),
    "infinite-width": ("infinite-width", lambda scale, progress: infinite_width_lesson(scale, progress=progress)),
    "stability": ("stability", lambda scale, progress: stability_lesson(scale, progress=progress)),
}
