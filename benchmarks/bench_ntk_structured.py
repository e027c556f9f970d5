"""Structured (Taylor-stream) NTK vs the Jacobian path: time and peak memory, each in a fresh process.

    PYTHONPATH=. python benchmarks/bench_ntk_structured.py            # paper scale + a small grid
    PYTHONPATH=. python benchmarks/bench_ntk_structured.py --quick    # seconds

Prints JSON. The case is the wave problem's three diagonal 300 x 300 blocks (K_u, K_ut, K_r) on a
3 x width tanh MLP (width 500: P = 503,001, the paper's setup). Both methods are jitted/warmed once,
then timed (median of repeats); peaks come from fresh child processes. First part of issue 5: the
structured path is not yet pinnlab's default.
"""

from __future__ import annotations

import argparse
import sys
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import environment, median, peak_rss_mib, print_json, rss_mib, run_child  # noqa: E402


def single(method: str, width: int, n: int, repeats: int) -> dict:
    import jax
    import numpy as np

    from pinnlab import make_net, make_problem, nets, ntk
    from pinnlab import ntk_structured as ns

    problem = make_problem("wave", n_ntk=n)
    config = nets.convention("paper_code", problem.default_init, width=width, depth=3)
    net = make_net(config, problem.dim, problem.mean, problem.std, jax.random.key(0))
    points = problem.sample(jax.random.key(1), ntk=True)
    if method == "structured":
        fn = jax.jit(lambda p, x: [ns.block(net.apply, p, t, xi) for t, xi in zip(problem.terms, x)])
        run = lambda: [np.asarray(k) for k in fn(net.params, points)]
    else:
        run = lambda: [ntk.block(net.apply, net.params, t, xi) for t, xi in zip(problem.terms, points)]
    before = rss_mib()
    t0 = time.perf_counter()
    blocks = run()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {"method": method, "width": width, "n": n, "num_params": net.num_params, "first_call_s": first,
            "median_s": median(times), "rss_before_mib": before, "peak_rss_mib": peak_rss_mib(),
            "additional_peak_mib": peak_rss_mib() - before, "traces": [float(np.trace(k)) for k in blocks]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--single", nargs=3, metavar=("METHOD", "WIDTH", "N"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.single:
        method, width, n = args.single
        print_json(single(method, int(width), int(n), args.repeats), compact=True)
        return
    grid = [(100, 100)] if args.quick else [(100, 300), (200, 300), (500, 300)]
    results = []
    for width, n in grid:
        pair = {m: run_child([sys.executable, __file__, "--single", m, str(width), str(n), "--repeats",
                              str(args.repeats)], timeout=900) for m in ("jacobian", "structured")}
        rel = max(abs(a - b) / abs(a) for a, b in zip(pair["jacobian"]["traces"], pair["structured"]["traces"]))
        results.append({"width": width, "n": n, **pair, "speedup": pair["jacobian"]["median_s"]
                        / pair["structured"]["median_s"], "trace_max_rel_diff": rel})
    print_json({"env": environment(), "cases": results})


if __name__ == "__main__":
    main()
