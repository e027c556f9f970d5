"""Shared helpers of the benchmark scripts: interleaved timing, JSON output, peak RSS of a child.

Timings on a shared machine drift by tens of percent between runs, so every comparison is measured
inside one process with the candidates alternated (A, B, A, B, ...) and summarised by medians.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

KIB = 1024
CHROMIUM = "/usr/bin/chromium"  # Debian's chromium, driven by Python playwright (never `playwright install`)


@contextlib.contextmanager
def busy_loops(n: int):
    """``n`` processes spinning on a core each while the block runs ("a 2-core machine with other load")."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence of numbers."""
    return float(statistics.median(values))


def interleaved(candidates: dict[str, Callable[[], None]], repeats: int) -> tuple[dict, dict]:
    """Wall and process-CPU seconds per call of each candidate, called in turn (A, B, A, B, ...).

    Alternating puts every candidate under the same background load, so ratios of medians are fair
    even when the absolute times drift. CPU seconds (all threads of this process) barely depend on
    how many other processes share the cores, so their ratios are the steadier check on a busy
    machine. Each callable must block until its work is done. Returns ``(wall, cpu)``, each a dict
    of lists.
    """
    wall: dict[str, list[float]] = {name: [] for name in candidates}
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - t0)
    return wall, cpu


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls (compilation)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / KIB**2


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far in MiB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB


def run_child(argv: Sequence[str], timeout: float) -> dict:
    """Run ``argv`` in a fresh process and return the JSON object it prints last, plus its peak RSS.

    The peak comes from ``wait4`` on that very child (``child_peak_rss_mib``), so it counts everything
    the process ever held (imports, compilation, results) and no other process. On a non-zero exit or
    a timeout the dict holds ``error`` with the tail of stderr instead of the child's result.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        status, usage = 0, None
        while usage is None:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                usage = ru
            elif time.monotonic() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                status = -1
            else:
                time.sleep(0.05)
        proc.returncode = 0  # reaped by wait4: stop Popen from waiting on it again
        out.seek(0)
        err.seek(0)
        lines = out.read().decode().strip().splitlines()
        stderr = err.read().decode()
    code = os.waitstatus_to_exitcode(status) if status != -1 else "timeout"
    result: dict = {"child_peak_rss_mib": round(usage.ru_maxrss / KIB, 1)}
    if code != 0 or not lines:
        result["error"] = f"exit {code}: {stderr.strip()[-800:]}"
        return result
    result.update(json.loads(lines[-1]))
    return result


def environment() -> dict:
    """Machine and library versions, recorded with every result."""
    from pinnlab.provenance import machine

    return {**machine(), "load_average_1min": round(os.getloadavg()[0], 2)}


def print_json(obj: dict, compact: bool = False) -> None:
    """Print one JSON object (the scripts' only stdout).

    Floats are rounded to 4 significant digits for reading; ``compact`` instead prints them exact,
    on one line: the form :func:`run_child` reads back from a child.
    """
    print(json.dumps(obj) if compact else json.dumps(_rounded(obj), indent=1))
    sys.stdout.flush()


def _rounded(obj):
    if isinstance(obj, float):
        return float(f"{obj:.4g}")
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    return obj
