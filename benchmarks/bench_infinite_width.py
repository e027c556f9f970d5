"""How fast the empirical NTK of a one-hidden-layer PINN tends to its infinite-width limit.

    python benchmarks/bench_infinite_width.py [--seeds 3] [--out benchmarks/results_infinite_width_cpu.json]

Poisson (u = sin(4 pi x), 2 boundary and 20 interior points), the paper's Sec. 4 setting: NTK
parameterisation, N(0, 1) weights and biases, raw inputs (``convention("paper_text", depth=1)``), float64.
For each width the relative Frobenius distance of each block (K_uu, K_ur, K_rr) and of K to the limit of
:mod:`pinnlab.infinite_width` (Gauss-Hermite, 128 nodes per dimension), over several seeds; the slope of
log(median distance) against log(width) by least squares (the theory: -1/2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import environment, print_json  # noqa: E402

from pinnlab import infinite_width, make_problem, nets, ntk  # noqa: E402

WIDTHS = (10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000)
BLOCKS = {"K": (slice(None), slice(None)), "K_uu": (slice(0, 2), slice(0, 2)), "K_ur": (slice(0, 2), slice(2, None)),
          "K_rr": (slice(2, None), slice(2, None))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    problem = make_problem("poisson", n_b=2, n_r=20)
    points = [np.array([[0.0], [1.0]]), np.linspace(0.0, 1.0, 20)[:, None]]
    limit = infinite_width.kernel(problem.terms, points)
    rows = []
    for width in WIDTHS:
        dist = {name: [] for name in BLOCKS}
        for seed in range(args.seeds):
            net = nets.make_net(nets.convention("paper_text", width=width, depth=1), 1, problem.mean, problem.std,
                                jax.random.key(seed))
            params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), net.params)
            k = np.asarray(ntk.kernel(net.apply, params, problem.terms, [jnp.asarray(x) for x in points]))
            for name, (r, c) in BLOCKS.items():
                dist[name].append(float(np.linalg.norm(k[r, c] - limit[r, c]) / np.linalg.norm(limit[r, c])))
        rows.append({"width": width, **{name: {"median": float(np.median(v)), "all": v} for name, v in dist.items()}})
    logw = np.log(WIDTHS)
    slopes = {name: float(np.polyfit(logw, np.log([row[name]["median"] for row in rows]), 1)[0]) for name in BLOCKS}
    result = {"environment": environment(), "command": " ".join(["python", *sys.argv]), "seeds": args.seeds,
              "limit": "Gauss-Hermite, 128 nodes per dimension (agrees with 256 to ~5e-8)",
              "widths": rows, "slope_log_distance_vs_log_width": slopes}
    print_json(result)
    if args.out:
        Path(args.out).write_text(__import__("json").dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
