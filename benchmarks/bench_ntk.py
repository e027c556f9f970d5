"""Time and peak memory of the wave problem's NTK blocks as the points N and parameters P grow.

Run from the repository root: ``PYTHONPATH=. python benchmarks/bench_ntk.py [--quick]``. Prints one
JSON object. Every configuration runs in a fresh child process (this script with ``--single``), so
its peak RSS is its own: the child reports its RSS just before the first NTK call, its peak RSS
(``ru_maxrss``) after warm-up and timed repeats, and their difference (``additional_peak_mib``); the
parent also reads the child's peak from ``wait4`` (``child_peak_rss_mib``, same number, a check).

What is measured (``what``), for the wave net with 3 hidden layers of ``width`` (P = 2 w^2 + 6 w + 1):

* ``K_rr``: ``ntk.block`` of the residual term on N points (N x N),
* ``diag_blocks``: the three diagonal blocks K_uu, K_utut, K_rr (N points each) via ``ntk.block``,
* ``kernel``: the full 3N x 3N kernel via ``ntk.kernel`` (all six distinct blocks),
* ``traces``: ``ntk.traces`` jitted (the three traces Algorithm 1 needs, no Jacobian stored).

The grid (N in ``--ns``, width in ``--widths``) measures ``--whats`` (default: all but ``kernel``, to
keep the run near 10 minutes on 2 busy cores). ``paper_scale`` is the paper's wave setting (width
500, P = 503,001, N = 300 per term): diagonal blocks, full kernel and traces, reusing grid runs; it
checks the acceptance bound (peak RSS under 4 GB) and that the block traces equal ``ntk.traces``.
``median_s`` is over the timed repeats after one warm-up call (``first_call_s``, with compilation);
repeats are capped so that the timed part stays under ``--budget-s``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from _util import environment, median, peak_rss_mib, print_json, rss_mib, run_child, timed

WHATS = ("K_rr", "diag_blocks", "kernel", "traces")
LIMIT_MIB = 4000 * 1e6 / 2**20  # 4 GB


def single(args) -> dict:
    """One configuration in this process: build the net and points, then time the NTK call."""
    import jax
    import numpy as np

    from pinnlab import convention, make_net, make_problem, ntk

    problem = make_problem("wave", n_ntk=args.n)
    config = convention("paper_code", problem.default_init, width=args.width, depth=3)
    net = make_net(config, problem.dim, problem.mean, problem.std, jax.random.key(0))
    apply, params, terms = net.apply, net.params, problem.terms
    points = jax.block_until_ready(problem.sample(jax.random.key(1), ntk=True))
    kw = {"max_bytes": args.max_bytes} if args.max_bytes else {}
    kw["method"] = args.method
    traces_fn = jax.jit(lambda p, pts: ntk.traces(apply, p, terms, pts, method=args.method))
    calls = {
        "K_rr": lambda: [ntk.block(apply, params, terms[2], points[2], **kw)],
        "diag_blocks": lambda: [ntk.block(apply, params, t, x, **kw) for t, x in zip(terms, points, strict=True)],
        "kernel": lambda: [ntk.kernel(apply, params, terms, points, **kw)],
        "traces": lambda: [np.asarray(traces_fn(params, points))],
    }
    out: dict = {}

    def call():
        out["result"] = calls[args.what]()

    rss_before, peak_before = rss_mib(), peak_rss_mib()
    t0 = time.perf_counter()
    call()  # warm-up: compiles; counted in the peak, reported as first_call_s
    first = time.perf_counter() - t0
    repeats = max(1, min(args.repeats, int(args.budget_s / max(first, 1e-3))))
    secs = timed(call, repeats, warmup=0)
    peak = peak_rss_mib()
    res = out["result"]
    if args.what == "traces":
        traces = [float(v) for v in res[0]]
    elif args.what == "kernel":
        sizes = np.cumsum([0] + [x.shape[0] for x in points])
        traces = [float(np.trace(res[0][a:b, a:b])) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    else:
        traces = [float(np.trace(k)) for k in res]
    return {
        "what": args.what, "n": args.n, "width": args.width, "num_params": net.num_params,
        "shape": [list(k.shape) for k in res], "first_call_s": first, "repeats": repeats,
        "median_s": median(secs), "seconds": secs, "rss_before_mib": rss_before,
        "peak_before_mib": peak_before, "peak_rss_mib": peak, "additional_peak_mib": peak - rss_before,
        "traces": traces,
    }


def child(args, what: str, n: int, width: int) -> dict:
    """Run one configuration in a fresh process and return its JSON (plus the wait4 peak)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--single", "--what", what, "--n", str(n),
            "--width", str(width), "--repeats", str(args.repeats), "--budget-s", str(args.budget_s)]
    if args.max_bytes:
        argv += ["--max-bytes", str(args.max_bytes)]
    argv += ["--method", args.method]
    t0 = time.perf_counter()
    result = run_child(argv, timeout=args.child_timeout)
    result["wall_s"] = time.perf_counter() - t0
    median_s = result.get("median_s")
    timing = f"median {median_s:.4g} s" if median_s is not None else result.get("error", "")
    print(f"[bench_ntk] {what} n={n} width={width}: {timing}, peak {result['child_peak_rss_mib']} MiB",
          file=sys.stderr, flush=True)
    return result


def paper_scale(args, grid: list[dict]) -> dict:
    """Width 500 (P = 503,001), 300 points per term: diagonal blocks, full K, traces.

    Reuses the grid's runs of these configurations and runs the missing ones.
    """
    done = {r["what"]: r for r in grid if r.get("n") == 300 and r.get("width") == 500}
    runs = {what: done.get(what) or child(args, what, 300, 500) for what in ("diag_blocks", "kernel", "traces")}
    peaks = [r["child_peak_rss_mib"] for r in runs.values() if "error" not in r]
    ref = runs["traces"].get("traces")
    agree = {what: max(abs(a - b) / abs(b) for a, b in zip(runs[what]["traces"], ref, strict=True))
             for what in ("diag_blocks", "kernel") if ref and "traces" in runs[what]}
    return {
        **runs,
        "limit_mib": LIMIT_MIB,
        "max_peak_rss_mib": max(peaks) if peaks else None,
        "within_4gb": bool(peaks) and len(peaks) == len(runs) and max(peaks) < LIMIT_MIB,
        "block_traces_vs_ntk_traces_max_rel_diff": agree,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N and widths only (CI smoke test)")
    parser.add_argument("--ns", type=int, nargs="+", default=None, help="points per term (default 100 300)")
    parser.add_argument("--widths", type=int, nargs="+", default=None, help="hidden widths (default 100 200 500)")
    parser.add_argument("--whats", nargs="+", default=["K_rr", "diag_blocks", "traces"], choices=WHATS,
                        help="what the grid measures (the full kernel runs at paper scale; add it here for all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after the warm-up call (at most)")
    parser.add_argument("--budget-s", type=float, default=30.0, help="cap on timed seconds per configuration")
    parser.add_argument("--max-bytes", type=int, default=0, help="ntk max_bytes (0: pinnlab's default, 1 GiB)")
    parser.add_argument("--child-timeout", type=float, default=300.0)
    parser.add_argument("--method", default="jacobian", choices=["jacobian", "structured", "auto"],
                        help="ntk method (default jacobian: this script measures the memory-bounded Jacobian "
                             "path; bench_ntk_structured.py compares both)")
    parser.add_argument("--no-paper-scale", action="store_true")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--what", default="K_rr", choices=WHATS, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=300, help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, default=500, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        print_json(single(args), compact=True)
        return
    # The children import pinnlab from this checkout whatever the caller's PYTHONPATH.
    paths = [str(Path(__file__).resolve().parents[1]), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    ns = args.ns or ([50] if args.quick else [100, 300])
    widths = args.widths or ([50, 100] if args.quick else [100, 200, 500])
    t0 = time.perf_counter()
    out: dict = {"env": environment(), "quick": args.quick, "max_bytes": args.max_bytes or "default (1 GiB)"}
    out["grid"] = [child(args, what, n, w) for w in widths for n in ns for what in args.whats]
    if not (args.quick or args.no_paper_scale):
        out["paper_scale"] = paper_scale(args, out["grid"])
    out["total_seconds"] = time.perf_counter() - t0
    print_json(out)


if __name__ == "__main__":
    main()
