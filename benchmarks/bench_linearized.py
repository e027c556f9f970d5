"""The linearised PINN against the real one as the width grows (paper Sec. 4: the NTK barely moves).

    python benchmarks/bench_linearized.py [--steps 2000] [--out benchmarks/results_linearized_cpu.json]

Poisson u = sin(a pi x) (a = 1, Fig. 2's target; 2 boundary and 40 interior points), one hidden layer in
the paper's text convention (NTK parameterisation, N(0, 1), raw inputs), float64, gradient descent at
``lr = 0.5 / lambda_max(K-tilde)`` of the initial kernel, ``--steps`` steps, for widths 10..3,000 (one
seed each, three for the narrow ones would not change the picture). Per width: the relative distance
between the real and the linearised residuals after training, between their predictions on the
problem's grid, the relative kernel drift ||K_T - K_0|| / ||K_0||, and the real run's rel. L2 error; the
log-log slopes against width.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import environment, print_json  # noqa: E402

from pinnlab import linearized, make_problem, modes, nets, ntk, optimizers  # noqa: E402
from pinnlab.training import TrainConfig, Trainer  # noqa: E402

WIDTHS = (10, 30, 100, 300, 1_000, 3_000)


def one(problem, width: int, steps: int, factor: float) -> dict:
    config = nets.convention("paper_text", width=width, depth=1)
    probe = Trainer(problem, config, TrainConfig(steps=1))
    params0 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), probe.params0)
    points = [jnp.asarray(x, jnp.float64) for x in probe.data]
    k0 = np.asarray(ntk.kernel(probe.apply, params0, problem.terms, points))
    factors = linearized.row_factors(problem.terms, points, (1.0, 1.0))
    lr = factor / float(modes.decompose(k0, factors).values[0])
    trainer = Trainer(problem, config, TrainConfig(optimizer="sgd", lr=lr, steps=steps, chunk=min(500, steps)),
                      params=params0)
    trainer.data = tuple(points)
    trainer.run()
    real = trainer.state.params
    lin = linearized.linearize(trainer.apply, problem.terms, params0, points)
    lin_params, _ = jax.jit(lambda: linearized.train(lin, problem.terms, points, (1.0, 1.0),
                                                     optimizers.make("sgd", lr, None, 1.0), steps))()
    grid = jnp.asarray(problem.grid, jnp.float64)
    u_real = trainer.apply(real, grid)
    u0, du = jax.jvp(lambda p: trainer.apply(p, grid), (params0,), (jax.tree.map(jnp.subtract, lin_params, params0),))
    u_lin = u0 + du
    r_real = linearized.stacked_residuals(trainer.apply, problem.terms, real, points)
    r_lin = lin.residuals(lin_params)
    kt = np.asarray(ntk.kernel(trainer.apply, real, problem.terms, points))
    exact = np.asarray(problem.exact(grid))
    return {"width": width, "lr": lr, "status": trainer.history.status,
            "residual_distance": float(jnp.linalg.norm(r_real - r_lin) / jnp.linalg.norm(r_real)),
            "prediction_distance": float(jnp.linalg.norm(u_real - u_lin) / jnp.linalg.norm(u_real)),
            "kernel_drift": float(np.linalg.norm(kt - k0) / np.linalg.norm(k0)),
            "rel_l2_real": float(np.linalg.norm(np.asarray(u_real) - exact) / np.linalg.norm(exact)),
            "rel_l2_linearised": float(np.linalg.norm(np.asarray(u_lin) - exact) / np.linalg.norm(exact))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--a", type=float, default=1.0, help="u = sin(a pi x) (Fig. 2: a = 1)")
    parser.add_argument("--lr-factor", type=float, default=0.5, help="lr = factor / lambda_max(K-tilde)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    problem = make_problem("poisson", a=args.a, n_b=2, n_r=40, n_eval=200)
    rows = [one(problem, w, args.steps, args.lr_factor) for w in WIDTHS]
    logw = np.log([r["width"] for r in rows])
    slopes = {k: float(np.polyfit(logw, np.log([r[k] for r in rows]), 1)[0])
              for k in ("residual_distance", "prediction_distance", "kernel_drift")}
    result = {"environment": environment(), "command": " ".join(["python", *sys.argv]), "steps": args.steps,
              "a": args.a, "lr_factor": args.lr_factor,
              "widths": rows, "slope_log_vs_log_width": slopes}
    print_json(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
