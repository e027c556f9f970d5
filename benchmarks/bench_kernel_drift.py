"""How far the PINN's NTK moves during training: linear PDEs against a nonlinear one (issue 13 item 6).

    python benchmarks/bench_kernel_drift.py [--steps 2000] [--out benchmarks/results_kernel_drift_cpu.json]

Each problem (heat, wave, convection: linear; burgers: nonlinear, u u_x) trains one 3x50 tanh net of
the released code's conventions with Adam 1e-3 (x0.9 per 1000 steps), unweighted, on fresh batches, and
its full NTK on the fixed probe points (100 per term) is compared with the initial one: the relative
Frobenius drift ||K_t - K_0|| / ||K_0|| and the drift of the trace ratio Tr K_rr / Tr K_uu (the quantity
Algorithm 1's weights follow) at a few steps, with the run's rel. L2 error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import environment, print_json  # noqa: E402

from pinnlab import convention, make_problem, ntk  # noqa: E402
from pinnlab.training import TrainConfig, Trainer  # noqa: E402

PROBLEMS = {"heat": {}, "wave": dict(n_u=150, n_ut=50, n_r=150, n_ntk=100), "convection": {}, "burgers": {}}


def one(name: str, steps: int) -> dict:
    problem = make_problem(name, **PROBLEMS[name])
    config = TrainConfig(optimizer="adam", lr=1e-3, decay_steps=1000, decay_rate=0.9, steps=steps, chunk=100,
                         ntk_every=0)
    trainer = Trainer(problem, convention("paper_code", problem.default_init, width=50, depth=3), config)
    ends = np.cumsum([0] + [len(x) for x in trainer.probe])

    def measure():
        k = np.asarray(ntk.kernel(trainer.apply, trainer.state.params, problem.terms, trainer.probe), np.float64)
        traces = [float(np.trace(k[a:b, a:b])) for a, b in zip(ends[:-1], ends[1:])]
        return k, traces[-1] / traces[0]

    k0, ratio0 = measure()
    rows, done = [], 0
    for target in sorted({steps // 4, steps // 2, steps}):
        trainer.advance(target - done)
        done = target
        k, ratio = measure()
        trainer.evaluate()
        rows.append({"step": done, "kernel_drift": float(np.linalg.norm(k - k0) / np.linalg.norm(k0)),
                     "trace_ratio_rr_over_first": ratio, "trace_ratio_change": abs(ratio / ratio0 - 1.0),
                     "rel_l2": float(trainer.history.rel_l2[-1])})
    return {"problem": name, "every_term_declares_an_operator": all(t.operator is not None for t in problem.terms),
            "ntk_method": ntk.resolve_method(trainer.apply, problem.terms), "trace_ratio_at_0": ratio0,
            "checkpoints": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    result = {"environment": environment(), "command": " ".join(["python", *sys.argv]), "steps": args.steps,
              "problems": [one(name, args.steps) for name in PROBLEMS]}
    print_json(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
