"""The live lab's performance figures: time to the first frame, throughput with the dashboard, memory.

Run from the repository root: ``PYTHONPATH=. python benchmarks/bench_lab.py [--quick]``. Prints one
JSON object with

* ``first_frame``: seconds from Run (``lab.play()``) to the first drawn frame of the default Poisson
  lab, in fresh processes sharing one new cache directory: the first process compiles (cold), the
  next ones load the chunk from JAX's persistent compilation cache (warm; target <= 3 s). Each also
  reports its import and construction times.
* ``throughput``: steps/s of the default Poisson lab training in the background task with the
  dashboard attached (figure updates, keyframes with spectra, comm messages of a real ipykernel when
  ``jupyter_client`` is there) against the headless ``Trainer.advance`` on the same config and chunk,
  alternated in one process, medians and their ratio (target >= 0.85).
* ``wave_rss``: peak resident memory of a process that builds the default wave lab and trains it
  for a while (target <= 1024 MiB).
* ``ntk_frame``: NTK frames per second as the dashboard draws them (the full K on the lab's probe
  points, then the eigenvalues of K and of each diagonal block, at the initial parameters) with
  ``method="structured"`` and ``method="jacobian"`` alternated in one process, medians and their ratio,
  plus the real ``LiveRun.keyframe(spectra=True)`` (prediction, error and spectra through the default
  path) and the spectra rate the dashboard's keyframe schedule then allows; for the default lab, the
  wave preset and the paper-scale ``wave_paper`` preset (3 x 500, 300 probe points per term), each in
  a fresh process, once with OpenBLAS's default threads and once with ``OPENBLAS_NUM_THREADS=1``
  (``--blas-threads``; the eigenvalues run in OpenBLAS's LAPACK). ``ntk_frame`` times the core calls
  as they are; the keyframe runs the lab's own path, which solves the eigenvalues on one BLAS thread
  whatever the setting (:mod:`pinnlab.lab.threads`). Target: >= 20 frames/s for the default lab.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _util import environment, median, print_json, run_child

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent


# -- children ---------------------------------------------------------------------------------------------
def child_first_frame() -> dict:
    """In a fresh process: import, build the default lab, press Run, wait for the first frame."""
    t0 = time.perf_counter()
    from pinnlab.lab import Lab

    t1 = time.perf_counter()
    lab = Lab("poisson")
    t2 = time.perf_counter()

    async def press_run():
        lab.play()
        while "first_frame" not in lab.timings and lab.error is None:
            await asyncio.sleep(0.001)
        lab.pause()
        while lab.running:
            await asyncio.sleep(0.001)

    asyncio.run(press_run())
    if lab.error is not None:
        raise lab.error
    return {"import_s": t1 - t0, "construct_s": t2 - t1,
            "run_to_first_frame_s": lab.timings["first_frame"] - lab.timings["play"], "chunk": lab.runs[0].chunk}


def child_wave_rss(seconds: float) -> dict:
    """Build the default wave lab and train it in the background task for ``seconds``."""
    from pinnlab.lab import Lab

    lab = Lab("wave")

    async def train():
        lab.play()
        await asyncio.sleep(seconds)
        lab.pause()
        while lab.running:
            await asyncio.sleep(0.01)

    asyncio.run(train())
    if lab.error is not None:
        raise lab.error
    return {"steps": lab.step, "keyframes": len(lab.runs[0].keyframes), "chunk": lab.runs[0].chunk,
            "num_params": lab.trainer.net.num_params, "state": lab.config}


NTK_CASES = ("default", "wave", "wave_paper")  # LabState() and two presets of pinnlab.lab.state
NTK_METHODS = ("structured", "jacobian")


def ntk_frame(run, method: str) -> dict[str, float]:
    """One NTK frame of ``run``'s trainer as ``Trainer.spectra`` computes it (less the drift and the record),
    with ``method`` forced: seconds of the kernel, of the eigenvalues and in all (wall and process CPU)."""
    from pinnlab import ntk

    t = run.trainer
    t0, c0 = time.perf_counter(), time.process_time()
    k = ntk.kernel(t.apply, t.state.params, t.problem.terms, t.probe, method=method)
    t1 = time.perf_counter()
    offsets = np.cumsum([0] + [x.shape[0] for x in t.probe])
    ntk.eigenvalues(k)
    for a, b in zip(offsets[:-1], offsets[1:]):
        ntk.eigenvalues(k[a:b, a:b])
    t2 = time.perf_counter()
    return {"kernel_s": t1 - t0, "eig_s": t2 - t1, "frame_s": t2 - t0, "frame_cpu_s": time.process_time() - c0}


def child_ntk_frame(case: str, repeats: int) -> dict:
    """In a fresh process: build the lab's run for ``case``, then time NTK frames, methods alternated."""
    from pinnlab import ntk
    from pinnlab.lab.dashboard import KEYFRAME_BUDGET, MIN_KEYFRAME_SECONDS
    from pinnlab.lab.run import LiveRun
    from pinnlab.lab.state import LabState, preset

    t0 = time.perf_counter()
    run = LiveRun(LabState() if case == "default" else preset(case))  # its step-0 keyframe compiles K
    build_s = time.perf_counter() - t0
    t = run.trainer
    first = {}
    for method in NTK_METHODS:  # compiles (the Jacobian path's per-point gradient), untimed below
        first[method] = ntk_frame(run, method)["frame_s"]
    parts: dict[str, list[dict]] = {m: [] for m in NTK_METHODS}
    keyframe_s = []
    for _ in range(repeats):
        for method in NTK_METHODS:
            parts[method].append(ntk_frame(run, method))
        t1 = time.perf_counter()
        run.keyframe(spectra=True)  # the dashboard's own call: method "auto"
        keyframe_s.append(time.perf_counter() - t1)
    out = {"case": case, "state": run.state.to_string(), "num_params": t.net.num_params,
           "probe_points": [int(x.shape[0]) for x in t.probe], "explain": ntk.explain(t.apply, t.problem.terms),
           "lab_method": run.ntk_method, "build_s": build_s, "first_frame_s": first, "repeats": repeats}
    for method in NTK_METHODS:
        med = {k: median([p[k] for p in parts[method]]) for k in parts[method][0]}
        out[method] = {**med, "frames_per_s": 1 / med["frame_s"], "frame_s_all": [p["frame_s"] for p in parts[method]]}
    s, j = out["structured"], out["jacobian"]
    out["jacobian_over_structured"] = {"frame": j["frame_s"] / s["frame_s"], "kernel": j["kernel_s"] / s["kernel_s"],
                                       "frame_cpu": j["frame_cpu_s"] / s["frame_cpu_s"]}
    keyframe = median(keyframe_s)
    out["lab_keyframe"] = {"seconds": keyframe, "per_s": 1 / keyframe, "spectra_seconds_ema": run.spectra_seconds,
                           # what _keyframe_due allows by time (the NTK period in steps may bind first)
                           "dashboard_spectra_per_s_cap": 1 / max(MIN_KEYFRAME_SECONDS, keyframe / KEYFRAME_BUDGET)}
    return out


def ntk_frames(cache_home: str, cases: list[str], blas_threads: list[str], repeats: int, paper_repeats: int) -> dict:
    """:func:`child_ntk_frame` per case and BLAS thread setting, each in a fresh process."""
    out: dict = {"target_frames_per_s": 20.0}
    for case in cases:
        n = paper_repeats if case == "wave_paper" else repeats
        for threads in blas_threads:
            extra = {} if threads == "default" else {"OPENBLAS_NUM_THREADS": threads}
            result = child(["--child", "ntk-frame", "--case", case, "--ntk-repeats", str(n)], cache_home, 1800, extra)
            out[f"{case}/blas_{threads}"] = {**result, "load_average_1min": round(os.getloadavg()[0], 2)}
    return out


async def measure_throughput(steps: int, repeats: int) -> dict:
    """Steps/s of the default Poisson lab's background task vs the headless Trainer, alternated."""
    from pinnlab.lab import Lab
    from pinnlab.lab.state import build
    from pinnlab.training import Trainer

    lab = Lab("poisson")
    await lab.arun(20 * lab.runs[0].chunk)  # compiled, and the chunk length settled (re-picked at most once)
    chunk = lab.runs[0].chunk
    trainer = Trainer(*build(lab.state, chunk))
    trainer.advance(chunk)  # compiled before timing
    steps = max(chunk, steps // chunk * chunk)
    rates: dict[str, list[float]] = {"dashboard": [], "headless": []}
    for _ in range(repeats):
        start, t0 = lab.step, time.perf_counter()
        await lab.arun(steps)
        rates["dashboard"].append((lab.step - start) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for _ in range(steps // chunk):
            trainer.advance(chunk)
        rates["headless"].append(steps / (time.perf_counter() - t0))
    return {"rates": rates, "chunk": chunk, "steps_per_repeat": steps, "frames_drawn": lab.frames_drawn,
            "keyframes": len(lab.runs[0].keyframes), "frame_cost_s": lab._frame_cost,
            "keyframe_cost_s": lab._keyframe_cost, "chunk_s": sorted(lab.runs[0].chunk_seconds)}


KERNEL_CODE = """
import json, sys
sys.path.insert(0, {here!r})
from bench_lab import measure_throughput
result = await measure_throughput({steps}, {repeats})
print("RESULT" + json.dumps(result))
"""


def throughput_in_kernel(steps: int, repeats: int, env: dict, timeout: float) -> dict:
    """:func:`measure_throughput` in a real ipykernel: widget updates go through its comm and iopub socket."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        msg_id = kc.execute(KERNEL_CODE.format(here=str(HERE.parent), steps=steps, repeats=repeats))
        out, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = kc.get_iopub_msg(timeout=max(1.0, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                raise RuntimeError("\n".join(content["traceback"])[-2000:])
            elif kind == "status" and content["execution_state"] == "idle":
                break
        line = next(x for x in "".join(out).splitlines() if x.startswith("RESULT"))
        return {**json.loads(line[len("RESULT"):]), "in_kernel": True}
    finally:
        km.shutdown_kernel(now=True)


def summarise_throughput(result: dict) -> dict:
    dash, head = median(result["rates"]["dashboard"]), median(result["rates"]["headless"])
    paired = [d / h for d, h in zip(result["rates"]["dashboard"], result["rates"]["headless"])]
    return {"dashboard_steps_per_s": dash, "headless_steps_per_s": head, "ratio": dash / head,
            "median_of_paired_ratios": median(paired), "ratios_per_repeat": paired,
            **{k: v for k, v in result.items() if k != "rates"}}


# -- main ---------------------------------------------------------------------------------------------------
def child_env(cache_home: str) -> dict:
    return {**os.environ, "XDG_CACHE_HOME": cache_home,
            "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}


def child(argv: list[str], cache_home: str, timeout: float, extra_env: dict | None = None) -> dict:
    env = {**child_env(cache_home), **(extra_env or {})}
    old = dict(os.environ)
    os.environ.update(env)  # run_child inherits this process's environment
    try:
        return run_child([sys.executable, str(HERE), *argv], timeout)
    finally:
        os.environ.clear()
        os.environ.update(old)


def first_frame(cache_home: str, warm_starts: int) -> dict:
    """One cold process, then ``warm_starts`` processes that find the compiled chunk in the cache."""
    cold = child(["--child", "first-frame"], cache_home, 600)
    warm = [child(["--child", "first-frame"], cache_home, 600) for _ in range(warm_starts)]
    ok = [w["run_to_first_frame_s"] for w in warm if "error" not in w]
    return {"cold": cold, "warm": warm, "warm_run_to_first_frame_s_median": median(ok or [float("nan")]),
            "target_s": 3.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (CI smoke test)")
    parser.add_argument("--warm-starts", type=int, default=3, help="warm processes timed after the cold one")
    parser.add_argument("--steps", type=int, default=30_000, help="steps per throughput repeat")
    parser.add_argument("--repeats", type=int, default=5, help="alternated throughput repeats")
    parser.add_argument("--wave-seconds", type=float, default=20.0, help="training time of the wave RSS child")
    parser.add_argument("--ntk-repeats", type=int, default=9, help="alternated NTK frame repeats")
    parser.add_argument("--ntk-paper-repeats", type=int, default=3, help="the same for wave_paper (slow Jacobian)")
    parser.add_argument("--ntk-cases", nargs="*", default=list(NTK_CASES), choices=NTK_CASES, help="labs of ntk_frame")
    parser.add_argument("--blas-threads", nargs="*", default=["default", "1"],
                        help="OPENBLAS_NUM_THREADS of the ntk_frame children ('default': unset)")
    parts = ["first_frame", "throughput", "wave_rss", "ntk_frame"]
    parser.add_argument("--only", nargs="*", default=parts, choices=parts, help="parts to run")
    parser.add_argument("--child", choices=["first-frame", "wave-rss", "ntk-frame"], help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=NTK_CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "ntk-frame":
        print_json(child_ntk_frame(args.case, args.ntk_repeats), compact=True)
        return
    if args.child == "first-frame":
        print_json(child_first_frame(), compact=True)
        return
    if args.child == "wave-rss":
        print_json(child_wave_rss(args.wave_seconds), compact=True)
        return
    if args.quick:
        args.warm_starts, args.steps, args.repeats, args.wave_seconds = 1, 5_000, 2, 5.0
        args.ntk_repeats, args.ntk_paper_repeats = 3, 1

    t0 = time.perf_counter()
    out: dict = {"env": environment()}
    with tempfile.TemporaryDirectory() as cache_home:  # a fresh cache: the first start is honestly cold
        if "first_frame" in args.only:
            out["first_frame"] = first_frame(cache_home, args.warm_starts)
        if "throughput" in args.only:
            try:
                result = throughput_in_kernel(args.steps, args.repeats, child_env(cache_home), timeout=900)
            except ImportError:  # no jupyter_client: measure in this process (widget messages then go nowhere)
                os.environ["XDG_CACHE_HOME"] = cache_home
                result = {**asyncio.run(measure_throughput(args.steps, args.repeats)), "in_kernel": False}
            out["throughput"] = {**summarise_throughput(result), "target_ratio": 0.85}
        if "wave_rss" in args.only:
            rss = child(["--child", "wave-rss", "--wave-seconds", str(args.wave_seconds)], cache_home, 900)
            out["wave_rss"] = {**rss, "target_mib": 1024}
        if "ntk_frame" in args.only:
            out["ntk_frame"] = ntk_frames(cache_home, args.ntk_cases, args.blas_threads, args.ntk_repeats,
                                          args.ntk_paper_repeats)
    out["env"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    out["total_seconds"] = time.perf_counter() - t0
    print_json(out)


if __name__ == "__main__":
    main()
