"""The Fig. 5 sweep as N separate Trainer runs against one sharded Ensemble.

Run from the repository root: ``PYTHONPATH=. python benchmarks/bench_ensemble.py [--quick] [--devices 1 4]``.
Prints one JSON object. For each device count a fresh child process starts with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (read once, when jax starts; counts above 1 also
set ``JAX_PLATFORMS=cpu``, since the flag makes host devices) and builds the E3 sweep grid of
:func:`pinnlab.paper.e3_sweep_runs` (default: the ``cpu`` scale's 7 lambda_b x 3 seeds, the paper's
width-100 net, GD with lr 1e-5, but ``--steps`` 1000 instead of 40,000). In that one process it
times, alternated (A, B, A, B, ...) after one untimed call of each (compilation):

* ``loop``: one ``Trainer(...).run()`` per grid point, one after the other (what ``e3_sweep`` did);
* ``ensemble``: ``run_ensemble(...)`` over the whole grid: one vmapped chunk, members sharded over
  every device of the child.

Both include building the runs (networks, points) and the evaluations a sweep needs. Reported per
device count: median wall and CPU seconds of each, ``speedup_wall`` (loop / ensemble, median wall),
``speedup_best`` (from the fastest repeats) and ``speedup_cpu`` (median process CPU time), and
``max_abs_diff_rel_l2``, the largest difference of the final errors between the two (float32 rounding).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from _util import environment, interleaved, median, print_json, run_child

from pinnlab.paper import E3_SWEEP_SCALES


def measure(args: argparse.Namespace) -> dict:
    """The child: time ``loop`` against ``ensemble`` in this process."""
    import jax
    import numpy as np

    from pinnlab.ensemble import run_ensemble
    from pinnlab.paper import e3_sweep_runs
    from pinnlab.training import Trainer

    problem, net, config, members = e3_sweep_runs(args.lambdas, args.trials, args.steps, args.width)
    errors: dict[str, np.ndarray] = {}

    def loop():
        runs = [Trainer(problem, net, dataclasses.replace(config, seed=m.seed, initial_weights=m.initial_weights))
                for m in members]
        errors["loop"] = np.array([t.run().rel_l2[-1] for t in runs])

    def ensemble():
        errors["ensemble"] = run_ensemble(problem, net, config, members).rel_l2

    loop()
    ensemble()
    wall, cpu = interleaved({"loop": loop, "ensemble": ensemble}, args.repeats)
    ratio = lambda times, pick: pick(times["loop"]) / pick(times["ensemble"])  # noqa: E731
    return {
        "devices": [str(d) for d in jax.devices()], "runs": len(members),
        "loop_wall_s": median(wall["loop"]), "ensemble_wall_s": median(wall["ensemble"]),
        "loop_cpu_s": median(cpu["loop"]), "ensemble_cpu_s": median(cpu["ensemble"]),
        "speedup_wall": ratio(wall, median), "speedup_best": ratio(wall, min), "speedup_cpu": ratio(cpu, median),
        "max_abs_diff_rel_l2": float(np.max(np.abs(errors["loop"] - errors["ensemble"]))),
        "wall_s": wall, "load_average_1min": round(os.getloadavg()[0], 2),
    }


def child_command(args: argparse.Namespace, devices: int) -> list[str]:
    """``env XLA_FLAGS=... python this --child ...``: the flag must be set before jax is imported."""
    flags = (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
    env = [f"XLA_FLAGS={flags}"] + (["JAX_PLATFORMS=cpu"] if devices > 1 else [])
    options = ["--lambdas", *map(str, args.lambdas), "--trials", str(args.trials), "--steps", str(args.steps),
               "--width", str(args.width), "--repeats", str(args.repeats)]
    return ["env", *env, sys.executable, os.path.abspath(__file__), "--child", *options]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cpu = E3_SWEEP_SCALES["cpu"]  # the cpu-scale Fig. 5 grid (7 x 3 runs), fewer steps
    parser.add_argument("--lambdas", type=float, nargs="+", default=list(cpu["lambdas"]))
    parser.add_argument("--trials", type=int, default=cpu["trials"])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 4], help="host device counts, one child each")
    parser.add_argument("--quick", action="store_true", help="lambda_b 1, 100, 500 x 2 trials, 500 steps, 3 repeats")
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.lambdas, args.trials, args.steps, args.repeats = [1.0, 100.0, 500.0], 2, 500, 3
    if args.child:
        print_json(measure(args), compact=True)
        return
    results = {f"devices_{n}": run_child(child_command(args, n), args.timeout_s) for n in args.devices}
    grid = {"lambdas": args.lambdas, "trials": args.trials, "steps": args.steps, "width": args.width,
            "repeats": args.repeats}
    print_json({"benchmark": "ensemble", "grid": grid, "environment": environment(), "results": results})


if __name__ == "__main__":
    main()
