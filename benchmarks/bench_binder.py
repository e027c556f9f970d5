"""The default labs on a Binder-sized machine: one CPU, 1 GB: time to the first frame, steps/s, peak memory.

Run from the repository root: ``python benchmarks/bench_binder.py [--out FILE] [--quick] [--cpus 0]``.
For each of ``Lab("poisson")`` and ``Lab("wave")`` it starts

* a fresh Python process (``--modes process``) that imports pinnlab, builds the lab headless and drives
  ``lab.run(steps)``, and
* a fresh Jupyter kernel (``--modes kernel``, through ``jupyter_client``) that runs the cells a student
  runs: ``import pinnlab; lab = pinnlab.Lab("poisson"); lab`` (ending with the dashboard's display
  message, which this script receives in place of a browser), then ``lab.run(...)``,

each once with an empty JAX compilation cache (``cold``: a fresh Binder container) and once more with the
cache the cold start left (``warm``: a second kernel start in the same container). Every child runs
under ``taskset -c 0`` (``--cpus``; ``all`` runs unpinned) with OpenBLAS and OpenMP on one thread, as
``binder/start`` sets, and, where the machine allows it, under ``systemd-run --scope -p MemoryMax=1G``.
Where it does not, the memory limit is *not enforced*: the script then polls the child's resident memory
every 50 ms and kills it above 1 GiB (a watchdog, not a kernel limit: a spike between two polls goes
unseen by it, though not by the reported peak, which is ``wait4``'s or ``VmHWM``). ``prlimit --as`` is
no substitute: a 1 GiB address-space limit kills JAX's CPU client at start-up (``std::bad_alloc``), since
XLA reserves more virtual memory than it uses (``max_vm_size_mib``).

Per child, as wall seconds and as process-CPU seconds (on a core of its own a process's wall time is
about its CPU time, so the CPU figures estimate a quiet Binder core; the wall figures are what this
shared machine gave):

* ``first_frame_s``: from the start of the process (for a kernel: the first cell's request) to the lab
  built and its first chunk trained and drawn, with its parts ``import_s``, ``construct_s`` (the step-0
  keyframe and the figure) and ``first_run_s`` (compile or cache load, one chunk, one frame); for a
  kernel also ``kernel_start_s`` and ``dashboard_s`` (the first cell's display message: what a student
  waits for before the dashboard shows, less the browser's drawing);
* ``steps_per_s``: steps/s of ``lab.run`` calls of ~2 s each over ~``--seconds`` s, after untimed runs
  until the lab has settled its chunk length; frames are drawn as the lab draws them with no front end
  acknowledging them;
* ``peak_rss_mib``: the child's peak resident memory (``wait4`` for a process, ``VmHWM`` for a kernel).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

T0, C0 = time.perf_counter(), time.process_time()  # a child's clocks start here, before pinnlab is imported

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
LIMIT_MIB = 1024
PRESETS = ("poisson", "wave")
MODES = ("process", "kernel")
POLL_S = 0.05


# -- what runs inside a child (process or kernel) -------------------------------------------------------------
def rate(lab, seconds: float) -> dict:
    """Steps/s of ``lab.run`` calls of ~2 s each, over about ``seconds`` s in all.

    First untimed runs until the lab has settled its chunk length (each new length compiles once), then
    timed runs; wall and process-CPU time (on a core of its own, a process's wall time is about its CPU
    time, so ``steps_per_cpu_s`` is what a quiet Binder core would give).
    """
    first_chunk = lab.runs[0].chunk
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 30.0:  # settle: the lab re-picks its chunk after a few chunks
        chunk = lab.runs[0].chunk
        lab.run(16 * chunk)
        if lab.runs[0].chunk == chunk:
            break
    settle_s = time.perf_counter() - t0
    frames, keyframes, step0, estimate = lab.frames_drawn, len(lab.runs[0].keyframes), lab.step, 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        s1, t1 = lab.step, time.perf_counter()
        outcome = lab.run(max(lab.runs[0].chunk, int(2.0 * estimate)))
        estimate = (lab.step - s1) / (time.perf_counter() - t1)
        if outcome.reason != "done":
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    steps = lab.step - step0
    return {"steps_per_s": steps / wall, "steps_per_cpu_s": steps / cpu, "cpu_share": cpu / wall,
            "timed_steps": steps, "timed_s": wall, "settle_s": settle_s, "frames_drawn": lab.frames_drawn - frames,
            "keyframes": len(lab.runs[0].keyframes) - keyframes, "first_chunk": first_chunk,
            "chunk": lab.runs[0].chunk, "outcome": outcome.reason, "final_step": lab.step}


def first_frame(lab) -> dict:
    """Train and draw the first chunk (``lab.run`` draws right after it); its seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    lab.run(lab.runs[0].chunk)
    return {"first_run_s": time.perf_counter() - t0, "first_run_cpu_s": time.process_time() - c0,
            "play_to_first_frame_s": lab.timings["first_frame"] - lab.timings["play"],
            "first_frame_at_s": lab.timings["first_frame"] - T0}


def child_process(preset: str, seconds: float) -> dict:
    """A fresh process: import, build, first frame, train ~``seconds`` s."""
    import pinnlab

    t_import, c_import = time.perf_counter(), time.process_time()
    lab = pinnlab.Lab(preset)
    t_built, c_built = time.perf_counter(), time.process_time()
    out = {"import_s": t_import - T0, "import_cpu_s": c_import - C0, "construct_s": t_built - t_import,
           "construct_cpu_s": c_built - c_import, **first_frame(lab)}
    out["first_frame_s"] = out.pop("first_frame_at_s")
    out["first_frame_cpu_s"] = time.process_time() - C0
    out.update(rate(lab, seconds))
    out.update(state=lab.config, num_params=lab.trainer.net.num_params, affinity=sorted(os.sched_getaffinity(0)))
    return out


# -- the parent ---------------------------------------------------------------------------------------------
def hard_limit_prefix() -> tuple[list[str], str]:
    """``systemd-run`` wrapping that enforces MemoryMax=1G, if this machine has it; else ([], why not)."""
    if shutil.which("systemd-run") is None:
        return [], "no systemd-run"
    cmd = ["systemd-run", "--scope", "--quiet", "-p", f"MemoryMax={LIMIT_MIB}M", "-p", "MemorySwapMax=0"]
    probe = subprocess.run([*cmd, "true"], capture_output=True, text=True)
    if probe.returncode == 0:
        return cmd, f"enforced: systemd-run --scope -p MemoryMax={LIMIT_MIB}M"
    return [], f"systemd-run --scope failed: {(probe.stderr or probe.stdout).strip().splitlines()[0]}"


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM, VmSize, VmPeak of ``pid`` in MiB (empty once it has gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "VmSize", "VmPeak"):
                    out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


class Watchdog(threading.Thread):
    """Polls a pid's memory; kills it (SIGKILL) if its RSS passes the limit. Records the maxima it saw."""

    def __init__(self, pid: int, limit_mib: float):
        super().__init__(daemon=True)
        self.pid, self.limit, self.killed, self.seen = pid, limit_mib, False, {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            status = proc_status(self.pid)
            if not status:
                return
            for key, value in status.items():
                self.seen[key] = max(self.seen.get(key, 0.0), value)
            if status.get("VmRSS", 0.0) > self.limit:
                self.killed = True
                os.kill(self.pid, signal.SIGKILL)
                return
            self.done.wait(POLL_S)

    def report(self) -> dict:
        return {"watchdog_max_rss_mib": round(self.seen.get("VmRSS", 0.0), 1),
                "max_vm_size_mib": round(self.seen.get("VmPeak", self.seen.get("VmSize", 0.0)), 1),
                "killed_over_limit": self.killed}


CPUS = ["0"]  # taskset's CPU list for the children; ["all"]: no pinning (--cpus)


def pin() -> list[str]:
    return [] if CPUS == ["all"] else ["taskset", "-c", ",".join(CPUS)]


def child_env(cache_home: str) -> dict:
    return {**os.environ, "XDG_CACHE_HOME": cache_home, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}


def run_process(preset: str, seconds: float, cache_home: str, prefix: list[str], timeout: float) -> dict:
    """One headless child under ``taskset -c 0`` (+ ``prefix``), its result and its peak RSS from wait4."""
    argv = [*pin(), *prefix, sys.executable, str(HERE), "--child", preset, "--seconds", str(seconds)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=child_env(cache_home))
        dog = Watchdog(proc.pid, LIMIT_MIB)
        dog.start()
        deadline, usage, status = time.monotonic() + timeout, None, 0
        while usage is None:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                usage = ru
            elif time.monotonic() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
            else:
                time.sleep(0.05)
        wall = time.perf_counter() - t0
        dog.done.set()
        proc.returncode = 0  # reaped by wait4
        out.seek(0)
        err.seek(0)
        lines, stderr = out.read().decode().strip().splitlines(), err.read().decode()
    result: dict = {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "process_wall_s": wall, **dog.report()}
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not lines:
        result["error"] = f"exit {code}: {stderr.strip()[-600:]}"
    else:
        result.update(json.loads(lines[-1]))
    return result


KERNEL_CELLS = (
    # 1: what a student runs (the dashboard's display message ends it)
    "import time as _time\n_t0, _c0 = _time.perf_counter(), _time.process_time()\nimport pinnlab\n"
    "_t1, _c1 = _time.perf_counter(), _time.process_time()\nlab = pinnlab.Lab({preset!r})\n"
    "_t2, _c2 = _time.perf_counter(), _time.process_time()\nlab",
    # 2: the first chunk, trained and drawn
    "import json, sys\nsys.path.insert(0, {here!r})\nfrom bench_binder import first_frame, rate\n"
    "print('RESULT' + json.dumps({{'import_s': _t1 - _t0, 'import_cpu_s': _c1 - _c0, 'construct_s': _t2 - _t1,"
    " 'construct_cpu_s': _c2 - _c1, **first_frame(lab), 'first_frame_cpu_s': _time.process_time() - _c0}}))",
    # 3: ~seconds of training
    "print('RESULT' + json.dumps({{**rate(lab, {seconds}), 'state': lab.config,"
    " 'affinity': sorted(__import__('os').sched_getaffinity(0))}}))",
)


def run_kernel(preset: str, seconds: float, cache_home: str, prefix: list[str], timeout: float) -> dict:
    """The student's cells in a fresh ipykernel started under ``taskset -c 0`` (+ ``prefix``)."""
    from jupyter_client.manager import KernelManager

    with tempfile.TemporaryDirectory() as spec_root:
        spec = Path(spec_root) / "kernels" / "binder1cpu"
        spec.mkdir(parents=True)
        argv = [*pin(), *prefix, sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "1 CPU", "language": "python"}))
        env = {**child_env(cache_home), "JUPYTER_PATH": spec_root}
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = spec_root  # where the KernelSpecManager finds the spec
        try:
            km = KernelManager(kernel_name="binder1cpu")
            t0 = time.perf_counter()
            km.start_kernel(env=env)
        finally:
            os.environ.pop("JUPYTER_PATH") if old is None else os.environ.update(JUPYTER_PATH=old)
        pid = km.provisioner.pid
        dog = Watchdog(pid, LIMIT_MIB)
        dog.start()
        kc = km.client()
        kc.start_channels()
        result: dict = {}
        try:
            kc.wait_for_ready(timeout=120)
            result["kernel_start_s"] = time.perf_counter() - t0
            args = {"preset": preset, "here": str(HERE.parent), "seconds": seconds}
            t1 = time.perf_counter()
            for index, cell in enumerate(KERNEL_CELLS):
                sent = time.perf_counter()
                shown, lines = execute(kc, cell.format(**args), timeout)
                if index == 0:
                    result["dashboard_s"] = shown - t1
                if index == 1:  # the cell's clock (T0) is not the kernel's start: count from the first cell
                    frame = json.loads(lines[-1])
                    frame.pop("first_frame_at_s")
                    frame["first_frame_s"] = sent - t1 + frame["play_to_first_frame_s"]
                    lines = [json.dumps(frame)]
                for line in lines:
                    result.update(json.loads(line))
            result["peak_rss_mib"] = round(proc_status(pid).get("VmHWM", float("nan")), 1)
        except Exception as e:  # noqa: BLE001 - recorded, the other children still run
            result["error"] = f"{type(e).__name__}: {str(e)[-600:]}"
        finally:
            dog.done.set()
            kc.stop_channels()
            km.shutdown_kernel(now=True)
        result.update(dog.report())
        return result


def execute(kc, code: str, timeout: float) -> tuple[float, list[str]]:
    """Run ``code``; returns (when its display/result message arrived, its RESULT lines). Raises its error."""
    msg_id = kc.execute(code)
    shown, text, deadline = None, [], time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(1.0, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind in ("display_data", "execute_result") and shown is None:
            shown = time.perf_counter()
        elif kind == "stream":
            text.append(content["text"])
        elif kind == "error":
            raise RuntimeError("\n".join(content["traceback"])[-1500:])
        elif kind == "status" and content["execution_state"] == "idle":
            break
    lines = [x[len("RESULT"):] for x in "".join(text).splitlines() if x.startswith("RESULT")]
    return (shown or time.perf_counter()), lines


def summary_rows(runs: dict) -> list[str]:
    """The README's table: one row per child; times as wall (process CPU) seconds."""
    rows = ["| lab | in | cache | first frame, s | import, s | dashboard shown, s | steps/s (per CPU-s) "
            "| peak RSS, MiB |",
            "|---|---|---|---|---|---|---|---|"]
    for key, r in runs.items():
        preset, mode, cache = key.split("/")
        if "error" in r:
            rows.append(f"| {preset} | {mode} | {cache} | error: {r['error'][:60]} | | | | {r.get('peak_rss_mib')} |")
            continue
        shown = f"{r['dashboard_s']:.1f}" if "dashboard_s" in r else "-"
        rows.append(f"| {preset} | {mode} | {cache} | {r['first_frame_s']:.1f} ({r['first_frame_cpu_s']:.1f}) | "
                    f"{r['import_s']:.1f} ({r['import_cpu_s']:.1f}) | {shown} | "
                    f"{r['steps_per_s']:,.0f} ({r['steps_per_cpu_s']:,.0f}) | {r['peak_rss_mib']:.0f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="timed training per child")
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    parser.add_argument("--caches", nargs="*", default=["cold", "warm"], choices=["cold", "warm"])
    parser.add_argument("--quick", action="store_true", help="2 s of training per child")
    parser.add_argument("--cpus", default="0", help="taskset CPU list of the children ('all': no pinning)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--child", choices=PRESETS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_process(args.child, args.seconds)))
        return
    if args.quick:
        args.seconds = 2.0
    CPUS[:] = [args.cpus]
    prefix, limit = hard_limit_prefix()
    if not prefix:
        limit = (f"NOT enforced ({limit}; no writable cgroup memory controller used): RSS polled every "
                 f"{POLL_S * 1000:.0f} ms, child killed above {LIMIT_MIB} MiB")
    t0 = time.perf_counter()
    out: dict = {"command": " ".join(["python", "benchmarks/bench_binder.py", *sys.argv[1:]]),
                 "cpu": (f"taskset -c {args.cpus} (of this machine's cores, shared with its other load)"
                         if args.cpus != "all" else "all cores, not pinned"), "memory_limit": limit,
                 "env": machine(), "runs": {}}
    for mode in args.modes:
        for preset in args.presets:
            with tempfile.TemporaryDirectory() as cache_home:  # cold: empty; warm: what the cold run left
                if "cold" not in args.caches:
                    run_process(preset, 1.0, cache_home, prefix, 600)  # fill the cache, untimed
                for cache in args.caches:
                    load = os.getloadavg()[0]
                    run = run_kernel if mode == "kernel" else run_process
                    result = run(preset, args.seconds, cache_home, prefix, 600)
                    out["runs"][f"{preset}/{mode}/{cache}"] = {**result, "load_average_1min": round(load, 2)}
                    print(f"{preset}/{mode}/{cache}: {summary_rows({f'{preset}/{mode}/{cache}': result})[-1]}",
                          file=sys.stderr, flush=True)
    out["env"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    out["total_seconds"] = time.perf_counter() - t0
    out["table"] = summary_rows(out["runs"])
    text = json.dumps(out, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


def machine() -> dict:
    """This machine and the library versions (without importing jax into this process)."""
    from importlib.metadata import version

    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "pinnlab"], capture_output=True, text=True).stdout
    return {"git_head": head, "pinnlab_uncommitted": dirty.split("\n")[:-1] if dirty else [],
            "python": platform.python_version(), "jax": version("jax"), "jaxlib": version("jaxlib"),
            "plotly": version("plotly"), "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
            "mem_total_mib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**2)}


if __name__ == "__main__":
    main()
