"""Top-k NTK eigenvalues: matrix-free Lanczos on K v products vs the dense kernel + eigvalsh.

    PYTHONPATH=. python benchmarks/bench_spectrum.py            # ~10 min on 2 busy cores
    PYTHONPATH=. python benchmarks/bench_spectrum.py --quick    # ~2 min
    PYTHONPATH=. python benchmarks/bench_spectrum.py --methods lanczos lanczos_structured dense dense64

Prints JSON. The case is the wave problem with N points per term (3 terms: K is 3N x 3N) on a 3 x width
tanh MLP (``paper_code`` conventions, float32). Methods, each in a fresh child process (peak RSS):

* ``lanczos``: ``spectrum.top_eigenvalues`` with the generic ``spectrum.kernel_matvec`` (one VJP + one
  JVP of the stacked residuals per product), default iterations (3k = 60 products for k = 20).
* ``lanczos_structured`` (not by default): the same Lanczos with ``ntk_structured.matvec`` (the lead's
  structured product, work in progress), its factors built once (``setup_s``) for both runs.
* ``dense``: ``ntk.kernel`` (default method, recorded) then ``ntk.eigenvalues`` (float64 eigvalsh).
* ``dense64``: the same in float64 (params and points cast): the reference, for N <= --reference-max-n.

Dense runs are estimated first from flop counts and a float32 matmul rate measured in this process:
the kernel's flops / rate, eigvalsh's 4/3 (3N)^3 flops / (rate / 10), memory ~ 28 bytes (3N)^2 (the
float32 K, its float64 copy, the symmetrised one, eigvalsh's workspace); above
``--dense-budget-s`` or ``--dense-budget-gib`` they are skipped, and the JSON says so.

``first_s`` includes compilation; runs under ``--repeat-below-s`` run again (``warm_s``). Speedups
compare like with like (``of``: warm or first). Lanczos counts its products (``products_per_run``;
fewer than the default iterations after a breakdown). ``rel_diff_A_vs_B``: ``max_rel`` =
max_i |a_i - b_i| / b_i, ``top1_rel``, ``max_rel_to_top`` = max_i |a_i - b_i| / b_1.
"""

from __future__ import annotations

import argparse
import sys
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import environment, peak_rss_mib, print_json, rss_mib, run_child  # noqa: E402

METHODS = ("lanczos", "lanczos_structured", "dense", "dense64")
DEFAULT_METHODS = ("lanczos", "dense", "dense64")


def _setup(width: int, n: int):
    import jax

    from pinnlab import make_net, make_problem, nets

    problem = make_problem("wave", n_ntk=n)
    config = nets.convention("paper_code", problem.default_init, width=width, depth=3)
    net = make_net(config, problem.dim, problem.mean, problem.std, jax.random.key(0))
    return problem, net, jax.block_until_ready(problem.sample(jax.random.key(1), ntk=True))


def _timed_twice(run, repeat_below_s: float) -> dict:
    t0 = time.perf_counter()
    result = run()
    out = {"first_s": time.perf_counter() - t0, "result": result}
    if out["first_s"] < repeat_below_s:
        t0 = time.perf_counter()
        run()
        out["warm_s"] = time.perf_counter() - t0
    out["time_s"] = out.get("warm_s", out["first_s"])
    return out


_PRODUCTS: list = []


def _counted(matvec, v):
    """``matvec(v)``, counting calls on the host (a callback per product, ~0.1 ms)."""
    import jax

    jax.debug.callback(lambda: _PRODUCTS.append(1))
    return matvec(v)


def _dense_run(args, k: int, x64: bool, parts: dict):
    """ntk.kernel + eigvalsh, in float64 (params and points cast) when ``x64``: the reference."""
    import jax
    import jax.numpy as jnp

    from pinnlab import ntk

    with jax.enable_x64(x64):
        apply, params, terms, points = args
        if x64:
            params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
            points = [x.astype(jnp.float64) for x in points]
        t0 = time.perf_counter()
        full = ntk.kernel(apply, params, terms, points)
        t1 = time.perf_counter()
        values = ntk.eigenvalues(full)[:k]
    parts.update(kernel_s=t1 - t0, eigvalsh_s=time.perf_counter() - t1)
    return values, None


def single(method: str, width: int, n: int, k: int, repeat_below_s: float) -> dict:
    """One method on one case in this process: top-k eigenvalues, times and peak RSS."""
    import numpy as np
    from jax.tree_util import Partial

    from pinnlab import ntk, spectrum
    from pinnlab import ntk_structured as ns

    problem, net, points = _setup(width, n)
    args = (net.apply, net.params, problem.terms, points)
    before, out = rss_mib(), {"method": method, "width": width, "n": n, "k": k, "num_params": net.num_params}
    parts: dict = {}
    if method in ("dense", "dense64"):
        out["kernel_method"] = ntk.resolve_method(net.apply, problem.terms)
        run = lambda: _dense_run(args, k, method == "dense64", parts)
    else:
        t0 = time.perf_counter()
        product = spectrum.kernel_matvec(*args) if method == "lanczos" else ns.matvec(*args)
        matvec = Partial(_counted, product) if isinstance(product, Partial) else lambda v: _counted(product, v)
        parts["setup_s"] = time.perf_counter() - t0  # the structured factors; ~0 for the generic product
        run = lambda: spectrum.top_eigenvalues(*args, k=k, matvec=matvec, return_bounds=True)
    timing = _timed_twice(run, repeat_below_s)
    values, bounds = timing.pop("result")
    out.update(timing, **parts)
    if bounds is not None:
        out["products_per_run"] = len(_PRODUCTS) // (2 if "warm_s" in out else 1)
        out["max_bound_rel_to_top"] = float(np.max(bounds) / values[0])
    out.update(eigenvalues=[float(v) for v in values], rss_before_mib=before, peak_rss_mib=peak_rss_mib())
    return out


def calibrate() -> dict:
    """The float32 matmul rate of this machine now (best of 3: on a busy machine the best run is the
    least disturbed one). A timed eigvalsh was tried and dropped: on 2 shared cores one 1000 x 1000
    eigvalsh took 0.7 to 6.6 s from run to run, while the flop count is fixed."""
    import numpy as np

    b = np.random.default_rng(0).standard_normal((1000, 1000)).astype(np.float32)
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        b @ b
        times.append(time.perf_counter() - t0)
    return {"matmul_gflops": 2.0 / min(times[1:])}


def estimate_dense(width: int, n: int, kernel_method: str, cal: dict) -> dict:
    """Rough time and memory of the dense path before running it (see the module docstring)."""
    size, p = 3 * n, 2 * width**2 + 6 * width + 1  # wave: 2 inputs, 3 hidden layers, 1 output
    if kernel_method == "structured":  # stream Grams: ~3 x 3 stream pairs, (in + 1 + out) per layer
        flops = 2 * size**2 * 9 * (6 * width + 6)
    else:  # J J^T, one row of P per point, plus recomputed right panels (~x2)
        flops = 4 * size**2 * p
    rate = cal["matmul_gflops"] * 1e9
    # eigvalsh: tridiagonalisation, 4/3 size^3 flops, half of them matrix-vector (memory bound): ~rate / 10
    eig_s = 4 / 3 * size**3 / (rate / 10)
    mem = 28 * size**2 + (2**30 if kernel_method == "jacobian" else 2**27)
    return {"kernel_s": flops / rate, "eigvalsh_s": eig_s, "total_s": flops / rate + eig_s, "memory_gib": mem / 2**30}


def _rel_diff(values, reference) -> dict:
    import numpy as np

    a, d = np.asarray(values), np.asarray(reference)
    return {"max_rel": float(np.max(np.abs(a - d) / np.abs(d))), "top1_rel": float(abs(a[0] - d[0]) / d[0]),
            "max_rel_to_top": float(np.max(np.abs(a - d)) / d[0])}


def _skip_reason(method: str, n: int, est: dict, args) -> str | None:
    if method == "dense64" and n > args.reference_max_n:
        return f"float64 reference only for N <= --reference-max-n {args.reference_max_n}"
    too_big = est["total_s"] > args.dense_budget_s or est["memory_gib"] > args.dense_budget_gib
    if method.startswith("dense") and too_big:
        return (f"estimated {est['total_s']:.0f} s and {est['memory_gib']:.1f} GiB (float32) exceed --dense-budget-s "
                f"{args.dense_budget_s} / --dense-budget-gib {args.dense_budget_gib}")
    return None


def _compare(case: dict) -> None:
    """Accuracy against dense (and the float64 reference), speed against dense, like for like: warm
    times where both were repeated, else first calls (both with compilation)."""
    ran = {m: r for m, r in case.items() if m in METHODS and "eigenvalues" in r}
    for ref in ("dense", "dense64"):
        for m in (m for m in ran if m != ref and not (ref == "dense" and m == "dense64")):
            if ref in ran:
                case[f"rel_diff_{m}_vs_{ref}"] = _rel_diff(ran[m]["eigenvalues"], ran[ref]["eigenvalues"])
    for m in ("lanczos", "lanczos_structured"):
        if m in ran and "dense" in ran:
            key = "warm_s" if "warm_s" in ran[m] and "warm_s" in ran["dense"] else "first_s"
            case[f"speedup_{m}_over_dense"] = {"ratio": ran["dense"][key] / ran[m][key], "of": key}


def _case(width: int, n: int, args, cal: dict, kernel_method: str) -> dict:
    est = estimate_dense(width, n, kernel_method, cal)
    case = {"width": width, "n": n, "size": 3 * n, "dense_estimate": est}
    for method in args.methods:
        reason = _skip_reason(method, n, est, args)
        if reason:
            case[method] = {"skipped": reason}
            continue
        argv = [sys.executable, __file__, "--single", method, str(width), str(n), "--k", str(args.k),
                "--repeat-below-s", str(args.repeat_below_s)]
        case[method] = run_child(argv, timeout=args.timeout_s)
        print(f"width {width} N {n} {method}: {case[method].get('time_s', case[method].get('error'))}",
              file=sys.stderr)
    _compare(case)
    return case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="width 32, N in {50, 200}, k = 10")
    parser.add_argument("--widths", type=int, nargs="+", default=[200, 500])
    parser.add_argument("--ns", type=int, nargs="+", default=[300, 1000, 3000])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS))
    parser.add_argument("--reference-max-n", type=int, default=300, help="dense64 only up to this N")
    parser.add_argument("--dense-budget-s", type=float, default=120.0)
    parser.add_argument("--dense-budget-gib", type=float, default=4.0)
    parser.add_argument("--repeat-below-s", type=float, default=20.0)
    parser.add_argument("--timeout-s", type=float, default=900.0)
    parser.add_argument("--single", nargs=3, metavar=("METHOD", "WIDTH", "N"))
    args = parser.parse_args()
    if args.single:
        method, width, n = args.single
        print_json(single(method, int(width), int(n), args.k, args.repeat_below_s), compact=True)
        return
    if args.quick:
        args.widths, args.ns, args.k = [32], [50, 200], 10
    from pinnlab import ntk
    from pinnlab import ntk_structured as ns

    if not hasattr(ns, "matvec"):  # the structured product is work in progress elsewhere
        args.methods = [m for m in args.methods if m != "lanczos_structured"]
    t0, cal = time.perf_counter(), calibrate()
    problem, net, _ = _setup(8, 4)
    kernel_method = ntk.resolve_method(net.apply, problem.terms)
    cases = [_case(w, n, args, cal, kernel_method) for w in args.widths for n in args.ns]
    print_json({"env": environment(), "calibration": cal, "k": args.k, "dense_kernel_method": kernel_method,
                "total_s": time.perf_counter() - t0, "cases": cases})


if __name__ == "__main__":
    main()
