"""Fig. 5 as a map: the final relative L2 error of E3 over (learning rate, lambda_b), with GD's stability bound.

Run from the repository root: ``PYTHONPATH=. python benchmarks/bench_fig5_map.py [--smoke] [--lrs ...]
[--lambdas ...] [--seeds N] [--steps N] [--out PATH]``. Writes one JSON file (default
``benchmarks/results_fig5_map_cpu.json``; ``--smoke`` writes nothing unless ``--out`` is given) and prints it.

The problem is the one of :func:`pinnlab.paper.e3_sweep_runs` (paper.md E3, Figs. 4-5): u_xx = f on (0, 1),
u = sin(4 pi x), 100 boundary + 100 collocation points, the paper code's 1 x 100 tanh net (standard
parameterisation, LeCun-normal weights, N(0, 1) biases, z-scored input), pinnlab's mean-squared loss
``lambda_b mean(r_b^2) + lambda_r mean(r_r^2)`` with lambda_r = 1 and plain gradient descent. Per learning
rate, the (lambda_b x seed) grid trains as ONE vmapped :class:`pinnlab.ensemble.Ensemble` (members can vary
the seed and the initial weights, not the learning rate; so one ensemble per learning rate). Member
(lambda_b, seed s) equals ``Trainer`` with that seed.

The bound: gradient descent on the (linearised) weighted loss maps the residuals by ``I - lr K D`` with
``D = diag(2 lambda_i / n_i)`` (:func:`pinnlab.linearized.row_factors`), so it is stable only for
``lr < 2 / lambda_max(K D)`` (:func:`pinnlab.modes.stable_lr`); K is the exact NTK of each seed's initial
network on its training points (:func:`pinnlab.ntk.kernel`). The bound of every seed is recorded; the
line drawn on the map is seed 0's.

Per run the JSON records the final error (``null`` where the run diverged: its loss turned non-finite and the
ensemble froze it), the step it diverged at, the error of the state it stopped in, and the weighted loss at
step 0, its peak and its last finite value: the linearised loss falls monotonically below the bound, so a
peak above the initial loss is the sign of an unstable step even where the nonlinear net did not overflow.
``bound_drift`` re-measures the bound from the current kernel along a few lone seed-0 runs (``DRIFT_RUNS``):
the map's bound is the initial kernel's, and the kernel moves during training.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results_fig5_map_cpu.json"
DEFAULT = dict(lrs=(1e-6, 3e-6, 1e-5, 3e-5, 6e-5, 1e-4, 2e-4, 4e-4, 1e-3),
               lambdas=(1.0, 10.0, 50.0, 100.0, 200.0, 500.0), seeds=3, steps=40_000)
SMOKE = dict(lrs=(1e-5, 1e-4, 1e-3), lambdas=(1.0, 100.0, 500.0), seeds=1, steps=300)
# (lr, lambda_b) of lone seed-0 runs whose bound is re-measured from the current kernel (skipped by --smoke):
# two cells that diverged below their initial bound in the committed map, and one far below it that converged
DRIFT_RUNS = ((4e-4, 1.0), (4e-4, 10.0), (1e-4, 100.0))
LINE_POINTS = 61  # lambda_b values of the drawn bound (log-spaced over the grid's range)


def stability_bounds(lambdas, seeds, line_seed: int = 0, line_points: int = LINE_POINTS) -> dict:
    """lambda_max(K D) and ``2 / lambda_max`` at initialisation per seed and lambda_b (lambda_r = 1), and
    the bound of ``line_seed`` on a fine log grid over ``lambdas``' range (the line on the map)."""
    from pinnlab import linearized, modes, ntk
    from pinnlab.paper import e3_sweep_runs
    from pinnlab.training import Trainer

    problem, net, config, _ = e3_sweep_runs((1.0,), 1, 1)
    fine = np.geomspace(min(lambdas), max(lambdas), line_points)
    out: dict = {"lambda_max": {}, "lr_max": {}, "line_seed": line_seed}
    for seed in sorted({*seeds, line_seed}):
        trainer = Trainer(problem, net, dataclasses.replace(config, seed=seed))
        k = ntk.kernel(trainer.apply, trainer.state.params, problem.terms, trainer.data)

        def top(lam_b, k=k, data=trainer.data):
            factors = linearized.row_factors(problem.terms, data, (float(lam_b), 1.0))
            return modes.decompose(k, factors).values[0]

        top_values = [top(lam) for lam in lambdas]
        out["lambda_max"][str(seed)] = [float(v) for v in top_values]
        out["lr_max"][str(seed)] = [float(2.0 / v) for v in top_values]
        if seed == line_seed:
            out["line"] = {"lambda_b": fine.tolist(), "lr_max": [float(2.0 / top(lam)) for lam in fine]}
    return out


def run_lr(lr: float, lambdas, seeds: int, steps: int, chunk: int) -> dict:
    """One ensemble: every (lambda_b, seed) at learning rate ``lr``; per-run numbers, lambda_b-major."""
    from pinnlab.ensemble import Ensemble
    from pinnlab.paper import e3_sweep_runs

    problem, net, config, members = e3_sweep_runs(lambdas, seeds, steps)
    config = dataclasses.replace(config, lr=float(lr), chunk=min(chunk, steps))
    ensemble = Ensemble(problem, net, config, members)
    result = ensemble.run()
    stopped = np.asarray(ensemble.evaluate(), np.float64)  # the error of the state each run ended (or froze) in
    rows = []
    for i, (member, h) in enumerate(zip(members, result.histories, strict=True)):
        weighted = h.curve("losses").astype(np.float64) @ np.asarray(member.initial_weights, np.float64)
        finite = weighted[np.isfinite(weighted)]
        diverged = h.status == "diverged"
        rows.append({
            "lambda_b": member.initial_weights[0], "seed": member.seed, "status": h.status,
            "rel_l2": None if diverged else float(h.rel_l2[-1]),
            "diverged_step": int(ensemble.diverged[i]) if diverged else None,
            "rel_l2_at_stop": float(stopped[i]) if np.isfinite(stopped[i]) else None,
            "loss0": float(finite[0]), "loss_peak_ratio": float(finite.max() / finite[0]),
            "loss_last_ratio": float(finite[-1] / finite[0]),
        })
    return {"lr": float(lr), "seconds": result.seconds, "runs": rows}


def bound_drift(lr: float, lam_b: float, seed: int, steps: int, every: int) -> dict:
    """The bound from the *current* kernel along one lone ``Trainer`` run (the map's bound is the initial
    kernel's): ``2 / lambda_max(K_t D)`` every ``every`` steps until the run ends or diverges."""
    from pinnlab import linearized, modes, ntk
    from pinnlab.paper import e3_sweep_runs
    from pinnlab.training import Trainer

    problem, net, config, _ = e3_sweep_runs((lam_b,), 1, steps)
    trainer = Trainer(problem, net, dataclasses.replace(config, lr=float(lr), seed=seed, initial_weights=(lam_b, 1.0),
                                                        chunk=every, eval_every=every))
    factors = linearized.row_factors(problem.terms, trainer.data, (lam_b, 1.0))

    def bound():
        k = ntk.kernel(trainer.apply, trainer.state.params, problem.terms, trainer.data)
        return float(modes.stable_lr(modes.decompose(k, factors))) if np.all(np.isfinite(k)) else None

    at, bounds = [0], [bound()]
    for _ in trainer.snapshots():
        if trainer.history.status == "diverged":
            break
        at.append(trainer.step)
        bounds.append(bound())
    return {"lr": float(lr), "lambda_b": float(lam_b), "seed": seed, "status": trainer.history.status,
            "step": at, "lr_max": bounds}


def grid_arrays(results: list[dict], lambdas, seeds: int) -> dict:
    """The per-run numbers as nested lists ``[lr][lambda_b][seed]`` (None where not defined)."""
    shape = (len(results), len(lambdas), seeds)

    def field(name):
        return np.array([[r[name] for r in res["runs"]] for res in results], dtype=object).reshape(shape).tolist()

    out = {name: field(name) for name in ("rel_l2", "diverged_step", "rel_l2_at_stop", "loss_peak_ratio",
                                          "loss_last_ratio", "status")}
    out["diverged"] = (np.array(out["status"], dtype=object) == "diverged").tolist()
    return out


def summarise(data: dict) -> dict:
    """Per learning rate: mean / min / max error over the seeds that did not diverge, the number diverged,
    and the lambda_b of the smallest mean error (among cells where no seed diverged)."""
    err = np.array(data["rel_l2"], dtype=float)  # None -> nan
    diverged = np.isnan(err)
    with warnings.catch_warnings():  # all-NaN cells (every seed diverged) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, lo, hi = np.nanmean(err, 2), np.nanmin(err, 2), np.nanmax(err, 2)
    rows = []
    for i, lr in enumerate(data["lr"]):
        clean = ~diverged[i].any(1)
        best = int(np.argmin(np.where(clean, mean[i], np.inf))) if clean.any() else None
        rows.append({"lr": lr, "mean": _list(mean[i]), "min": _list(lo[i]), "max": _list(hi[i]),
                     "diverged": diverged[i].sum(1).tolist(),
                     "argmin_lambda_b": None if best is None else data["lambda_b"][best]})
    return {"per_lr": rows}


def _list(a) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, float)]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", type=float, nargs="+", help=f"learning rates (default {DEFAULT['lrs']})")
    parser.add_argument("--lambdas", type=float, nargs="+", help=f"lambda_b values (default {DEFAULT['lambdas']})")
    parser.add_argument("--seeds", type=int, help=f"seeds 0..N-1 per cell (default {DEFAULT['seeds']})")
    parser.add_argument("--steps", type=int, help=f"gradient-descent steps (default {DEFAULT['steps']}, the paper's)")
    parser.add_argument("--chunk", type=int, default=1000, help="steps per jitted call")
    parser.add_argument("--smoke", action="store_true",
                        help=f"tiny grid for a quick check: {SMOKE} (seconds); writes no file unless --out")
    parser.add_argument("--out", type=Path, help=f"JSON output (default {DEFAULT_OUT.relative_to(HERE.parent)})")
    args = parser.parse_args(argv)
    base = SMOKE if args.smoke else DEFAULT
    lrs = tuple(args.lrs or base["lrs"])
    lambdas = tuple(args.lambdas or base["lambdas"])
    seeds = args.seeds or base["seeds"]
    steps = args.steps or base["steps"]
    out = args.out if args.out is not None else (None if args.smoke else DEFAULT_OUT)

    from pinnlab.provenance import machine  # jax / jaxlib / flax versions, devices, core count

    t0 = time.perf_counter()
    bound = stability_bounds(lambdas, range(seeds))
    results = []
    for lr in lrs:
        res = run_lr(lr, lambdas, seeds, steps, args.chunk)
        n_div = sum(r["status"] == "diverged" for r in res["runs"])
        print(f"lr {lr:.3g}: {len(res['runs'])} runs, {n_div} diverged, {res['seconds']:.1f} s", file=sys.stderr)
        results.append(res)
    drift = [bound_drift(lr, lam, 0, min(steps, 300), 20) for lr, lam in DRIFT_RUNS] if not args.smoke else []
    wall = time.perf_counter() - t0
    data = {"lr": list(lrs), "lambda_b": list(lambdas), "seeds": list(range(seeds)), "steps": steps,
            **grid_arrays(results, lambdas, seeds)}
    report = {
        "benchmark": "fig5_map",
        "setup": {"problem": "poisson a=4 (u = sin(4 pi x)), 100 + 100 points", "net": "1 x 100 tanh, paper_code",
                  "optimizer": "sgd (plain gradient descent)", "loss": "lambda_b mean(r_b^2) + mean(r_r^2)",
                  "lambda_r": 1.0, "steps": steps, "chunk": min(args.chunk, steps),
                  "ensembles": "one vmapped pinnlab.ensemble.Ensemble per learning rate (lambda_b x seeds)",
                  "diverged": "loss non-finite: the ensemble froze the run; rel_l2 null, rel_l2_at_stop is the "
                              "error of its last finite state"},
        "grid": data,
        "bound": bound,
        "summary": summarise(data),
        "bound_drift": drift,
        "seconds_per_lr": [r["seconds"] for r in results],
        "environment": {**machine(), "nproc": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2)},
        "command": "PYTHONPATH=. python benchmarks/bench_fig5_map.py " + " ".join(sys.argv[1:] if argv is None
                                                                               else argv),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "wall_s": wall,
    }
    text = json.dumps(report, indent=1)
    if out is not None:
        out.write_text(text + "\n")
        print(f"wrote {out}", file=sys.stderr)
    print(text)
    return report


if __name__ == "__main__":
    main()
