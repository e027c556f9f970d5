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
* ``modes``: steps/s of the default Poisson and wave labs trained by ``Lab.run`` with the modes panel
  (:mod:`pinnlab.lab.decay`) off and on, alternated in one process; target: on >= 0.95 x off.
* ``linear``: the same for the linearised twin (:mod:`pinnlab.lab.linear`) in the default Poisson lab (the
  wave resamples its points: no twin), and the twin's error and distance to the real network at the end.
* ``first_cell`` (``--only first_cell``; also written to ``benchmarks/results_first_cell_cpu.json``):
  seconds from sending ``import pinnlab; lab = pinnlab.Lab("poisson"); lab`` to a fresh ipykernel
  (``jupyter_client``) until its result with the dashboard's widget view arrives, medians of
  ``--kernels`` fresh kernels, with JAX's compilation cache warm (one untimed kernel fills it) and
  cold (an empty cache per kernel). "before" runs plotly's stock ``go.FigureWidget`` and its eager
  imports (``PINNLAB_PLAIN_FIGUREWIDGET=1``), "after" pinnlab's :mod:`pinnlab.lab.widget`, alternated.
  A second cell kind, ``staged``, does the same work with the imports spelled out, timing each stage
  in the kernel (jax, flax, pinnlab's core, ipywidgets, plotly, the dashboard modules, the
  FigureWidget, building the Lab split into its controls, runs (trainer build, first keyframe,
  compilation), figure and first draw, then the display). Target: <= 5 s warm.
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


# -- first cell ---------------------------------------------------------------------------------------------
FIRST_CELL = 'import pinnlab; lab = pinnlab.Lab("poisson"); lab'
# The first cell's work with its imports in the order it performs them, each stage stamped in the kernel
# (time.time(), comparable with this process's clock); the Lab's own steps timed by wrapping its methods.
STAGED_CELL = r"""
import json as _json, time as _time
_stamps = [("start", _time.time())]
_mark = lambda name: _stamps.append((name, _time.time()))
import jax; _mark("import jax")
import flax, optax; _mark("import flax, optax")
import pinnlab; _mark("import pinnlab (core)")
import ipywidgets; _mark("import ipywidgets")
import plotly.graph_objects, plotly.subplots; _mark("import plotly.graph_objects, plotly.subplots")
import pinnlab.lab; _mark("import pinnlab.lab (dashboard modules)")
import pinnlab.lab.widget; pinnlab.lab.widget.go.FigureWidget; _mark("import plotly FigureWidget (pinnlab.lab.widget)")
_parts = {}
def _timed(cls, name, label):
    f = getattr(cls, name, None)
    if f is None:
        return
    def wrapper(*a, **k):
        t = _time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            _parts[label] = _parts.get(label, 0.0) + _time.perf_counter() - t
    setattr(cls, name, wrapper)
from pinnlab.lab import dashboard as _d, controls as _c
import plotly.basewidget as _bw
_timed(_c.Controls, "__init__", "controls (ipywidgets)")
_timed(_d.Lab, "_build_runs", "runs: trainer build, first keyframe, compilation")
_timed(_d.Lab, "_new_figure", "figure: View and FigureWidget")
_timed(_bw.BaseFigureWidget, "__init__", "of which FigureWidget(fig), its comm open included")
_timed(_d.Lab, "_draw", "first draw")
lab = pinnlab.Lab("poisson"); _mark("build the Lab")
print("STAGES" + _json.dumps({"stamps": _stamps, "build_parts": _parts}))
lab
"""
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def time_first_cell(code: str, env: dict, timeout: float = 600) -> dict:
    """A fresh kernel runs ``code``; seconds from sending it to the result that holds a widget view."""
    from jupyter_client import KernelManager

    t0 = time.perf_counter()
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        out: dict = {"kernel_start_s": time.perf_counter() - t0}
        sent = time.time()
        msg_id = kc.execute(code)
        stream, deadline, comm_bytes = [], time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            msg = kc.get_iopub_msg(timeout=max(1.0, deadline - time.monotonic()))
            now = time.time()
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "comm_open":
                comm_bytes += len(json.dumps(content, default=str))
                out.setdefault("first_comm_open_s", now - sent)
                if "AnyModel" in json.dumps(content.get("data", {}).get("state", {}).get("_model_name", "")):
                    out["figure_comm_open_s"] = now - sent  # the FigureWidget's model (its ~5 MB of JS)
            elif kind == "stream":
                stream.append(content["text"])
            elif kind == "error":
                out["error"] = "\n".join(content["traceback"])[-1500:]
                break
            elif kind in ("execute_result", "display_data") and WIDGET_VIEW in content.get("data", {}):
                out["display_s"] = now - sent
                out["display_wall"] = now
            elif kind == "status" and content["execution_state"] == "idle":
                out["idle_s"] = now - sent
                break
        out["comm_open_mib"] = comm_bytes / 2**20
        line = next((x for x in "".join(stream).splitlines() if x.startswith("STAGES")), None)
        if line:
            out.update(staged_breakdown(json.loads(line[len("STAGES"):]), sent, out.get("display_wall")))
        out.pop("display_wall", None)
        return out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def staged_breakdown(stages: dict, sent: float, display_wall: float | None) -> dict:
    """Seconds per stage of :data:`STAGED_CELL` from its stamps (the Lab's build split by its parts)."""
    stamps = stages["stamps"]
    out = {"until the cell starts": stamps[0][1] - sent}
    out.update({name: t - prev for (_, prev), (name, t) in zip(stamps[:-1], stamps[1:])})
    if display_wall is not None:
        out["display (the result reaches the client)"] = display_wall - stamps[-1][1]
    build = out.get("build the Lab", 0.0)
    parts = stages["build_parts"]
    rest = build - sum(v for k, v in parts.items() if not k.startswith("of which"))
    return {"stages_s": out, "build_parts_s": {**parts, "rest of the build": rest}}


def first_cell(kernels: int) -> dict:
    """Before (stock FigureWidget) vs after (pinnlab.lab.widget), warm and cold cache, alternated."""
    variants = {"before": {"PINNLAB_PLAIN_FIGUREWIDGET": "1"}, "after": {"PINNLAB_PLAIN_FIGUREWIDGET": "0"}}
    cells = {"first_cell": FIRST_CELL, "staged": STAGED_CELL}
    runs: dict = {f"{cache}/{cell}/{v}": [] for cache in ("warm", "cold") for cell in cells for v in variants}
    with tempfile.TemporaryDirectory() as warm_home:
        out: dict = {"cell": FIRST_CELL, "kernels": kernels, "env": environment(),
                     "warmup": time_first_cell(FIRST_CELL, {**child_env(warm_home), **variants["after"]})}
        for _ in range(kernels):
            for cache in ("warm", "cold"):
                for cell, code in cells.items():
                    for variant, extra in variants.items():
                        with tempfile.TemporaryDirectory() as cold_home:
                            home = warm_home if cache == "warm" else cold_home
                            env = {**child_env(home), **extra}
                            result = time_first_cell(code, env)
                        result["load_average_1min"] = round(os.getloadavg()[0], 2)
                        runs[f"{cache}/{cell}/{variant}"].append(result)
                        print(f"first_cell {cache}/{cell}/{variant}: {result.get('display_s', result.get('error'))}",
                              file=sys.stderr, flush=True)
    out["runs"] = runs
    out["summary"] = {key: summarise_first_cell(results) for key, results in runs.items()}
    out["env"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    out["target_s"] = 5.0
    return out


def summarise_first_cell(results: list[dict]) -> dict:
    """Medians over kernels: the display time, the kernel start, and each stage of the staged cell."""
    ok = [r for r in results if "display_s" in r]
    out: dict = {"display_s_median": median([r["display_s"] for r in ok]) if ok else None,
                 "display_s": [r.get("display_s") for r in results],
                 "kernel_start_s_median": median([r["kernel_start_s"] for r in results]),
                 "failed": len(results) - len(ok)}
    for key in ("stages_s", "build_parts_s"):
        rows = [r[key] for r in ok if key in r]
        if rows:
            out[key + "_median"] = {name: median([row[name] for row in rows if name in row]) for name in rows[0]}
    return out


# -- the cost of a view option (the modes panel, the linearised twin) ------------------------------------------
def option_cost(option: str, steps: dict, repeats: int) -> dict:
    """Steps/s of the default labs trained in the foreground (``Lab.run``: chunks, keyframes with spectra,
    frames) with the view option ``option`` (``modes``, ``linear``) off and on, alternated in this process;
    medians and their ratio, and what the option showed at the end."""
    from pinnlab.lab import Lab

    out = {}
    for preset, n in steps.items():
        labs = {"off": Lab(preset, backend="static"), "on": Lab(preset, backend="static", **{option: True})}
        for lab in labs.values():
            lab.set(budget=0)
            lab.run(n // 10)  # compile (or load) the chunk first
        rates: dict[str, list[float]] = {name: [] for name in labs}
        for _ in range(repeats):
            for name, lab in labs.items():
                s0, t0 = lab.step, time.perf_counter()
                lab.run(n)
                rates[name].append((lab.step - s0) / (time.perf_counter() - t0))
        out[preset] = {"steps_per_repeat": n, "off_steps_per_s": median(rates["off"]),
                       "on_steps_per_s": median(rates["on"]), "on_over_off": median(rates["on"]) / median(rates["off"]),
                       "keyframes_on": len(labs["on"].runs[0].keyframes), "all": rates,
                       "panel": SHOWN[option](labs["on"])}
    return out


def _modes_shown(lab) -> dict:
    m = lab._views()[0].modes  # |c_k| at step 0 and now
    return {"modes": m["index"].tolist(), "eigenvalues": m["values"].tolist(), "step": int(m["steps"][-1]),
            "first": m["coeffs"][0].tolist(), "last": m["coeffs"][-1].tolist(), "note": m["note"]}


def _linear_shown(lab) -> dict:
    run = lab.runs[0]
    v = lab._views()[0].linear
    real = run.keyframes[-1].prediction.astype(np.float64)
    if run.twin.note:
        return {"note": run.twin.note}
    twin = run.twin.prediction().astype(np.float64)
    return {"step": run.step, "rel_l2_real": run.keyframes[-1].rel_l2, "rel_l2_linear": float(v["rel_l2"][-1]),
            "distance_real_to_linear": float(np.linalg.norm(real - twin) / np.linalg.norm(real))}


SHOWN = {"modes": _modes_shown, "linear": _linear_shown}


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
    parser.add_argument("--kernels", type=int, default=3, help="fresh kernels per first_cell variant")
    parser.add_argument("--first-cell-out", default=str(HERE.parent / "results_first_cell_cpu.json"),
                        help="where first_cell's result is also written")
    parts = ["first_frame", "throughput", "wave_rss", "ntk_frame", "first_cell", "modes", "linear"]
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
        args.ntk_repeats, args.ntk_paper_repeats, args.kernels = 3, 1, 1

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
        if "modes" in args.only:
            out["modes"] = {**option_cost("modes", {"poisson": args.steps, "wave": max(500, args.steps // 15)},
                                          args.repeats), "target_ratio": 0.95}
        if "linear" in args.only:  # off by default, and about a second step: no target, the cost is the fact
            out["linear"] = option_cost("linear", {"poisson": args.steps}, args.repeats)
    if "first_cell" in args.only:  # its own caches: one warmed, one empty per cold kernel
        out["first_cell"] = first_cell(args.kernels)
        Path(args.first_cell_out).write_text(json.dumps(out["first_cell"], indent=1) + "\n")
    out["env"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    out["total_seconds"] = time.perf_counter() - t0
    print_json(out)


if __name__ == "__main__":
    main()
