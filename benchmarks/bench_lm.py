"""The kernel solve (``optimizer="lm"``) against the paper's methods, side by side in one process.

    python benchmarks/bench_lm.py --problem poisson [--seconds 60] [--out benchmarks/results_lm_poisson_cpu.json]
    python benchmarks/bench_lm.py --problem wave --width 100 --depth 3 --seconds 600 [--out ...]

Every method trains the same problem and network from the same seed; their chunks are interleaved (one
chunk of A, one of B, ...) so that each sees the same background load, and each stops at its own
``--seconds`` of training time (``Trainer.seconds``: the jitted chunks, first compile included;
evaluations are not counted). Reported per method: the error curve against time and steps, the time and
step at which the relative L2 error first fell to 1e-3, 1e-4, 1e-5 and 1e-6, and the final and best error.

Methods: ``paper`` (the problem's recipe: Poisson full-batch GD lr 1e-5 with lambda from the NTK at step 0;
wave Adam 1e-3 decaying 0.9 per 1000 steps with Algorithm 1 every 100 steps), ``adam_ntk`` (Adam with that
schedule and Algorithm 1 on any problem), ``lm`` (the kernel solve, step scale 1, unweighted) and ``lm_ntk``
(the kernel solve with Algorithm 1's weights as row scaling). ``--x64`` runs all in float64.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# One OpenBLAS thread (before jax loads it): the kernel solve's Cholesky runs in LAPACK, between XLA ops;
# threaded OpenBLAS spins after each call and, interleaved with other runs on 2 busy cores, made a 10-step
# chunk take 0.1-3 s instead of 0.03 s (benchmarks/README.md).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import environment, print_json  # noqa: E402

from pinnlab import make_problem, nets  # noqa: E402
from pinnlab.problems import ENTRIES  # noqa: E402
from pinnlab.training import TrainConfig, Trainer  # noqa: E402

THRESHOLDS = (1e-3, 1e-4, 1e-5, 1e-6)
ADAM = dict(optimizer="adam", lr=1e-3, decay_steps=1000, decay_rate=0.9, weighting="ntk", update_every=100)
LM = dict(optimizer="lm", lr=1.0, weighting="none")


def configs(problem: str, seed: int, lm_lr: float = 1.0) -> dict[str, TrainConfig]:
    recipe = ENTRIES[problem].train
    paper = {k: recipe[k] for k in ("optimizer", "lr", "decay_steps", "decay_rate", "weighting")}
    paper["update_every"] = recipe["update_every"] or 10**9  # Poisson: the weights of step 0, then fixed
    big = 10**8  # runs stop on time, not steps
    return {"paper": TrainConfig(**paper, steps=big, chunk=recipe["chunk"], ntk_every=0, seed=seed),
            "adam_ntk": TrainConfig(**ADAM, steps=big, chunk=100, ntk_every=0, seed=seed),
            "lm": TrainConfig(**{**LM, "lr": lm_lr}, steps=big, chunk=10, ntk_every=0, seed=seed),
            "lm_ntk": TrainConfig(**{**LM, "lr": lm_lr, "weighting": "ntk"}, update_every=100, steps=big, chunk=10,
                                  ntk_every=0, seed=seed)}


def race(trainers: dict[str, Trainer], seconds: float, eval_seconds: float) -> dict[str, list]:
    """Advance the trainers in turn, one chunk each, until each has trained ``seconds``; evaluate each
    whenever ``eval_seconds`` of its training passed. Returns per method rows (seconds, step, rel_l2)."""
    curves = {name: [] for name in trainers}
    due, diverged = dict.fromkeys(trainers, 0.0), {}
    for name, t in trainers.items():
        t.evaluate()
        curves[name].append((0.0, 0, t.history.rel_l2[-1]))
    running = lambda: [n for n, t in trainers.items() if t.seconds < seconds and n not in diverged]  # noqa: E731
    while running():
        for name in running():
            t = trainers[name]
            snap = t.advance(t.config.chunk)
            if snap.diverged is not None:
                diverged[name] = snap.diverged
            if t.seconds >= due[name] or t.seconds >= seconds or name in diverged:
                t.evaluate()
                curves[name].append((t.seconds, t.step, t.history.rel_l2[-1]))
                due[name] = t.seconds + eval_seconds
    return curves, diverged


def summary(rows: list, trainer: Trainer, diverged: int | None) -> dict:
    reach = {}
    for th in THRESHOLDS:
        hit = next((r for r in rows if r[2] <= th), None)
        reach[f"{th:.0e}"] = None if hit is None else {"seconds": hit[0], "step": hit[1]}
    return {"final_rel_l2": rows[-1][2], "best_rel_l2": min(r[2] for r in rows), "steps": trainer.step,
            "seconds": trainer.seconds, "reached": reach, "solver": trainer.solver_state(),
            "diverged_at": diverged, "curve": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="poisson", choices=("poisson", "wave"))
    parser.add_argument("--width", type=int, default=None, help="default: the problem's recipe")
    parser.add_argument("--depth", type=int, default=None)
    parser.add_argument("--methods", default="paper,adam_ntk,lm,lm_ntk")
    parser.add_argument("--seconds", type=float, default=60.0, help="training seconds per method")
    parser.add_argument("--eval-seconds", type=float, default=2.0, help="training seconds between evaluations")
    parser.add_argument("--x64", action="store_true", help="float64 for every method")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lm-lr", type=float, default=1.0, help="the kernel solve's step scale (resampled "
                        "batches: 0.5 averages their noise)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    recipe = ENTRIES[args.problem].train
    width, depth = args.width or recipe["width"], args.depth or recipe["depth"]
    problem = make_problem(args.problem)
    net = nets.convention("paper_code", problem.default_init, width=width, depth=depth)
    chosen = configs(args.problem, args.seed, args.lm_lr)
    trainers = {m: Trainer(problem, net, chosen[m]) for m in args.methods.split(",")}
    curves, diverged = race(trainers, args.seconds, args.eval_seconds)
    result = {"environment": environment(), "command": " ".join(["python", *sys.argv]), "problem": args.problem,
              "width": width, "depth": depth, "num_params": next(iter(trainers.values())).net.num_params,
              "points_per_step": sum(t.n for t in problem.terms), "resample": problem.resample,
              "precision": "float64" if args.x64 else "float32", "seconds_per_method": args.seconds,
              "methods": {m: {"config": {k: getattr(chosen[m], k) for k in ("optimizer", "lr", "weighting")},
                              **summary(curves[m], trainers[m], diverged.get(m))} for m in trainers}}
    print_json({k: v if k != "methods" else {m: {x: y for x, y in s.items() if x != "curve"} for m, s in v.items()}
                for k, v in result.items()})
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
