"""First call (compilation) against later calls of ``ntk.block``, per matmul precision and method.

    python benchmarks/bench_ntk_compile.py            # the wave's three blocks at width 500, N = 300 per term
    python benchmarks/bench_ntk_compile.py --quick    # tiny sizes (a CPU check of the script)

Each case runs in its own process (a fresh compilation) under a time limit; a case that runs out prints
the Python stack it was in (``faulthandler``), so a slow compilation shows as such. Each line is the
time since the case's start: the ``rep 0`` lines include compilation, ``rep 1`` and ``rep 2`` do not.
Output is text, one block per case (``benchmarks/README.md``, "GPU compilation at precision='highest'").
"""

from __future__ import annotations

import faulthandler
import subprocess
import sys
import time

CASES = [(64, 100, "structured", "highest", 35), (500, 300, "structured", "highest", 50),
         (500, 300, "structured", "none", 40), (500, 300, "jacobian", "highest", 40)]


def case(width: int, n: int, method: str, precision: str, limit: float) -> None:
    """Three rounds of the wave's three blocks, each line timed from the case's start."""
    import jax

    faulthandler.dump_traceback_later(limit - 3, exit=True)
    from pinnlab import make_net, make_problem, nets, ntk

    t0 = time.perf_counter()
    log = lambda m: print(f"  {time.perf_counter() - t0:7.2f}s {m}", flush=True)  # noqa: E731
    problem = make_problem("wave", n_ntk=n)
    net = make_net(nets.convention("paper_code", problem.default_init, width=width, depth=3), problem.dim,
                   problem.mean, problem.std, jax.random.key(0))
    points = problem.sample(jax.random.key(1), ntk=True)
    jax.block_until_ready((net.params, points))
    log("setup")
    p = None if precision == "none" else precision
    for rep in range(3):
        for t, x in zip(problem.terms, points):
            k = jax.block_until_ready(ntk.block(net.apply, net.params, t, x, method=method, precision=p))
            log(f"rep {rep} block {t.name} {k.shape} trace {float(k.trace()):.4g}")


def main() -> None:
    quick = "--quick" in sys.argv
    import jax
    import jax.numpy as jnp

    t = time.perf_counter()
    m = jnp.ones((4096, 4096))
    jax.block_until_ready(m @ m)
    print(jax.devices(), f"matmul warmup {time.perf_counter() - t:.2f}s", flush=True)
    for w, n, method, precision, limit in CASES:
        if quick:
            w, n, limit = min(w, 32), min(n, 20), 60
        print(f"case width={w} n={n} {method} precision={precision}", flush=True)
        t = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, __file__, str(w), str(n), method, precision, str(limit)],
                               timeout=limit + 5)
            print(f"  exit {r.returncode} in {time.perf_counter() - t:.1f}s", flush=True)
        except subprocess.TimeoutExpired:
            print("  killed", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2:
        a = sys.argv[1:]
        case(int(a[0]), int(a[1]), a[2], a[3], float(a[4]))
    else:
        main()
