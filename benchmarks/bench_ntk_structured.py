"""Structured (Taylor-stream) NTK vs the Jacobian path: time and peak memory, each in a fresh process.

    PYTHONPATH=. python benchmarks/bench_ntk_structured.py                 # paper scale + scaling table
    PYTHONPATH=. python benchmarks/bench_ntk_structured.py --only paper    # paper scale only (~2 min)
    PYTHONPATH=. python benchmarks/bench_ntk_structured.py --quick         # seconds

Prints JSON. Workloads, on the wave problem with a 3 x width tanh MLP (width 500: P = 503,001, the
paper's setup) and N NTK points per term:

* ``full``: the full 3N x 3N K (``pinnlab.ntk.kernel``) and its eigenvalues (``ntk.eigenvalues``), what a
  spectra frame costs; at N = 300 this is the issue's paper-scale target (<= 0.2 s, <= 200 MB).
* ``blocks``: the three diagonal N x N blocks K_u, K_ut, K_r (``ntk.block``); the scaling table runs it
  over N in {100, 300, 1000, 3000} and width in {64, 200, 500}.

Each case runs in a fresh child process: build, one warm-up call (compilation), then ``repeats`` timed
calls (median). Memory: ``additional_peak_mib`` is the peak over the timed calls above the resident
size before them (the kernel's working memory, steady state: the peak is reset after warm-up through
``/proc/self/clear_refs``), and ``first_call_additional_peak_mib`` the same over the warm-up call
(compilation included). A child that runs past ``--timeout`` is reported as such.

Children run with one OpenBLAS thread (``--blas-threads``; XLA's own thread pool, which does the
kernel's matmuls, is not affected): on a shared VM a multithreaded ``eigvalsh`` of the 900 x 900 K
took 0.14-0.7 s (up to 5 s in float32) against a steady 0.05 s single-threaded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import environment, median, print_json, rss_mib, run_child  # noqa: E402

WIDTHS, SIZES = (64, 200, 500), (100, 300, 1000, 3000)


def hwm_mib() -> float:
    """Peak resident size since the last :func:`reset_hwm` (``VmHWM``), in MiB."""
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5" resets the peak resident set size (Linux >= 4.0)
        f.write("5")


def single(method: str, workload: str, width: int, n: int, repeats: int) -> dict:
    import jax
    import numpy as np

    from pinnlab import make_net, make_problem, nets, ntk

    problem = make_problem("wave", n_ntk=n)
    config = nets.convention("paper_code", problem.default_init, width=width, depth=3)
    net = make_net(config, problem.dim, problem.mean, problem.std, jax.random.key(0))
    points = problem.sample(jax.random.key(1), ntk=True)
    jax.block_until_ready((net.params, points))
    if workload == "full":
        run = lambda: ntk.eigenvalues(ntk.kernel(net.apply, net.params, problem.terms, points, method=method))
    else:
        # block inside the timed call: jax dispatches asynchronously (on a GPU the call returns at once)
        run = lambda: jax.block_until_ready(
            [ntk.block(net.apply, net.params, t, x, method=method) for t, x in zip(problem.terms, points)])
    reset_hwm()
    before = rss_mib()
    t0 = time.perf_counter()
    out = run()
    first, first_peak = time.perf_counter() - t0, hwm_mib() - before
    del out
    reset_hwm()
    before = rss_mib()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    summary = [float(np.sum(out[:10]))] if workload == "full" else [float(np.trace(k)) for k in out]
    return {**_device_memory(jax.devices()[0]), "method": method, "workload": workload, "width": width, "n": n,
            "num_params": net.num_params,
            "first_call_s": first, "first_call_additional_peak_mib": first_peak, "median_s": median(times),
            "min_s": min(times), "additional_peak_mib": hwm_mib() - before, "check": summary}


def _device_memory(device) -> dict:
    """Peak accelerator memory in use (MiB) where the backend reports it (GPU: yes; CPU: no)."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if not stats or "peak_bytes_in_use" not in stats:
        return {}
    return {"device_peak_mib": stats["peak_bytes_in_use"] / 2**20, "device_in_use_mib": stats["bytes_in_use"] / 2**20}


def case(workload: str, width: int, n: int, repeats: int, timeout: float) -> dict:
    pair = {}
    for method in ("structured", "jacobian"):
        argv = [sys.executable, __file__, "--single", method, workload, str(width), str(n), "--repeats", str(repeats)]
        try:
            pair[method] = run_child(argv, timeout=timeout)
        except Exception as exc:  # a timeout or a crash of one cell must not lose the table
            pair[method] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(f"{workload} width={width} n={n} {method}: {pair[method].get('median_s', pair[method].get('error'))}",
              file=sys.stderr)
    out = {"workload": workload, "width": width, "n": n, **pair}
    s, j = pair["structured"], pair["jacobian"]
    if "median_s" in s and "median_s" in j:
        out["speedup"] = j["median_s"] / s["median_s"]
        out["check_max_rel_diff"] = max(abs(a - b) / abs(b) for a, b in zip(s["check"], j["check"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--only", nargs="*", choices=["paper", "table"], default=["paper", "table"])
    parser.add_argument("--single", nargs=4, metavar=("METHOD", "WORKLOAD", "WIDTH", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS), help="table widths")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="table points per term")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per child process")
    parser.add_argument("--blas-threads", default="1", help="OPENBLAS_NUM_THREADS of the children ('default': unset)")
    args = parser.parse_args()
    if not args.single and args.blas_threads != "default":
        os.environ["OPENBLAS_NUM_THREADS"] = args.blas_threads
    if args.single:
        method, workload, width, n = args.single
        print_json(single(method, workload, int(width), int(n), args.repeats), compact=True)
        return
    out = {"env": environment(), "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")}
    if args.quick:
        out["paper"] = [case("full", 64, 100, args.repeats, args.timeout)]
        print_json(out)
        return
    if "paper" in args.only:
        out["paper"] = [case(w, 500, 300, args.repeats, args.timeout) for w in ("full", "blocks")]
    if "table" in args.only:
        # few repeats where one call takes seconds: the table is about scaling, not the last percent
        out["table"] = [case("blocks", width, n, 3 if n <= 300 else 1, args.timeout) for n in args.sizes
                      for width in args.widths]
    out["env_after"] = environment()
    print_json(out)


if __name__ == "__main__":
    main()
