"""Time per kernel-solve step against the number of rows N and of parameters P: the dense solve
(``"lm"``: K formed from the stream factors, Cholesky) beside the matrix-free one (``"lm_cg"``: CG on
``W J J^T W v`` products, at most 200 iterations).

    python benchmarks/bench_lm_scaling.py [--widths 50 100 200] [--rows 700 2800 5600] [--cg-rows 11200 22400]
                                          [--dense-max 5600] [--repeats 3] [--x64] [--out results.json]

The problem is the paper's wave (E4, three terms: u, u_t and the residual in the ratio 3:1:3 of the
released code's 300/100/300 points), a ``depth``-layer tanh MLP of each width. One step is one jitted
``gauss_newton.step`` on fixed batches (the kernel, the solve, the trial residuals and the gain ratio),
timed after its compile, the solvers alternated (dense, CG, dense, CG, ...) so both see the same
background load; medians of ``--repeats``. Also recorded: the compile time, the dense K's size
(``N^2`` floats) and, for CG, the relative residual ``||(A + mu I) x - b|| / ||b||`` its step reached.
The dense solve runs up to ``--dense-max`` rows; CG alone continues to ``--cg-rows``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench_lm.py: threaded OpenBLAS spins between XLA ops

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import environment, interleaved, median, print_json  # noqa: E402

from pinnlab import gauss_newton, make_problem, nets  # noqa: E402


def rows_split(n: int) -> dict:
    """Point counts with n_u : n_ut : n_r = 3 : 1 : 3 and n_u + n_ut + n_r = n."""
    n_ut = max(1, n // 7)
    n_u = (n - n_ut) // 2
    return dict(n_u=n_u, n_ut=n_ut, n_r=n - n_ut - n_u)


def case(width: int, depth: int, n: int, seed: int = 0):
    problem = make_problem("wave", **rows_split(n))
    config = nets.convention("paper_code", problem.default_init, width=width, depth=depth)
    net = nets.make_net(config, problem.dim, problem.mean, problem.std, jax.random.PRNGKey(seed))
    batches = problem.sample(jax.random.PRNGKey(seed + 1))
    weights = jnp.ones(len(problem.terms), batches[0].dtype)
    return problem, net, batches, weights


def stepper(problem, net, solver: str):
    opt = gauss_newton.LevenbergMarquardt(solver=solver)
    return jax.jit(lambda p, s, b, w: gauss_newton.step(net.apply, problem.terms, p, s, b, w, 1.0, opt))


def cg_residual(problem, net, batches, weights, state) -> float:
    """How well CG's solve did at this point: ``||(A + mu I) x - b|| / ||b||`` with A formed densely."""
    r = jnp.concatenate([t.residuals(net.apply, net.params, x) for t, x in zip(problem.terms, batches)])
    w = gauss_newton.row_scaling(problem.terms, batches, weights).astype(r.dtype)
    a = w[:, None] * gauss_newton.kernel(net.apply, problem.terms, net.params, batches) * w[None, :]
    mu = state.mu * jnp.trace(a) / len(r)
    system = gauss_newton._matrix_free(net.apply, problem.terms, net.params, batches, w,
                                       jax.vjp(lambda p: jnp.concatenate(
                                           [t.residuals(net.apply, p, x) for t, x in zip(problem.terms, batches)]),
                                           net.params)[1], 200, 1e-6)
    x = system.solve(w * r, mu)
    return float(jnp.linalg.norm(a @ x + mu * x - w * r) / jnp.linalg.norm(w * r))


def measure(width: int, depth: int, n: int, solvers: list[str], repeats: int) -> dict:
    problem, net, batches, weights = case(width, depth, n)
    state = gauss_newton.LevenbergMarquardt().init(net.params)
    row = {"width": width, "depth": depth, "rows": n, "params": sum(x.size for x in jax.tree.leaves(net.params)),
           "dense_k_mib": round(n * n * batches[0].dtype.itemsize / 2**20, 1)}
    calls = {}
    for solver in solvers:
        fn = stepper(problem, net, solver)
        t0 = time.perf_counter()
        jax.block_until_ready(fn(net.params, state, batches, weights))
        row[f"{solver}_compile_s"] = round(time.perf_counter() - t0, 2)
        calls[solver] = lambda fn=fn: jax.block_until_ready(fn(net.params, state, batches, weights))
    wall, _ = interleaved(calls, repeats)
    for solver in solvers:
        row[f"{solver}_step_s"] = median(wall[solver])
    if "cg" in solvers and n <= 5600:
        row["cg_relative_residual"] = cg_residual(problem, net, batches, weights, state)
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", type=int, nargs="+", default=[50, 100, 200])
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--rows", type=int, nargs="+", default=[700, 2800, 5600])
    p.add_argument("--cg-rows", type=int, nargs="*", default=[11200, 22400], help="rows for CG alone")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--x64", action="store_true", help="float64 (jax x64)")
    p.add_argument("--out", type=Path, help="write the results JSON here too")
    args = p.parse_args()
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    t0 = time.perf_counter()
    rows = []
    for width in args.widths:
        for n in args.rows:
            rows.append(measure(width, args.depth, n, ["cholesky", "cg"], args.repeats))
        for n in args.cg_rows:
            rows.append(measure(width, args.depth, n, ["cg"], args.repeats))
    command = " ".join(["python", "benchmarks/bench_lm_scaling.py", *sys.argv[1:]])
    result = {"benchmark": "lm_scaling", "command": command,
              "precision": "float64" if args.x64 else "float32", "cg_iters": 200, "cg_tol": 1e-6,
              "environment": environment(), "wall_s": round(time.perf_counter() - t0, 1), "rows": rows}
    print_json(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
