"""Issue 12's bad-input and fault probes, re-run: one row per probe, a per-category table of tried / handled.

    PYTHONPATH=. python benchmarks/probe_inputs.py                 # every probe (~5 min on 2 busy cores)
    PYTHONPATH=. python benchmarks/probe_inputs.py --only signals  # one category (a substring of its name)
    PYTHONPATH=. python benchmarks/probe_inputs.py --match seed    # the probes whose description has 'seed'
    PYTHONPATH=. python benchmarks/probe_inputs.py --list          # the table of probes, without running them

Each row of :data:`PROBES` is a category, a description, how it runs (a CLI argv in-process through
``pinnlab.cli.main``, the same argv in a subprocess with a timeout and an address-space limit, or a Python
API call in-process) and the check that decides *handled*. Handled means:

* bad input (CLI): exit code 2, ONE line on stderr that starts ``pinnlab: error:`` and names the bad value
  (the probe's fragments), no traceback, nothing on stdout, nothing written under ``--out``;
* bad input (API): a ``ValueError`` (or a ``TypeError`` that names the argument) with a one-line message
  that names the bad value, raised before anything is allocated; accepting it silently is not handled;
* faults (signals, write failures, concurrent writers, divergence): the exit code of ``pinnlab.cli``'s
  table (0 done, 1 diverged, 2 bad input, 3 write failed, 128 + signal), no traceback, and the output
  directory holds one consistent run (metrics.json and history agree, strict JSON, finite prediction) or
  is left as it was, with no temporary files;
* valid controls (an edge value that must be accepted): exit code 0 and a consistent run.

Prints the table on stdout and writes ``benchmarks/results_probes_cpu.json`` (per probe: category,
description, how, handled, the first line of stderr or of the exception, and why a probe was judged not
handled). Run from the repository root; every probe works in its own temporary directory. Where ``mount``
works (root on Linux) the full and read-only disks are small tmpfs mounts; elsewhere a patched write.

Timing-dependent probes: a signal lands in a phase chosen by time, so on a busy machine it may land in
another phase. Every phase must be handled, so a verdict is never wrong, but the two probes that sweep a
Ctrl-C across the end of ``pinnlab report`` and ``pinnlab ntk-weights`` find their faults (a Ctrl-C
swallowed by JAX's gc callback, a crash at exit) only in some runs; they repeat the signal 4 and 10 times.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import io
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as `python -m pinnlab` does, before JAX is imported
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

GiB = 2**30
SUB_MEMORY = 6 * GiB  # address-space limit of the size probes' children: a failed size check cannot take the machine
RESULTS = ROOT / "benchmarks" / "results_probes_cpu.json"

CONC, SIG, DIV, WRITE = "concurrent writers", "signals", "divergence", "write failures"
SIZE, HIST, API, LAB = "size/seed ranges", "malformed history", "python API", "lab config"
CLI, ENV = "CLI usage", "environment"
CATEGORIES = (CONC, SIG, DIV, WRITE, SIZE, HIST, API, LAB, CLI, ENV)

# A tiny Poisson run (about a second once compiled) and a run slow enough to be signalled mid-training.
TINY = ["train", "--problem", "poisson", "--width", "8", "--steps", "20", "--chunk", "10", "--no-progress",
        "--no-report"]
SLOW = ["train", "--problem", "wave", "--width", "16", "--depth", "2", "--steps", "10000", "--chunk", "50",
        "--no-report"]  # its first progress line (10%) ~8 s after start; ~6 s of training left after it


# -- what a probe returns ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class Verdict:
    handled: bool
    first_line: str  # the first line of stderr, or the exception as "Type: message", or what was returned
    why: str = ""  # for a probe judged not handled: what was wrong
    error: str = ""  # the exception line of a traceback on stderr, where there was one


@dataclasses.dataclass
class Probe:
    category: str
    description: str
    how: str
    run: Callable[[Path], Verdict]


PROBES: list[Probe] = []


def probe(category: str, description: str, how: str, run: Callable[[Path], Verdict]) -> None:
    PROBES.append(Probe(category, description, how, run))


# -- running the CLI -------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Res:
    code: int | None
    stdout: str
    stderr: str
    exc: str = ""  # an exception that escaped cli.main (in-process) as "Type: message"
    timed_out: bool = False
    seconds: float = 0.0


def main_inproc(argv: list[str]) -> Res:
    """``pinnlab.cli.main(argv)`` in this process, stdout and stderr captured (an escaping exception: exit 1)."""
    from pinnlab import cli

    out, err = io.StringIO(), io.StringIO()
    t0, code, exc = time.perf_counter(), None, ""
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except BaseException as e:  # noqa: BLE001 (what escapes is the finding)
            exc, code = _exc(e), 1  # the console script would print the traceback and exit 1
            traceback.print_exc(file=err)
    return Res(code, out.getvalue(), err.getvalue(), exc, False, time.perf_counter() - t0)


LAUNCHER = textwrap.dedent("""\
    import os, resource, sys
    limit = int(os.environ.pop("PROBE_AS_LIMIT", "0") or 0)
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.argv[0] = "pinnlab"
    from pinnlab.__main__ import main
    sys.exit(main())
""")


def _launcher(tmp: Path) -> Path:
    path = tmp / "_launch_pinnlab.py"
    if not path.exists():
        path.write_text(LAUNCHER)
    return path


def _env(extra: dict | None = None, memory: int = SUB_MEMORY) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PROBE_AS_LIMIT": str(memory)}
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def popen(argv: list[str], tmp: Path, env: dict | None = None, memory: int = 0, **kw) -> subprocess.Popen:
    """``python -m pinnlab ARGV`` through a launcher that can set an address-space limit (``memory`` bytes:
    the size probes, so that a size check that fails cannot take the machine), cwd ``tmp``."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([sys.executable, str(_launcher(tmp)), *argv], cwd=tmp, env=_env(env, memory),
                            text=True, **kw)


def main_sub(argv: list[str], tmp: Path, timeout: float = 60, env: dict | None = None, memory: int = 0,
             **kw) -> Res:
    t0 = time.perf_counter()
    proc = popen(argv, tmp, env, memory, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        timed_out = True
    return Res(proc.returncode, out or "", err or "", "", timed_out, time.perf_counter() - t0)


def snippet(code: str, tmp: Path, timeout: float = 60, memory: int = SUB_MEMORY) -> Res:
    """Run Python ``code`` in a subprocess (address space limited); it reports through its last stdout line."""
    path = tmp / "_snippet.py"
    path.write_text("import os, resource, sys\nlimit = int(os.environ.pop('PROBE_AS_LIMIT', '0') or 0)\n"
                    "resource.setrlimit(resource.RLIMIT_AS, (limit, limit)) if limit else None\n" + code)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(path)], cwd=tmp, env=_env(None, memory), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        timed_out = True
    return Res(proc.returncode, out, err, "", timed_out, time.perf_counter() - t0)


# -- reading results -------------------------------------------------------------------------------------------------
def _exc(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:300] if str(e) else type(e).__name__


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


def exception_line(text: str) -> str:
    """The exception line of the last traceback in ``text`` ('' if there is none)."""
    if "Traceback (most recent call last)" not in text:
        return ""
    tail = text[text.rindex("Traceback (most recent call last)"):].splitlines()[1:]
    skip = ("Traceback", "----", "For simplicity", "The above exception", "During handling")
    for line in tail:
        if line.strip() and not line.startswith((" ", "\t")) and not line.startswith(skip):
            return line.strip()[:300]
    return ""


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def _strict_json(path: Path):
    def bare(constant):
        raise ValueError(f"bare {constant} (not JSON)")
    return json.loads(path.read_text(), parse_constant=bare)


def run_dir_issues(out: Path, status: str | None = None, problem: str | None = None, report: bool = True) -> list[str]:
    """What is wrong with ``out`` as the files of ONE run ([] if nothing)."""
    from pinnlab.history import History

    names = _files(out)
    if not names:
        return [f"nothing written to {out.name}"]
    issues = []
    temps = [n for n in names if n.endswith(".tmp") or n.startswith(".")]
    if temps:
        issues.append(f"temporary files left: {temps}")
    missing = {"metrics.json", "history.json", "history.npz"} - set(names)
    if missing:
        return [*issues, f"missing {sorted(missing)} beside {names}"]
    try:
        metrics = _strict_json(out / "metrics.json")
        _strict_json(out / "history.json")
        history = History.load(out)
    except Exception as e:  # noqa: BLE001
        return [*issues, f"unreadable: {_exc(e)}"]
    if metrics.get("status") != history.status:
        issues.append(f"metrics.json says {metrics.get('status')!r}, history {history.status!r}")
    if metrics.get("steps") != history.final["steps"]:
        issues.append(f"metrics.json has {metrics.get('steps')} steps, history {history.final['steps']}")
    if metrics.get("config") != json.loads(json.dumps(history.config)):
        issues.append("metrics.json and history.json have different configs (files of two runs)")
    if history.prediction is not None and not np.all(np.isfinite(history.prediction)):
        issues.append("non-finite prediction saved")
    if status is not None and history.status != status:
        issues.append(f"status {history.status!r}, expected {status!r}")
    if problem is not None and history.config.get("problem") != problem:
        issues.append(f"a {history.config.get('problem')} run, expected {problem}")
    if report and (out / "report.html").exists():
        head = (out / "report.html").read_text(errors="replace")[:2000]
        if f"<title>pinnlab: {history.config.get('problem')}</title>" not in head:
            issues.append("report.html is of another run")
    return issues


# -- checks ----------------------------------------------------------------------------------------------------------
def refused(res: Res, out: Path | None, *fragments: str, code: int = 2) -> Verdict:
    """Bad CLI input: exit ``code``, one line 'pinnlab: error: ...' naming ``fragments``, nothing written."""
    line, error = first_line(res.stderr), exception_line(res.stderr) or res.exc
    v = lambda ok, why="": Verdict(ok, line or error or first_line(res.stdout), why, error)  # noqa: E731
    if res.timed_out:
        return v(False, f"no answer within {res.seconds:.0f} s (killed): it went on to run")
    if error:
        return v(False, f"traceback ({error}), exit {res.code}")
    if res.code != code:
        return v(False, f"exit code {res.code}, expected {code}")
    lines = _lines(res.stderr)
    if len(lines) != 1 or not lines[0].startswith("pinnlab: error: "):
        return v(False, f"{len(lines)} lines on stderr, expected one 'pinnlab: error: ...'")
    missing = [f for f in fragments if f.lower() not in lines[0].lower()]
    if missing:
        return v(False, f"the message does not name {missing}")
    if res.stdout.strip():
        return v(False, "output on stdout")
    if out is not None and _files(out):
        return v(False, f"files written: {_files(out)}")
    return v(True)


def completed(res: Res, out: Path, problem: str | None = None, code: int = 0, status: str = "completed",
              report: bool = True) -> Verdict:
    """A valid run: exit ``code``, no traceback, one consistent run in ``out``."""
    line, error = first_line(res.stderr) or first_line(res.stdout), exception_line(res.stderr) or res.exc
    if res.timed_out:
        return Verdict(False, line, f"no answer within {res.seconds:.0f} s", error)
    if error:
        return Verdict(False, line, f"traceback ({error}), exit {res.code}", error)
    if res.code != code:
        return Verdict(False, line, f"exit code {res.code}, expected {code}", error)
    issues = run_dir_issues(out, status, problem, report)
    return Verdict(not issues, line, "; ".join(issues), error)


def raises(call: Callable[[], object], *fragments: str, types=(ValueError, TypeError)) -> Verdict:
    """Bad API input: ``call()`` raises one of ``types`` with a one-line message naming ``fragments``."""
    try:
        result = call()
    except types as e:
        text, message = _exc(e), str(e)
        if "\n" in message.strip():
            return Verdict(False, text, "the message spans several lines")
        missing = [f for f in fragments if f.lower() not in message.lower()]
        if missing:
            return Verdict(False, text, f"the message does not name {missing}")
        return Verdict(True, text)
    except Exception as e:  # noqa: BLE001
        return Verdict(False, _exc(e), f"{type(e).__name__} from inside, not a ValueError naming the input")
    return Verdict(False, f"accepted: {_short(result)}", "no error: the bad value was accepted")


def _short(value) -> str:
    return " ".join(repr(value).split())[:160]


def with_report(argv: list[str]) -> list[str]:
    return [a for a in argv if a != "--no-report"]


# ====================================================================================================================
# Shared fixtures (built on first use)
# ====================================================================================================================
_CACHE: dict = {}


def small():
    """A Poisson problem with 10 + 12 points, a 1x8 net and its Trainer (params, probe points)."""
    if "small" not in _CACHE:
        from pinnlab import TrainConfig, Trainer, convention, make_problem

        problem = make_problem("poisson", n_b=10, n_r=12)
        net = convention("paper_code", width=8)
        _CACHE["small"] = (problem, net, Trainer(problem, net, TrainConfig(chunk=5, steps=20)))
    return _CACHE["small"]


def base_run() -> Path:
    """A real tiny run's directory (history with spectra), saved once; probes damage copies of it."""
    if "run" not in _CACHE:
        d = Path(tempfile.mkdtemp(prefix="probe-base-"))
        res = main_inproc([*TINY, "--out", str(d / "run")])
        assert res.code == 0, res.stderr
        _CACHE["run"] = d / "run"
    return _CACHE["run"]


def copy_run(tmp: Path, name: str = "run") -> Path:
    dst = tmp / name
    shutil.copytree(base_run(), dst)
    return dst


def can_mount() -> bool:
    if "mount" not in _CACHE:
        d = Path(tempfile.mkdtemp(prefix="probe-mount-"))
        ok = bool(shutil.which("mount")) and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(d)], capture_output=True)
        d.rmdir()
        _CACHE["mount"] = ok
    return _CACHE["mount"]


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount_ro(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)


@contextlib.contextmanager
def patched(obj, name: str, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


# ====================================================================================================================
# size/seed ranges
# ====================================================================================================================
def cli_refusal(category, description, args, *fragments, base=TINY, sub=False, timeout=60, code=2):
    """A probe of bad CLI input: ``base + args --out OUT``, in-process or (``sub``) in a subprocess."""
    argv = [*base, *args]

    def run(tmp: Path) -> Verdict:
        out = tmp / "out"
        full = [*argv, "--out", str(out)] if base and base[0] == "train" else argv
        res = main_sub(full, tmp, timeout, memory=SUB_MEMORY) if sub else main_inproc(full)
        return refused(res, out, *fragments, code=code)

    how = ("subprocess (6 GiB address space): " if sub else "cli.main: ") + "pinnlab " + " ".join(argv)
    probe(category, description, how, run)


def cli_success(category, description, args, problem="poisson", base=TINY, sub=False, timeout=90, code=0,
                status="completed"):
    argv = [*base, *args]

    def run(tmp: Path) -> Verdict:
        out = tmp / "out"
        res = main_sub([*argv, "--out", str(out)], tmp, timeout) if sub else main_inproc([*argv, "--out", str(out)])
        return completed(res, out, problem, code, status)

    probe(category, description, ("subprocess: " if sub else "cli.main: ") + "pinnlab " + " ".join(argv), run)


NOTRAIN = ["train", "--problem", "poisson", "--no-progress", "--no-report"]  # the size of the problem's own net
WAVE = ["train", "--problem", "wave", "--width", "8", "--steps", "20", "--chunk", "10", "--no-progress",
        "--no-report"]

cli_refusal(SIZE, "--steps 3000000000 (past int32)", ["--steps", "3000000000"], "steps", "2,147,483,647", sub=True)
cli_refusal(SIZE, "--steps 2147483648 (2**31)", ["--steps", "2147483648"], "steps", "2,147,483,647", sub=True)
cli_refusal(SIZE, "--seed 2**70", ["--seed", str(2**70)], "seed", "4,294,967,295")
cli_refusal(SIZE, "--seed 4294967296 (2**32)", ["--seed", "4294967296"], "seed", "4,294,967,295")
cli_refusal(SIZE, "--seed -1", ["--seed", "-1"], "seed", "-1")
cli_success(SIZE, "--seed 4294967295 (the largest seed) is accepted", ["--seed", "4294967295"])
cli_refusal(SIZE, "--width 1000000000 (12 GB of parameters)", ["--width", "1000000000"], "needs about",
            base=NOTRAIN, sub=True)
cli_refusal(SIZE, "--width 1e9 (float syntax)", ["--width", "1e9"], "--width", "1e9")
cli_refusal(SIZE, "--width 200000 --depth 3", ["--width", "200000", "--depth", "3"], "needs about", base=NOTRAIN,
            sub=True)
cli_refusal(SIZE, "--width 100000 --depth 64", ["--width", "100000", "--depth", "64"], "needs about", base=NOTRAIN,
            sub=True)
cli_refusal(SIZE, "--depth 1000", ["--depth", "1000"], "depth", "1000")
cli_refusal(SIZE, "--depth 65", ["--depth", "65"], "depth", "64")
cli_refusal(SIZE, "--batch r=10000000000000 (72.8 TiB)", ["--batch", "r=10000000000000"], "n_r", "10,000,000",
            base=NOTRAIN, sub=True)
cli_refusal(SIZE, "--batch r=10000000 (at the point cap; its NTK needs TBs)", ["--batch", "r=10000000"],
            "needs about", base=NOTRAIN, sub=True)
cli_refusal(SIZE, "--batch u=100000000", ["--batch", "u=100000000"], "n_b", "100000000", base=NOTRAIN, sub=True)
cli_refusal(SIZE, "wave --ntk-points 100000000", ["--ntk-points", "100000000"], "n_ntk", base=WAVE)
cli_refusal(SIZE, "wave --ntk-points 300000 (the NTK needs TBs)", ["--ntk-points", "300000"], "needs about",
            base=WAVE, sub=True)
cli_refusal(SIZE, "--a 1e300 (poisson: overflows the exact solution and forcing)", ["--a", "1e300"], "a",
            "past float32")
cli_refusal(SIZE, "--a=-1e300", ["--a=-1e300"], "a", "past float32")
cli_refusal(SIZE, "wave --a 1e300", ["--a", "1e300"], "a", "past float32", base=WAVE)
cli_refusal(SIZE, "--a 1e20 (poisson: the forcing (a pi)^2 overflows float32)", ["--a", "1e20"], "a")
cli_refusal(SIZE, "wave --c 1e300 (c**2 overflows a Python float)", ["--c", "1e300"], "c", base=WAVE)
cli_refusal(SIZE, "wave --c 1e20 (c**2 overflows float32)", ["--c", "1e20"], "c", base=WAVE)
cli_refusal(SIZE, "heat --k 1e300", ["--k", "1e300"], "k",
            base=["train", "--problem", "heat", "--width", "8", "--steps", "20", "--no-progress", "--no-report"])
cli_refusal(SIZE, "convection --beta 1e300", ["--beta", "1e300"], "beta",
            base=["train", "--problem", "convection", "--width", "8", "--steps", "20", "--no-progress",
                  "--no-report"])
cli_refusal(SIZE, "burgers --nu 1e300", ["--nu", "1e300"], "nu",
            base=["train", "--problem", "burgers", "--width", "8", "--steps", "20", "--no-progress",
                  "--no-report"])
cli_refusal(SIZE, "--update-every 3000000000 (past int32)", ["--update-every", "3000000000"], "update-every")
cli_refusal(SIZE, "--ntk-every 3000000000 (past int32)", ["--ntk-every", "3000000000"], "ntk-every")
cli_refusal(SIZE, "--decay-steps 3000000000 (past int32)", ["--decay-steps", "3000000000"], "decay-steps")
cli_success(SIZE, "--eval-every 3000000000 is accepted (evaluates at the ends only)", ["--eval-every", "3000000000"])
cli_refusal(SIZE, "--chunk 3000000000", ["--chunk", "3000000000"], "chunk", "2,147,483,647")
cli_refusal(SIZE, "--spectra-at 3000000000", ["--spectra-at", "3000000000"], "spectra-at", "3000000000")
cli_refusal(SIZE, "--weighting none --initial-weights u=1e40 (inf in float32)",
            ["--weighting", "none", "--initial-weights", "u=1e40"], "initial-weights")
cli_refusal(SIZE, "ntk-weights --seed 2**70", ["--seed", str(2**70)], "seed", "4,294,967,295",
            base=["ntk-weights", "--problem", "poisson", "--width", "8"])
cli_refusal(SIZE, "ntk-weights --width 1000000000", ["--width", "1000000000"], "needs about",
            base=["ntk-weights", "--problem", "poisson"], sub=True)
cli_refusal(SIZE, "lecture --port 70000", ["--port", "70000"], "port", "65535", base=["lecture"])


# ====================================================================================================================
# Python API
# ====================================================================================================================
NAN, INF = float("nan"), float("inf")


def api(description: str, how: str, call: Callable[[], object], *fragments: str, category: str = API,
        types=(ValueError, TypeError)):
    probe(category, description, how, lambda tmp: raises(call, *fragments, types=types))


def _mp(name, **kw):
    from pinnlab import make_problem
    return make_problem(name, **kw)


def _tc(**kw):
    from pinnlab import TrainConfig
    return TrainConfig(**kw)


def _nc(**kw):
    from pinnlab.nets import NetConfig
    return NetConfig(**kw)


for kw, frags in [
    (dict(a=NAN), ("a", "nan")), (dict(a=INF), ("a", "inf")), (dict(c=0.0), ("c", "0")), (dict(c=-1.0), ("c", "-1")),
    (dict(c="2"), ("c", "'2'")), (dict(c=None), ("c", "None")), (dict(c=1e300), ("c",)), (dict(n_u=0), ("n_u", "0")),
    (dict(n_ntk=-5), ("n_ntk", "-5")), (dict(n_r=True), ("n_r", "True")), (dict(n_r=2.5), ("n_r", "2.5")),
    (dict(n_eval=10**8), ("n_eval",)), (dict(n_u="300"), ("n_u",)),
]:
    api(f"make_problem('wave', {', '.join(f'{k}={v!r}' for k, v in kw.items())})",
        f"make_problem('wave', **{kw!r})", lambda kw=kw: _mp("wave", **kw), *frags)
api("make_problem('poisson', a=1e300)", "make_problem('poisson', a=1e300)", lambda: _mp("poisson", a=1e300),
    "a", "past float32")
api("make_problem('poisson', a=1e20): the forcing overflows float32", "make_problem('poisson', a=1e20)",
    lambda: _mp("poisson", a=1e20), "a")
api("make_problem('poisson', n_b=1)", "make_problem('poisson', n_b=1)", lambda: _mp("poisson", n_b=1), "n_b")
api("make_problem('poisson', zzz=1)", "make_problem('poisson', zzz=1)", lambda: _mp("poisson", zzz=1), "zzz")
api("make_problem('nope')", "make_problem('nope')", lambda: _mp("nope"), "nope")
api("make_problem('Poisson') (capitalised)", "make_problem('Poisson')", lambda: _mp("Poisson"), "Poisson", "poisson")
api("make_problem('heat', k=0.0)", "make_problem('heat', k=0.0)", lambda: _mp("heat", k=0.0), "k")
api("make_problem('heat', k=nan)", "make_problem('heat', k=nan)", lambda: _mp("heat", k=NAN), "k", "nan")
api("make_problem('burgers', nu=-1.0)", "make_problem('burgers', nu=-1.0)", lambda: _mp("burgers", nu=-1.0), "nu")
api("make_problem('convection', beta=inf)", "make_problem('convection', beta=inf)",
    lambda: _mp("convection", beta=INF), "beta")
api("make_problem('convection', n_p=0)", "make_problem('convection', n_p=0)", lambda: _mp("convection", n_p=0),
    "n_p")

for kw, frags in [
    (dict(steps=True), ("steps", "True")), (dict(steps=0), ("steps", "0")), (dict(steps=2**31), ("steps",)),
    (dict(steps=1.5), ("steps", "1.5")), (dict(steps="10"), ("steps", "'10'")), (dict(seed="abc"), ("seed", "'abc'")),
    (dict(seed=2**70), ("seed",)), (dict(seed=-1), ("seed", "-1")), (dict(seed=None), ("seed", "None")),
    (dict(seed=1.5), ("seed", "1.5")), (dict(lr=NAN), ("lr", "nan")), (dict(lr=0.0), ("lr", "0")),
    (dict(lr="1e-3"), ("lr", "'1e-3'")), (dict(lr=True), ("lr", "True")), (dict(momentum=1.0), ("momentum", "1")),
    (dict(momentum=-0.5), ("momentum",)), (dict(initial_weights=(NAN, 1.0)), ("initial_weights", "nan")),
    (dict(initial_weights=(0.0, 1.0)), ("initial_weights", "0")), (dict(initial_weights="ab"), ("initial_weights",)),
    (dict(initial_weights=5.0), ("initial_weights",)), (dict(spectra_at=(-1,)), ("spectra_at", "-1")),
    (dict(spectra_at=5), ("spectra_at",)), (dict(spectra_at=(1.5,)), ("spectra_at",)),
    (dict(optimizer="lbfgs"), ("lbfgs",)), (dict(optimizer="SGD"), ("SGD",)), (dict(weighting="magic"), ("magic",)),
    (dict(chunk=0), ("chunk", "0")), (dict(chunk=True), ("chunk", "True")), (dict(update_every=0), ("update_every",)),
    (dict(eval_every=True), ("eval_every", "True")), (dict(ntk_every=-1), ("ntk_every", "-1")),
    (dict(decay_steps=0), ("decay_steps", "0")), (dict(decay_rate=INF), ("decay_rate", "inf")),
    (dict(decay_rate=-1.0), ("decay_rate",)),
]:
    api(f"TrainConfig({', '.join(f'{k}={v!r}' for k, v in kw.items())})", f"TrainConfig(**{kw!r})",
        lambda kw=kw: _tc(**kw), *frags)

for kw, frags in [
    (dict(width=0), ("width", "0")), (dict(width=8.5), ("width", "8.5")), (dict(width=True), ("width", "True")),
    (dict(width="8"), ("width", "'8'")), (dict(depth=0), ("depth", "0")), (dict(depth=1000), ("depth", "1000")),
    (dict(activation="x"), ("activation", "x")), (dict(init="x"), ("init", "x")),
    (dict(standardize="yes"), ("standardize", "yes")),
]:
    api(f"NetConfig({', '.join(f'{k}={v!r}' for k, v in kw.items())})", f"NetConfig(**{kw!r})",
        lambda kw=kw: _nc(**kw), *frags)
api("convention('paper_notes')", "convention('paper_notes')",
    lambda: __import__("pinnlab").convention("paper_notes"), "paper_notes")
api("convention('paper_code', foo=1)", "convention('paper_code', foo=1)",
    lambda: __import__("pinnlab").convention("paper_code", foo=1), "foo")


def _trainer(*, net=None, config=None, params=None, problem=None):
    from pinnlab import TrainConfig, Trainer

    p, n, t = small()
    return Trainer(p if problem is None else problem, n if net is None else net,
                   TrainConfig(chunk=5, steps=10) if config is None else config, params=params)


def _net(**kw):
    from pinnlab import convention
    return convention("paper_code", **{"width": 8, **kw})


api("Trainer given params of a 1x8 net for a 1x9 net", "Trainer(problem, convention(width=9), cfg, params=t8.params)",
    lambda: _trainer(net=_net(width=9), params=small()[2].state.params), "params", "1x9")
api("Trainer given params of a 1x8 net for a 2x8 net", "Trainer(problem, convention(depth=2), cfg, params=t8.params)",
    lambda: _trainer(net=_net(depth=2), params=small()[2].state.params), "params", "2x8")
api("Trainer(params={})", "Trainer(problem, net, cfg, params={})", lambda: _trainer(params={}), "params")
api("Trainer with 3 initial weights for 2 terms", "Trainer(..., TrainConfig(initial_weights=(1, 2, 3)))",
    lambda: _trainer(config=_tc(initial_weights=(1.0, 2.0, 3.0))), "initial_weights", "2")
api("Trainer with initial_weights=()", "Trainer(..., TrainConfig(initial_weights=()))",
    lambda: _trainer(config=_tc(initial_weights=())), "initial_weights")
api("Trainer with initial_weights=(1e40, 1) (inf in float32)", "Trainer(..., TrainConfig(initial_weights=(1e40, 1)))",
    lambda: _trainer(config=_tc(initial_weights=(1e40, 1.0))).state.weights, "initial_weights")
api("Trainer with a 1x10**9 net (memory)", "Trainer(problem, convention(width=10**9), cfg)",
    lambda: _trainer(net=_net(width=10**9)), "needs about")
api("Trainer('poisson', net, cfg): a problem name, not a Problem", "Trainer('poisson', net, cfg)",
    lambda: _trainer(problem="poisson"), "problem")
api("Trainer(problem, 'paper_code', cfg): a convention name, not a NetConfig", "Trainer(problem, 'paper_code', cfg)",
    lambda: _trainer(net="paper_code"), "net")
api("Trainer(problem, net, {'steps': 5}): a dict, not a TrainConfig", "Trainer(problem, net, {'steps': 5})",
    lambda: _trainer(config={"steps": 5}), "config")
api("TrainConfig(update_every=3_000_000_000) then Trainer.run (past int32)",
    "Trainer(..., TrainConfig(update_every=3e9, steps=5)).run()",
    lambda: _trainer(config=_tc(update_every=3_000_000_000, steps=5)).run().status, "update_every")
api("TrainConfig(ntk_every=3_000_000_000) then Trainer.run", "Trainer(..., TrainConfig(ntk_every=3e9, steps=5)).run()",
    lambda: _trainer(config=_tc(ntk_every=3_000_000_000, steps=5)).run().status, "ntk_every")
api("TrainConfig(decay_steps=3_000_000_000) then Trainer.run",
    "Trainer(..., TrainConfig(decay_steps=3e9, steps=5)).run()",
    lambda: _trainer(config=_tc(decay_steps=3_000_000_000, steps=5)).run().status, "decay_steps")
api("TrainConfig(spectra_at=(10,), steps=5): a spectrum past the end is dropped silently",
    "Trainer(..., TrainConfig(spectra_at=(10,), steps=5)).run()",
    lambda: _trainer(config=_tc(spectra_at=(10,), steps=5)).run().spectra_step, "spectra_at", "10")
api("trainer.run(-5)", "Trainer(...).run(-5)", lambda: _trainer().run(-5).status, "steps", "-5")
api("trainer.run(True)", "Trainer(...).run(True)", lambda: _trainer().run(True).status, "steps", "True")
api("trainer.advance(-1)", "Trainer(...).advance(-1)", lambda: _trainer().advance(-1), "-1")


def _run_float_steps(tmp: Path) -> Verdict:
    code = ("from pinnlab import TrainConfig, Trainer, convention, make_problem\n"
            "p = make_problem('poisson', n_b=10, n_r=12)\n"
            "t = Trainer(p, convention('paper_code', width=8), TrainConfig(chunk=5, steps=20))\n"
            "try:\n    t.run(2.5)\n    print('RESULT accepted: trained to step', t.step)\n"
            "except Exception as e:\n    print('RESULT', type(e).__name__ + ':', e)\n")
    res = snippet(code, tmp, timeout=25)
    if res.timed_out:
        return Verdict(False, "(no output: still training after 25 s)", "hangs: the loop never reaches step 2.5")
    line = next((ln[7:] for ln in reversed(res.stdout.splitlines()) if ln.startswith("RESULT ")),
                first_line(res.stderr))
    ok = line.startswith(("ValueError", "TypeError")) and "steps" in line
    return Verdict(ok, line, "" if ok else "not a ValueError naming steps")


probe(API, "trainer.run(2.5): a fractional step count", "subprocess: Trainer(...).run(2.5), 25 s timeout",
      _run_float_steps)


def _set_weights(w):
    t = _trainer()
    t.set_weights(w)
    return t.state.weights


api("trainer.set_weights((nan, 1))", "trainer.set_weights((nan, 1.0))", lambda: _set_weights((NAN, 1.0)), "weights")
api("trainer.set_weights((1e40, 1)) (inf in float32)", "trainer.set_weights((1e40, 1.0))",
    lambda: _set_weights((1e40, 1.0)), "weights")
api("trainer.set_chunk(0)", "trainer.set_chunk(0)", lambda: _trainer().set_chunk(0), "chunk", "0")
api("trainer.set_rule('magic')", "trainer.set_rule('magic')", lambda: _trainer().set_rule("magic"), "magic")


def _ntk(fn_name: str, points, **kw):
    from pinnlab import ntk

    p, n, t = small()
    pts = points(t.probe) if callable(points) else points
    return getattr(ntk, fn_name)(t.apply, t.state.params, p.terms, pts, **kw)


def _jnp_zeros(shape):
    import jax.numpy as jnp
    return jnp.zeros(shape)


api("ntk.kernel with a term's point set dropped", "ntk.kernel(apply, params, terms, points[:1])",
    lambda: _ntk("kernel", lambda p: p[:1]), "2 point sets", "got 1")
api("ntk.traces with a term's point set dropped", "ntk.traces(apply, params, terms, points[:1])",
    lambda: _ntk("traces", lambda p: p[:1]), "2 point sets", "got 1")
api("ntk.kernel with an extra point set", "ntk.kernel(..., [*points, points[0]])",
    lambda: _ntk("kernel", lambda p: [*p, p[0]]), "got 3")
api("ntk.kernel with an empty point set", "ntk.kernel(..., [points[0], zeros((0, 1))])",
    lambda: _ntk("kernel", lambda p: [p[0], _jnp_zeros((0, 1))]), "'r'", "(0, 1)")
api("ntk.kernel with 1-D points", "ntk.kernel(..., [points[0], points[1][:, 0]])",
    lambda: _ntk("kernel", lambda p: [p[0], p[1][:, 0]]), "'r'", "shape")
api("ntk.kernel with 2-D points for a 1-D problem", "ntk.kernel(..., [points[0], zeros((3, 2))])",
    lambda: _ntk("kernel", lambda p: [p[0], _jnp_zeros((3, 2))]), "dimension")
api("ntk.kernel given one array instead of a list per term", "ntk.kernel(..., np.asarray(points[0]))",
    lambda: _ntk("kernel", lambda p: np.asarray(p[0])), "point sets")
api("ntk.kernel(method='bogus')", "ntk.kernel(..., method='bogus')",
    lambda: _ntk("kernel", lambda p: p, method="bogus"), "bogus")
api("ntk.kernel(max_bytes=0)", "ntk.kernel(..., max_bytes=0)", lambda: _ntk("kernel", lambda p: p, max_bytes=0),
    "max_bytes")
api("ntk.kernel(precision='bogus')", "ntk.kernel(..., precision='bogus')",
    lambda: _ntk("kernel", lambda p: p, precision="bogus"), "bogus")


def _ntk_one(fn_name, points, **kw):
    from pinnlab import ntk

    p, n, t = small()
    return getattr(ntk, fn_name)(t.apply, t.state.params, p.terms[0], points, **kw)


api("ntk.block with an empty point set", "ntk.block(apply, params, terms[0], zeros((0, 1)))",
    lambda: _ntk_one("block", _jnp_zeros((0, 1))), "'u'", "(0, 1)")
api("ntk.diagonal with an empty point set", "ntk.diagonal(apply, params, terms[0], zeros((0, 1)))",
    lambda: _ntk_one("diagonal", _jnp_zeros((0, 1))), "'u'", "(0, 1)")
api("ntk.diagonal(batch_size=0)", "ntk.diagonal(apply, params, terms[0], points[0], batch_size=0)",
    lambda: _ntk_one("diagonal", small()[2].probe[0], batch_size=0), "batch_size")
api("ntk.eigenvalues of a non-square matrix", "ntk.eigenvalues(np.ones((3, 2)))",
    lambda: __import__("pinnlab.ntk", fromlist=["x"]).eigenvalues(np.ones((3, 2))), "square")
api("spectrum.top_eigenvalues(k=1000) on 22 points", "spectrum.top_eigenvalues(apply, params, terms, points, k=1000)",
    lambda: __import__("pinnlab.spectrum", fromlist=["x"]).top_eigenvalues(
        small()[2].apply, small()[2].state.params, small()[0].terms, small()[2].probe, k=1000), "k", "1000")
api("History.load of a file, not a directory", "History.load('README.md')",
    lambda: __import__("pinnlab").History.load(str(ROOT / "README.md")), "README.md")
api("History.load of a missing directory", "History.load('/nonexistent/run')",
    lambda: __import__("pinnlab").History.load("/nonexistent/run"), "/nonexistent/run")


# ====================================================================================================================
# lab config
# ====================================================================================================================
def _resolve(text):
    from pinnlab.lab.state import resolve
    return resolve(text)


for text, frags in [
    ("width=100000&depth=3", ("width", "100000")), ("width=8.5", ("width", "8.5")), ("width=1e400", ("width",)),
    ("width=", ("width",)), ("seed=-1", ("seed", "-1")), ("seed=4294967296", ("seed",)), ("lr=nan", ("lr", "nan")),
    ("lr=0", ("lr",)), ("param=inf", ("param", "inf")), ("depth=True", ("depth", "True")), ("depth=33", ("depth",)),
    ("n_b=1", ("n_b",)), ("chunk=0.5", ("chunk", "0.5")), ("chunk=5000", ("chunk",)), ("rule=magic", ("magic",)),
    ("problem=nope", ("nope",)), ("colour=red", ("colour",)), ("depth=2&width", ("width",)),
    ("nopreset", ("nopreset",)), ("budget=-1", ("budget",)), ("update_every=0", ("update_every",)),
]:
    api(f"lab config string {text!r}", f"pinnlab.lab.state.resolve({text!r})", lambda text=text: _resolve(text),
        *frags, category=LAB)


def _lab(text, **kw):
    from pinnlab import Lab
    return Lab(text, **kw)


def _lab_default_param(tmp: Path) -> Verdict:
    from pinnlab.problems import ENTRIES

    state = _resolve("problem=wave&width=8")
    want = ENTRIES["wave"].param_default
    ok = state.param == want
    return Verdict(ok, f"returned: problem=wave, param={state.param}",
                   "" if ok else f"the wave's c is {state.param} (Poisson's default a), not its own default {want}")


probe(LAB, "config string 'problem=wave&width=8' takes the wave's own parameter default (c=2)",
      "resolve('problem=wave&width=8').param", _lab_default_param)
api("Lab('problem=wave&param=1e300') (c**2 overflows)", "Lab('problem=wave&param=1e300&width=8')",
    lambda: _lab("problem=wave&param=1e300&width=8"), "param", category=LAB)
api("Lab('param=1e300') (poisson)", "Lab('param=1e300&width=8')", lambda: _lab("param=1e300&width=8"), "1e+300",
    category=LAB)
api("Lab('width=8', backend='bogus')", "Lab('width=8', backend='bogus')", lambda: _lab("width=8", backend="bogus"),
    "backend", "bogus", category=LAB)
api("Lab('width=8', layout='bogus')", "Lab('width=8', layout='bogus')", lambda: _lab("width=8", layout="bogus"),
    "layout", "bogus", category=LAB)


def _lab_set(**fields):
    lab = _CACHE.get("lab") or _CACHE.setdefault("lab", _lab("width=8&budget=1000"))
    lab.set(**fields)
    return lab.state


api("lab.set(rule='magic')", "Lab('width=8').set(rule='magic')", lambda: _lab_set(rule="magic"), "magic",
    category=LAB)
api("lab.set(lr_scale=0)", "Lab('width=8').set(lr_scale=0)", lambda: _lab_set(lr_scale=0), "lr_scale", category=LAB)
api("lab.set(update_every=0)", "Lab('width=8').set(update_every=0)", lambda: _lab_set(update_every=0),
    "update_every", category=LAB)
api("lab.run(-5)", "Lab('width=8').run(-5)", lambda: (_CACHE.get("lab") or _lab("width=8")).run(-5), "-5",
    category=LAB)


def lab_memory(description: str, text: str):
    code = (f"from pinnlab import Lab\ntry:\n    Lab({text!r})\n    print('RESULT accepted: built the lab')\n"
            "except Exception as e:\n    print('RESULT', type(e).__name__ + ':', str(e).splitlines()[0])\n")

    def run(tmp: Path) -> Verdict:
        res = snippet(code, tmp, timeout=90)
        if res.timed_out:
            return Verdict(False, "(no answer in 90 s)", "went on to build or train")
        line = next((ln[7:] for ln in reversed(res.stdout.splitlines()) if ln.startswith("RESULT ")),
                    exception_line(res.stderr) or first_line(res.stderr) or f"exit {res.code}")
        ok = line.startswith("ValueError") and "needs about" in line
        return Verdict(ok, line, "" if ok else "not a ValueError with the memory estimate")

    probe(LAB, description, f"subprocess (6 GiB address space): Lab({text!r})", run)


lab_memory("Lab('width=8192&depth=32'): in the widgets' ranges, 68 GB of parameters", "width=8192&depth=32")
lab_memory("Lab('n_r=1000000&n_b=1000000'): Poisson's NTK on 2e6 points", "n_r=1000000&n_b=1000000")
lab_memory("Lab('problem=wave&n_ntk=100000'): the wave's NTK on 3e5 points", "problem=wave&n_ntk=100000&width=8")


# ====================================================================================================================
# malformed history files
# ====================================================================================================================
def _meta(d: Path, **changes):
    meta = json.loads((d / "history.json").read_text())
    for k, v in changes.items():
        if v is ...:
            del meta[k]
        else:
            meta[k] = v
    (d / "history.json").write_text(json.dumps(meta))


def _rewrite(d: Path, members: dict[str, bytes | None], compression=zipfile.ZIP_DEFLATED) -> None:
    with zipfile.ZipFile(d / "history.npz") as z:
        old = {i.filename: z.read(i) for i in z.infolist()}
    new = {**old, **{f"{k}.npy": v for k, v in members.items()}}
    with zipfile.ZipFile(d / "history.npz", "w") as z:
        for name, data in new.items():
            if data is not None:
                z.writestr(name, data, compress_type=compression)


def _npy(a) -> bytes:
    b = io.BytesIO()
    np.save(b, a, allow_pickle=True)
    return b.getvalue()


def _crafted(shape, descr="<f8", data=b"\0" * 16) -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": descr, "fortran_order": False, "shape": shape})
    return b.getvalue() + data


def _flip(fraction: float):
    def damage(d: Path):
        data = bytearray((d / "history.npz").read_bytes())
        data[int(len(data) * fraction)] ^= 0xFF
        (d / "history.npz").write_bytes(bytes(data))
    return damage


class _Boom:
    """Unpickling this creates a file: the proof that a history's arrays were unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def history_probe(description: str, damage: Callable[[Path], None], file: str | None, *fragments: str,
                  loads: bool = False, max_seconds: float = 5.0, max_mib: float = 50.0):
    """Damage a copy of a real run; History.load must raise one HistoryFileError naming ``file`` and
    ``fragments`` (``loads``: must load instead), quickly and without reading much."""
    def run(tmp: Path) -> Verdict:
        from pinnlab.history import History, HistoryFileError

        d = copy_run(tmp)
        damage(d)
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            history = History.load(d)
            error = None
        except Exception as e:  # noqa: BLE001
            error = e
        seconds, peak = time.perf_counter() - t0, tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        slow = [] if seconds < max_seconds else [f"took {seconds:.1f} s"]
        big = [] if peak < max_mib else [f"allocated {peak:.0f} MiB"]
        if loads:
            if error is not None:
                return Verdict(False, _exc(error), f"a readable history was refused ({type(error).__name__})")
            return Verdict(not slow and not big, f"loaded: status {history.status!r}", "; ".join(slow + big))
        if error is None:
            return Verdict(False, f"loaded: status {history.status!r}", "the damage was not noticed")
        text, message = _exc(error), str(error)
        why = []
        if not isinstance(error, HistoryFileError):
            why.append(f"{type(error).__name__}, not a HistoryFileError")
        if "\n" in message:
            why.append("several lines")
        if file and file not in message:
            why.append(f"does not name {file}")
        missing = [f for f in fragments if f.lower() not in message.lower()]
        if missing:
            why.append(f"does not say {missing}")
        return Verdict(not (why or slow or big), text, "; ".join(why + slow + big))

    probe(HIST, description, "History.load(copy of a real run, damaged)", run)


J, Z = "history.json", "history.npz"
history_probe("no history.json", lambda d: (d / J).unlink(), None, "no history.json")
history_probe("no history.npz", lambda d: (d / Z).unlink(), None, "no history.npz")
history_probe("history.json is a directory", lambda d: ((d / J).unlink(), (d / J).mkdir()), None, "history.json")
history_probe("history.npz is a directory", lambda d: ((d / Z).unlink(), (d / Z).mkdir()), None, "history.npz")
history_probe("empty history.json", lambda d: (d / J).write_text(""), J, "empty")
history_probe("history.json truncated mid-object", lambda d: (d / J).write_text((d / J).read_text()[:40]), J,
              "not valid JSON")
history_probe("history.json not UTF-8", lambda d: (d / J).write_bytes(b'{"format": "\xff"}'), J, "UTF-8")
history_probe("history.json nested 200,000 deep", lambda d: (d / J).write_text("[" * 200_000), J)
history_probe("history.json is a list", lambda d: (d / J).write_text("[1, 2]"), J, "list")
history_probe("history.json is a number", lambda d: (d / J).write_text("3.5"), J, "number")
history_probe("history.json format from the future", lambda d: _meta(d, format="pinnlab-history/99"), J, "format")
history_probe("history.json without 'config'", lambda d: _meta(d, config=...), J, "config")
history_probe("history.json 'terms' a string", lambda d: _meta(d, terms="ur"), J, "terms")
history_probe("history.json 'grid_shape' [2, 0]", lambda d: _meta(d, grid_shape=[2, 0]), J, "grid_shape")
history_probe("history.json 'seconds' a string", lambda d: _meta(d, seconds="fast"), J, "seconds")
history_probe("history.json 'events' an object", lambda d: _meta(d, events={}), J, "events")
history_probe("history.json with bare NaN (older pinnlab) still loads", lambda d: _meta(d, seconds=NAN), None,
              loads=True)
history_probe("history.json terms disagree with the arrays", lambda d: _meta(d, terms=["u", "ut", "r"]), Z, "terms")
history_probe("history.json grid_shape disagrees with the grid", lambda d: _meta(d, grid_shape=[7]), Z, "grid")
history_probe("empty history.npz", lambda d: (d / Z).write_bytes(b""), Z, "npz")
history_probe("history.npz truncated to half", lambda d: (d / Z).write_bytes((d / Z).read_bytes()[: len(
    (d / Z).read_bytes()) // 2]), Z, "truncated")
history_probe("history.npz is a pickle", lambda d: (d / Z).write_bytes(pickle.dumps({"steps": [1]})), Z)
history_probe("history.npz: a byte flipped at 25%", _flip(0.25), Z)
history_probe("history.npz: a byte flipped at 50%", _flip(0.5), Z)
history_probe("history.npz: a byte flipped at 75%", _flip(0.75), Z)
history_probe("history.npz: a byte flipped in the central directory", _flip(0.995), Z)
history_probe("history.npz: 'losses' of the wrong shape", lambda d: _rewrite(d, {"losses": _npy(np.ones((3, 5)))}),
              Z, "losses", "shape")
history_probe("history.npz: 'steps' as floats", lambda d: _rewrite(d, {"steps": _npy(np.arange(20.0))}), Z,
              "steps", "dtype")
history_probe("history.npz: 'rel_l2' as strings", lambda d: _rewrite(d, {"rel_l2": _npy(np.array(["1", "2"]))}), Z,
              "rel_l2")
history_probe("history.npz: 'losses' missing", lambda d: _rewrite(d, {"losses": None}), Z, "losses")
history_probe("history.npz: member's data shorter than its header",
              lambda d: _rewrite(d, {"exact": _npy(np.ones(1000, np.float32))[:-8]}), Z, "exact")
history_probe("history.npz: an 8 TB array header", lambda d: _rewrite(d, {"rel_l2": _crafted((10**12,))}), Z,
              "rel_l2", "TiB")


def _pickled_object(d: Path):
    _rewrite(d, {"exact": _npy(np.array([_Boom(str(d / "UNPICKLED")), 1], dtype=object))})


def _never_unpickled(tmp: Path) -> Verdict:
    from pinnlab.history import History

    d = copy_run(tmp)
    _pickled_object(d)
    try:
        History.load(d)
        line = "loaded"
    except Exception as e:  # noqa: BLE001
        line = _exc(e)
    ok = not (d / "UNPICKLED").exists() and "object" in line
    return Verdict(ok, line, "" if ok else "the pickled payload ran" if (d / "UNPICKLED").exists() else
                   "not refused as an object array")


probe(HIST, "history.npz: an object array with a pickle payload is refused, never unpickled",
      "History.load(run with exact = object array whose pickle opens a file)", _never_unpickled)


def _big_unknown_member(d: Path):
    """A 64 MiB member under a key a history does not have (the 5.4 GB case, smaller): never read."""
    with zipfile.ZipFile(d / Z, "a", compression=zipfile.ZIP_STORED) as z:
        z.writestr("old_giant.npy", _crafted((8 * 2**20,), data=b"\1" * (64 * 2**20)))


history_probe("history.npz: a 64 MiB member under an unknown key is not read", _big_unknown_member, None, loads=True,
              max_seconds=2.0, max_mib=20.0)
history_probe("history.npz: an unknown key declaring 8 TB is not read",
              lambda d: _rewrite(d, {"junk": _crafted((10**12,))}), None, loads=True)


def _dev_zero(tmp: Path) -> Verdict:
    d = copy_run(tmp)
    (d / J).unlink()
    (d / J).symlink_to("/dev/zero")
    code = (f"from pinnlab.history import History\ntry:\n    History.load({str(d)!r})\n    print('RESULT loaded')\n"
            "except Exception as e:\n    print('RESULT', type(e).__name__ + ':', str(e).splitlines()[0])\n")
    res = snippet(code, tmp, timeout=30, memory=2 * GiB)
    if res.timed_out:
        return Verdict(False, "(no answer in 30 s)", "reads /dev/zero forever")
    line = next((ln[7:] for ln in reversed(res.stdout.splitlines()) if ln.startswith("RESULT ")),
                exception_line(res.stderr) or first_line(res.stderr) or f"exit {res.code}")
    ok = line.startswith("HistoryFileError") and "history.json" in line
    return Verdict(ok, line, "" if ok else "not a one-line HistoryFileError (reads the endless file)")


probe(HIST, "history.json is a symlink to /dev/zero (an endless file)", "subprocess (2 GiB): History.load", _dev_zero)


def report_probe(description: str, damage: Callable[[Path], None] | None, *fragments: str, ok_code: int = 2):
    def run(tmp: Path) -> Verdict:
        d = copy_run(tmp)
        if damage:
            damage(d)
        before = _files(d)
        res = main_inproc(["report", str(d)])
        if ok_code == 2:
            v = refused(res, None, *fragments)
            if v.handled and _files(d) != before:
                return Verdict(False, v.first_line, f"wrote {sorted(set(_files(d)) - set(before))}")
            return v
        error = exception_line(res.stderr) or res.exc
        ok = res.code == 0 and not error and (d / "report.html").exists()
        return Verdict(ok, first_line(res.stderr) or first_line(res.stdout),
                       "" if ok else f"exit {res.code} {error}", error)

    probe(HIST, description, "cli.main: pinnlab report RUN (damaged)", run)


report_probe("pinnlab report of a truncated history.npz", _flip(0.5), "cannot load a history")
report_probe("pinnlab report of a history.json that is a list", lambda d: (d / J).write_text("[1]"),
             "cannot load a history", "list")
report_probe("pinnlab report of a run without history.npz", lambda d: (d / Z).unlink(), "history.npz")
report_probe("pinnlab report of a history whose config is {} still renders", lambda d: _meta(d, config={}), ok_code=0)
report_probe("pinnlab report of a history with an unknown event still renders",
             lambda d: _meta(d, events=[{"step": 2, "field": "zzz", "value": [1, 2]}]), ok_code=0)


def _empty_history_report(tmp: Path) -> Verdict:
    from pinnlab.history import History

    d = copy_run(tmp)
    h = History.load(d)
    for name in ("steps", "losses", "weights", "traces", "eval_step", "rel_l2", "param_drift", "spectra_step",
                 "spectra", "ntk_drift"):
        setattr(h, name, [])
    h.prediction, h.status = None, "interrupted"
    h.save(d)
    res = main_inproc(["report", str(d)])
    error = exception_line(res.stderr) or res.exc
    ok = res.code == 0 and not error
    return Verdict(ok, first_line(res.stderr) or first_line(res.stdout), "" if ok else f"exit {res.code} {error}",
                   error)


probe(HIST, "pinnlab report of a run interrupted before its first step (0 rows)",
      "cli.main: pinnlab report RUN (history with no rows)", _empty_history_report)


# ====================================================================================================================
# write failures
# ====================================================================================================================
def _file_in_the_way(tmp: Path) -> Verdict:
    (tmp / "afile").write_text("x")
    return refused(main_inproc([*TINY, "--out", str(tmp / "afile")]), None, "cannot write to --out", "afile")


def _below_a_file(tmp: Path) -> Verdict:
    (tmp / "afile").write_text("x")
    return refused(main_inproc([*TINY, "--out", str(tmp / "afile" / "run")]), None, "cannot write to --out")


probe(WRITE, "--out is an existing file", "cli.main: pinnlab train ... --out FILE", _file_in_the_way)
probe(WRITE, "--out below a file", "cli.main: pinnlab train ... --out FILE/run", _below_a_file)
probe(WRITE, "--out under /proc (cannot create)", "cli.main: pinnlab train ... --out /proc/pinnlab-probe",
      lambda tmp: refused(main_inproc([*TINY, "--out", "/proc/pinnlab-probe"]), None, "cannot write to --out"))
probe(WRITE, "--out with a 300-character name", "cli.main: pinnlab train ... --out x*300",
      lambda tmp: refused(main_inproc([*TINY, "--out", str(tmp / ("x" * 300))]), None, "cannot write to --out"))


def _read_only_out(tmp: Path) -> Verdict:
    if can_mount():
        with tmpfs(tmp / "ro", "1m") as mnt:
            remount_ro(mnt)
            return refused(main_inproc([*TINY, "--out", str(mnt / "run")]), None, "cannot write to --out",
                           "read-only")
    from pinnlab import files

    def ro(directory, name):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    with patched(files, "_temporary", ro):
        return refused(main_inproc([*TINY, "--out", str(tmp / "run")]), tmp / "run", "cannot write to --out",
                       "read-only")


probe(WRITE, "--out on a read-only file system", "cli.main: pinnlab train ... --out RO (tmpfs remounted ro, "
      "else a patched write)", _read_only_out)


def write_failed(res: Res, out: Path, before: dict[str, bytes], *fragments: str) -> Verdict:
    """Exit 3, one line naming the failure, no temporaries, the directory exactly as before."""
    lines, error = _lines(res.stderr), exception_line(res.stderr) or res.exc
    line = lines[0] if lines else first_line(res.stdout)
    if error:
        return Verdict(False, line, f"traceback ({error}), exit {res.code}", error)
    if res.code != 3:
        return Verdict(False, line, f"exit code {res.code}, expected 3 (write failed)")
    if len(lines) != 1:
        return Verdict(False, line, f"{len(lines)} lines on stderr, expected 1")
    missing = [f for f in fragments if f.lower() not in lines[0].lower()]
    if missing:
        return Verdict(False, line, f"the message does not name {missing}")
    after = {p.name: p.read_bytes() for p in out.iterdir()} if out.is_dir() else {}
    if after != before:
        extra = sorted(set(after) - set(before))
        changed = sorted(k for k in before if after.get(k) != before[k])
        return Verdict(False, line, f"the directory changed: new {extra}, replaced or lost {changed}")
    return Verdict(True, line)


def _full_tmpfs(size: str, args: list[str], fill_old: bool = False):
    def run(tmp: Path) -> Verdict:
        with tmpfs(tmp / "disk", size) as mnt:
            out = mnt / "run"
            if fill_old:  # an older run first, then fill the disk up
                assert main_inproc([*TINY, "--out", str(out)]).code == 0
                fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * 65536)
                os.close(fd)
            before = {p.name: p.read_bytes() for p in out.iterdir()} if out.is_dir() else {}
            argv = with_report(TINY) if "--report" in args else TINY
            res = main_inproc([*argv, *[a for a in args if a != "--report"], "--out", str(out)])
            return write_failed(res, out, before, "No space left on device")
    return run


def _patched_write_error(target: str, err: int, old_run: bool = True):
    def run(tmp: Path) -> Verdict:
        from pinnlab import files

        out = tmp / "run"
        if old_run:
            assert main_inproc([*TINY, "--out", str(out)]).code == 0
        before = {p.name: p.read_bytes() for p in out.iterdir()} if out.is_dir() else {}
        fill = files._fill

        def failing(path, content):
            if f".{target}." in Path(path).name:
                raise OSError(err, os.strerror(err))
            fill(path, content)

        with patched(files, "_fill", failing):
            res = main_inproc([*with_report(TINY), "--out", str(out)])
        return write_failed(res, out, before, os.strerror(err), target)
    return run


if True:  # the full-disk probes: a real tmpfs where one can be mounted, else the patched write
    def _full_disk(description, size, args, fill_old=False, target="history.npz"):
        def run(tmp: Path) -> Verdict:
            if can_mount():
                return _full_tmpfs(size, args, fill_old)(tmp)
            return _patched_write_error(target, errno.ENOSPC, old_run=fill_old)(tmp)
        probe(WRITE, description, f"cli.main: pinnlab train ... --out RUN on a {size} tmpfs (else a patched write)",
              run)

    _full_disk("disk full: an 8 KiB disk, no room for history.npz", "8k", [])
    _full_disk("disk full: room for the history, not for report.html (256 KiB)", "256k", ["--report"],
               target="report.html")
    _full_disk("disk full over an older run: the old run is kept intact", "6m", ["--report"], fill_old=True)

probe(WRITE, "patched write: ENOSPC writing history.npz over an older run keeps it",
      "cli.main with pinnlab.files._fill raising ENOSPC for history.npz", _patched_write_error("history.npz",
                                                                                                 errno.ENOSPC))
probe(WRITE, "patched write: EIO writing metrics.json", "cli.main with _fill raising EIO for metrics.json",
      _patched_write_error("metrics.json", errno.EIO))
probe(WRITE, "patched write: EDQUOT (quota) writing report.html", "cli.main with _fill raising EDQUOT for report.html",
      _patched_write_error("report.html", errno.EDQUOT))


def _rename_fails(tmp: Path) -> Verdict:
    from pinnlab import files

    out = tmp / "run"
    assert main_inproc([*TINY, "--out", str(out)]).code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = os.replace, []

    def replace(src, dst):
        if Path(dst).parent == out:  # only the run's own renames (not, say, the compilation cache's)
            calls.append(dst)
        if len(calls) == 2 and Path(dst).parent == out:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(src, dst)

    with patched(files.os, "replace", replace):
        res = main_inproc([*TINY, "--seed", "7", "--out", str(out)])
    return write_failed(res, out, before, "Input/output error")


probe(WRITE, "a rename fails half-way through the set (EIO on the 2nd rename)",
      "cli.main with os.replace raising EIO on its 2nd call", _rename_fails)


def _dir_in_the_way(name: str):
    def run(tmp: Path) -> Verdict:
        out = tmp / "run"
        (out / name).mkdir(parents=True)
        res = main_inproc([*(with_report(TINY) if name == "report.html" else TINY), "--out", str(out)])
        lines, error = _lines(res.stderr), exception_line(res.stderr) or res.exc
        ok = res.code == 3 and not error and len(lines) == 1 and "cannot write" in lines[0] and \
            _files(out) == [name]
        return Verdict(ok, lines[0] if lines else "", "" if ok else f"exit {res.code}, {len(lines)} lines, "
                       f"files {_files(out)} {error}", error)
    return run


probe(WRITE, "a directory named metrics.json in the way", "cli.main: mkdir OUT/metrics.json; pinnlab train",
      _dir_in_the_way("metrics.json"))
probe(WRITE, "a directory named report.html in the way", "cli.main: mkdir OUT/report.html; pinnlab train",
      _dir_in_the_way("report.html"))


def _report_write(where: Callable[[Path, Path], str], code: int = 3):
    def run(tmp: Path) -> Verdict:
        d = copy_run(tmp)
        target = where(tmp, d)
        res = main_inproc(["report", str(d), "--out", target])
        lines, error = _lines(res.stderr), exception_line(res.stderr) or res.exc
        line = lines[0] if lines else ""
        if error:
            return Verdict(False, line, f"traceback ({error}), exit {res.code}", error)
        ok = res.code in (2, 3) and len(lines) == 1 and line.startswith("pinnlab: error: ")
        return Verdict(ok, line, "" if ok else f"exit {res.code}, {len(lines)} lines")
    return run


probe(WRITE, "pinnlab report --out in an uncreatable directory", "cli.main: pinnlab report RUN --out "
      "/proc/pinnlab-probe/report.html", _report_write(lambda tmp, d: "/proc/pinnlab-probe/report.html"))
probe(WRITE, "pinnlab report --out an existing directory", "cli.main: pinnlab report RUN --out RUN",
      _report_write(lambda tmp, d: str(d)))


def _report_read_only(tmp: Path) -> Verdict:
    if not can_mount():
        return Verdict(False, "(skipped: cannot mount a tmpfs)", "not run")
    with tmpfs(tmp / "disk", "8m") as mnt:
        d = mnt / "run"
        shutil.copytree(base_run(), d)
        remount_ro(mnt)
        res = main_inproc(["report", str(d)])
    lines, error = _lines(res.stderr), exception_line(res.stderr) or res.exc
    line = lines[0] if lines else ""
    if error:
        return Verdict(False, line, f"traceback ({error}), exit {res.code}", error)
    ok = res.code in (2, 3) and len(lines) == 1 and "read-only" in line.lower()
    return Verdict(ok, line, "" if ok else f"exit {res.code}, {len(lines)} lines")


probe(WRITE, "pinnlab report of a run on a read-only disk (a colleague's results)",
      "cli.main: pinnlab report RUN (RUN on a tmpfs remounted ro)", _report_read_only)
probe(WRITE, "pinnlab reproduce --out an existing file", "cli.main: pinnlab reproduce fig1 --scale smoke --out FILE",
      lambda tmp: ((tmp / "f").write_text("x"), refused(main_inproc(
          ["reproduce", "fig1", "--scale", "smoke", "--no-progress", "--out", str(tmp / "f")]), None,
          "cannot write to --out"))[1])


def _modes(tmp: Path) -> Verdict:
    out = tmp / "run"
    res = main_inproc([*TINY, "--out", str(out)])
    umask = os.umask(0)
    os.umask(umask)
    want = 0o666 & ~umask
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    bad = {k: oct(v) for k, v in modes.items() if v != want}
    return Verdict(res.code == 0 and not bad, f"modes {sorted(set(oct(v) for v in modes.values()))}",
                   f"files are {sorted(set(bad.values()))}, not {oct(want)} (umask {oct(umask)}): others cannot "
                   "read them" if bad else "")


probe(WRITE, "output files get the umask's permissions (0644 under umask 022)", "cli.main: pinnlab train; stat",
      _modes)


# ====================================================================================================================
# concurrent writers on one --out
# ====================================================================================================================
def _two_trains(problems=("poisson", "poisson")):
    """Two runs on one --out started together: one is refused at once (or they run one after the other)."""
    def run(tmp: Path) -> Verdict:
        out = tmp / "run"
        argv = lambda problem, seed: ["train", "--problem", problem, "--width", "8", "--steps", "20000",  # noqa
                                      "--chunk", "100", "--no-report", "--seed", str(seed), "--out", str(out)]
        procs = [popen(argv(problems[0], 1), tmp), popen(argv(problems[1], 2), tmp)]
        results = []
        for p in procs:
            o, e = p.communicate(timeout=180)
            results.append(Res(p.returncode, o, e))
        codes = sorted(r.code for r in results)
        errors = [exception_line(r.stderr) for r in results if exception_line(r.stderr)]
        busy = [r for r in results if r.code == 2]
        line = first_line(busy[0].stderr) if busy else f"exit codes {codes}"
        why = []
        if errors:
            why.append(f"traceback {errors[0]}")
        if codes not in ([0, 2], [0, 0]):
            why.append(f"exit codes {codes}")
        if busy and "another pinnlab run is writing" not in busy[0].stderr:
            why.append("the refused run does not say another run holds --out")
        why += run_dir_issues(out, "completed")
        if busy and not why:  # the files are the winner's
            winner = 1 if results[0].code == 0 else 2
            seed = json.loads((out / "metrics.json").read_text())["config"]["train"]["seed"]
            if seed != winner:
                why.append(f"files of seed {seed}, but the run with seed {winner} won")
        return Verdict(not why, line, "; ".join(why))
    return run


def _second_run_refused(tmp: Path) -> Verdict:
    """A trains (wave); B (poisson) starts on its --out and must be refused at once, changing nothing."""
    out = tmp / "run"
    a = popen([*SLOW, "--seed", "1", "--out", str(out)], tmp)
    if not _wait_for(a, lambda line: line.startswith("["), 150):
        a.kill()
        return Verdict(False, first_line(a._probe_lines), "the first run never started training")
    b = main_sub([*TINY, "--seed", "2", "--out", str(out)], tmp, 60)
    a.send_signal(signal.SIGTERM)
    _, err_a = a.communicate(timeout=120)
    v = refused(b, None, "another pinnlab run is writing", str(out))
    why = [] if v.handled else [f"second run: {v.why}"]
    if a.returncode not in (0, 143) or exception_line(err_a):  # 0: it finished before the SIGTERM
        why.append(f"first run: exit {a.returncode} {exception_line(err_a)}")
    why += run_dir_issues(out, "completed" if a.returncode == 0 else "interrupted", "wave")
    return Verdict(not why, v.first_line, "; ".join(why))


def _wait_for(proc: subprocess.Popen, test: Callable[[str], bool], timeout: float) -> bool:
    """Read ``proc``'s stderr until a line passes ``test`` (kept in ``proc._probe_lines``)."""
    lines = getattr(proc, "_probe_lines", "")
    deadline = time.monotonic() + timeout
    seen = False
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines += line
        if line and test(line):
            seen = True
            break
        if not line and proc.poll() is not None:
            break
    proc._probe_lines = lines  # type: ignore[attr-defined]
    return seen


probe(CONC, "two pinnlab train on one --out, started together", "2 subprocesses: pinnlab train --seed 1|2 --out SAME",
      _two_trains())
probe(CONC, "a second pinnlab train on an --out that a run is training into", "subprocess A trains (wave); "
      "subprocess B (poisson) starts on its --out; then SIGTERM to A", _second_run_refused)
probe(CONC, "a poisson and a wave run on one --out, started together", "2 subprocesses: poisson | wave --out SAME",
      _two_trains(("poisson", "wave")))


def _stale_report(tmp: Path) -> Verdict:
    out = tmp / "run"
    assert main_inproc([*with_report(TINY), "--out", str(out)]).code == 0  # poisson, with report.html
    res = main_inproc([*WAVE, "--out", str(out)])  # wave, --no-report
    issues = run_dir_issues(out, "completed", "wave")
    line = first_line(res.stderr) or f"exit {res.code}; files {_files(out)}"
    return Verdict(res.code == 0 and not issues, line, "; ".join(issues))


probe(CONC, "a rerun on one --out with --no-report leaves no report.html of the old run",
      "cli.main: pinnlab train poisson --out D; pinnlab train wave --no-report --out D", _stale_report)


def _after_sigkill(tmp: Path) -> Verdict:
    out = tmp / "run"
    a = popen([*SLOW, "--out", str(out)], tmp)
    if not _wait_for(a, lambda line: line.startswith("["), 120):
        a.kill()
        return Verdict(False, first_line(a._probe_lines), "the first run never started training")
    a.kill()
    a.communicate()
    res = main_inproc([*TINY, "--out", str(out)])
    return completed(res, out, "poisson")


probe(CONC, "a run killed with SIGKILL leaves no stale lock: the next run on its --out works",
      "subprocess SIGKILLed mid-training; then cli.main on the same --out", _after_sigkill)


def _report_while_training(tmp: Path) -> Verdict:
    out = tmp / "run"
    assert main_inproc([*TINY, "--out", str(out)]).code == 0
    a = popen([*SLOW, "--out", str(out)], tmp)
    if not _wait_for(a, lambda line: line.startswith("["), 120):
        a.kill()
        return Verdict(False, first_line(a._probe_lines), "the run never started training")
    res = main_inproc(["report", str(out), "--out", str(tmp / "report.html")])
    a.send_signal(signal.SIGTERM)
    a.communicate(timeout=120)
    error = exception_line(res.stderr) or res.exc
    ok = res.code in (0, 2) and not error and len(_lines(res.stderr)) <= 1
    issues = run_dir_issues(out, "interrupted", "wave")
    return Verdict(ok and not issues, first_line(res.stderr) or first_line(res.stdout),
                   "; ".join(([] if ok else [f"report exit {res.code} {error}"]) + issues), error)


probe(CONC, "pinnlab report on a directory a run is training into", "subprocess trains into D; cli.main report D",
      _report_while_training)


def _threads(tmp: Path) -> Verdict:
    from pinnlab import files

    errors: list[str] = []
    stop = threading.Event()

    def writer(tag: int):
        data = np.full(20_000, tag, np.float64)
        try:
            for _ in range(60):
                files.write_files(tmp, {"a.npz": lambda f: np.savez_compressed(f, x=data),
                                        "a.json": files.to_json({"tag": tag})})
        except Exception as e:  # noqa: BLE001
            errors.append(_exc(e))

    def reader():
        while not stop.is_set():
            try:
                with np.load(tmp / "a.npz") as z:
                    x = z["x"]
                if len(np.unique(x)) != 1:
                    errors.append("a mixed array")
                json.loads((tmp / "a.json").read_text())
            except FileNotFoundError:
                pass
            except Exception as e:  # noqa: BLE001
                errors.append(_exc(e))

    ts = [threading.Thread(target=writer, args=(t,)) for t in (1, 2)] + [threading.Thread(target=reader)]
    for t in ts:
        t.start()
    for t in ts[:2]:
        t.join()
    stop.set()
    ts[2].join()
    left = sorted(set(_files(tmp)) - {"a.json", "a.npz"})
    why = ([f"{len(errors)} errors, first: {errors[0]}"] if errors else []) + ([f"left {left}"] if left else [])
    return Verdict(not why, f"{len(errors)} errors in 120 paired saves", "; ".join(why))


probe(CONC, "two threads saving one file set 60 times each, a reader beside them",
      "pinnlab.files.write_files from 2 threads + np.load in a 3rd", _threads)


def _probe_files(tmp: Path) -> Verdict:
    from pinnlab import files

    errors: list[str] = []

    def go():
        try:
            for _ in range(50):
                files.check_writable(tmp)
        except Exception as e:  # noqa: BLE001
            errors.append(_exc(e))

    ts = [threading.Thread(target=go) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    left = _files(tmp)
    why = ([f"{len(errors)} false 'cannot write': {errors[0]}"] if errors else []) + ([f"left {left}"] if left else [])
    return Verdict(not why, f"{len(errors)} failures in 400 simultaneous write checks", "; ".join(why))


probe(CONC, "simultaneous write checks of one --out never fail falsely", "pinnlab.files.check_writable from 8 threads",
      _probe_files)


def _history_saves(tmp: Path) -> Verdict:
    from pinnlab.history import History

    runs = [History.load(base_run()), History.load(base_run())]
    runs[1].status, runs[1].message = "interrupted", "second writer"
    runs[1].prediction = runs[0].prediction + 1.0
    errors: list[str] = []
    mixed = [0, 0]  # loads that saw history.json of one save beside history.npz of the other, loads
    stop = threading.Event()

    def writer(h):
        try:
            for _ in range(30):
                h.save(tmp / "run")
        except Exception as e:  # noqa: BLE001
            errors.append(_exc(e))

    def reader():
        while not stop.is_set():
            try:
                h = History.load(tmp / "run")
                mixed[1] += 1
                if (h.status == "interrupted") != bool(np.allclose(h.prediction, runs[1].prediction)):
                    mixed[0] += 1
            except Exception as e:  # noqa: BLE001
                if "no history" not in str(e) and "no such directory" not in str(e):
                    errors.append(_exc(e))

    ts = [threading.Thread(target=writer, args=(h,)) for h in runs] + [threading.Thread(target=reader)]
    for t in ts:
        t.start()
    for t in ts[:2]:
        t.join()
    stop.set()
    ts[2].join()
    final = History.load(tmp / "run")
    if (final.status == "interrupted") != bool(np.allclose(final.prediction, runs[1].prediction)):
        errors.append("the final files are history.json of one save and history.npz of the other")
    return Verdict(not errors, f"{len(errors)} errors in 60 concurrent History.save; {mixed[0]} of {mixed[1]} loads "
                   "saw the two files of different saves (no lock between threads: not judged)",
                   f"first: {errors[0]}" if errors else "")


probe(CONC, "two threads History.save into one directory, a reader loading", "History.save x 2 threads + History.load",
      _history_saves)


def _reader_during_saves(tmp: Path) -> Verdict:
    """ONE writer saves two different runs in turn; a reader loading meanwhile must see one save's two files
    (files.write_files: 'a reader sees the old set or the new one')."""
    from pinnlab.history import History

    runs = [History.load(base_run()), History.load(base_run())]
    runs[1].status, runs[1].prediction = "interrupted", runs[0].prediction + 1.0
    runs[0].save(tmp / "run")
    stop, seen, errors = threading.Event(), [0, 0], []

    def reader():
        while not stop.is_set():
            try:
                h = History.load(tmp / "run")
            except Exception as e:  # noqa: BLE001
                errors.append(_exc(e))
                continue
            seen[1] += 1
            seen[0] += (h.status == "interrupted") != bool(np.allclose(h.prediction, runs[1].prediction))

    t = threading.Thread(target=reader)
    t.start()
    for i in range(150):
        runs[i % 2].save(tmp / "run")
    stop.set()
    t.join()
    why = ([f"{seen[0]} of {seen[1]} loads got history.json of one save and history.npz of the other"] if seen[0]
           else []) + ([f"{len(errors)} load errors, first: {errors[0]}"] if errors else [])
    return Verdict(not why, f"{seen[0]} mixed of {seen[1]} loads during 150 saves", "; ".join(why))


probe(CONC, "a reader never sees the files of two saves mixed (one writer)", "History.save x 150 (one thread, two "
      "runs in turn) + History.load in a second thread", _reader_during_saves)


def _reports(tmp: Path) -> Verdict:
    from pinnlab.history import History
    from pinnlab.report import write_report

    h = History.load(base_run())
    errors: list[str] = []

    def go():
        try:
            for _ in range(3):
                write_report(h, tmp / "report.html")
        except Exception as e:  # noqa: BLE001
            errors.append(_exc(e))

    ts = [threading.Thread(target=go) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    text = (tmp / "report.html").read_text()
    why = errors[:1] + ([] if text.rstrip().endswith("</html>") else ["report.html is cut"]) + (
        [f"left {_files(tmp)}"] if _files(tmp) != ["report.html"] else [])
    return Verdict(not why, f"{len(errors)} errors", "; ".join(why))


probe(CONC, "two reports written at once to one report.html", "pinnlab.report.write_report from 2 threads", _reports)


# ====================================================================================================================
# signals
# ====================================================================================================================
def signal_probe(description: str, schedule: list[tuple[float, int]], wait: str | float = "training",
                 codes=(130,), status: str = "interrupted", words: tuple[str, ...] = (), argv=SLOW,
                 nothing_or_run: bool = False):
    """Start ``argv``, wait (for training, for its end, or seconds), send ``schedule`` [(delay, signum)],
    then check: an exit code in ``codes``, no traceback, and one consistent run (``nothing_or_run``: or
    nothing written) whose message has ``words``."""
    def run(tmp: Path) -> Verdict:
        out = tmp / "run"
        proc = popen([*argv, "--out", str(out)], tmp)
        if wait == "training":
            if not _wait_for(proc, lambda line: line.startswith("["), 150):
                proc.kill()
                return Verdict(False, first_line(proc._probe_lines), "never started training")
        elif wait == "end":
            if not _wait_for(proc, lambda line: "100%" in line, 200):
                proc.kill()
                return Verdict(False, first_line(proc._probe_lines), "never finished training")
        else:
            time.sleep(float(wait))
        for delay, signum in schedule:
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signum)
        try:
            o, e = proc.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            proc.kill()
            o, e = proc.communicate()
            return Verdict(False, "(still running 150 s after the signal)", "did not stop")
        err = getattr(proc, "_probe_lines", "") + e
        lines = [ln for ln in _lines(err) if not ln.startswith("[")]
        line = lines[-1] if lines else f"exit {proc.returncode}, no message"
        error = exception_line(err)
        why = []
        if error or "Traceback" in err:
            why.append(f"traceback ({error})")
        if proc.returncode not in codes:
            why.append(f"exit code {proc.returncode}, expected {codes}")
        if nothing_or_run and not _files(out):
            pass
        else:
            why += run_dir_issues(out, status)
            if not why and words:
                message = json.loads((out / "metrics.json").read_text()).get("message", "")
                if not any(w in message for w in words):
                    why.append(f"the saved message {message!r} does not say {words}")
        stray = [ln for ln in lines if not ln.startswith("pinnlab")]
        if stray:
            why.append(f"stray stderr: {stray[0][:120]}")
        return Verdict(not why, line, "; ".join(why), error)

    what = " then ".join(f"{signal.Signals(s).name}" + (f" +{d * 1000:.0f} ms" if d else "") for d, s in schedule)
    probe(SIG, description, f"subprocess: pinnlab {' '.join(argv[:3])} ...; wait for {wait}; {what}", run)


T, H, INT = signal.SIGTERM, signal.SIGHUP, signal.SIGINT
signal_probe("SIGTERM mid-training saves the run (exit 143)", [(0, T)], codes=(143,), words=("SIGTERM",))
signal_probe("SIGHUP mid-training (a closed ssh session) saves the run (exit 129)", [(0, H)], codes=(129,),
             words=("SIGHUP",))
signal_probe("one Ctrl-C mid-training saves the run (exit 130)", [(0, INT)], words=("Ctrl-C",))
signal_probe("a second Ctrl-C 50 ms after the first", [(0, INT), (0.05, INT)], words=("Ctrl-C",))
signal_probe("Ctrl-C pressed every 25 ms through the final save", [(0, INT)] + [(0.025, INT)] * 40, words=("Ctrl-C",))
signal_probe("SIGTERM, then Ctrl-C during the save", [(0, T), (0.05, INT)], codes=(143, 130), words=("SIGTERM",))
signal_probe("Ctrl-C 0.3 s after start (interpreter and imports)", [(0, INT)], wait=0.3, codes=(130, -2),
             nothing_or_run=True)
signal_probe("Ctrl-C 1.5 s after start (inside the JAX import)", [(0, INT)], wait=1.5, codes=(130, -2),
             nothing_or_run=True)
signal_probe("SIGTERM 1.5 s after start", [(0, T)], wait=1.5, codes=(143, -15), nothing_or_run=True)
signal_probe("SIGHUP 1.5 s after start", [(0, H)], wait=1.5, codes=(129, -1), nothing_or_run=True)
for wait in (3.5, 4.5, 5.5):  # after the imports, in the problem set-up and the first compiles
    signal_probe(f"Ctrl-C {wait} s after start (set-up and first compiles)", [(0, INT)], wait=wait, codes=(130,),
                 nothing_or_run=True)
REPORTED = ["train", "--problem", "poisson", "--width", "8", "--steps", "20000", "--chunk", "100"]
signal_probe("Ctrl-C while report.html renders: every file is still written", [(0.3, INT)], wait="end",
             codes=(0, 130), status="completed", argv=REPORTED)
signal_probe("SIGTERM while report.html renders", [(0.3, T)], wait="end", codes=(0, 143), status="completed",
             argv=REPORTED)


def _signal_command(argv_of: Callable[[Path], list[str]], waits: tuple[float, ...], signum: int, codes,
                    check_dir=None, before_end: bool = False):
    """Send ``signum`` once per attempt, ``waits`` seconds after start (``before_end``: that many seconds before
    the end of one undisturbed run, timed first); handled only if every attempt is."""
    def run(tmp: Path) -> Verdict:
        argv = argv_of(tmp)
        total = main_sub(argv, tmp, 120).seconds if before_end else 0.0
        seen = []
        for wait in waits:
            delay = max(0.3, total - wait) if before_end else wait
            proc = popen(argv, tmp)
            time.sleep(delay)
            proc.send_signal(signum)
            o, e = proc.communicate(timeout=120)
            error = exception_line(e)
            lines = _lines(e)
            why = []
            if error or "Traceback" in e:
                why.append(f"traceback ({error})")
            if proc.returncode not in codes:
                why.append(f"exit code {proc.returncode}, expected {codes}")
            if [line for line in lines if not line.startswith(("pinnlab", "fig", "["))]:
                why.append(f"stray stderr: {first_line(e)[:100]}")
            if check_dir is not None:
                why += check_dir(tmp)
            line = f"{lines[-1] if lines else ''} (exit {proc.returncode}, signal at {delay:.1f} s)".strip()
            if why:
                return Verdict(False, line, "; ".join(why) + f" [attempt {len(seen) + 1} of {len(waits)}]", error)
            seen.append(line)
        return Verdict(True, " | ".join(seen))
    return run


def _report_dir_ok(tmp: Path) -> list[str]:
    d = tmp / "run"
    left = [n for n in _files(d) if n.endswith(".tmp") or n.startswith(".")]
    report = d / "report.html"
    cut = report.exists() and not report.read_text(errors="replace").rstrip().endswith("</html>")
    return ([f"temporaries left {left}"] if left else []) + (["report.html cut"] if cut else [])


probe(SIG, "Ctrl-C during pinnlab report (after its imports: load, render, write)",
      "subprocess: pinnlab report RUN once, timed; then 4 runs with SIGINT 1.0/0.8/0.6/0.4 s before that time",
      _signal_command(lambda tmp: (copy_run(tmp), ["report", str(tmp / "run")])[1], (1.0, 0.8, 0.6, 0.4), INT,
                      (0, 130), _report_dir_ok, before_end=True))
probe(SIG, "Ctrl-C during pinnlab ntk-weights (its compile and kernel)", "subprocess: pinnlab ntk-weights --problem "
      "wave --width 64 --depth 3 once, timed; then 10 runs with SIGINT 0.8 to 0.35 s before that time "
      "(timing-dependent: a Ctrl-C in JAX's gc callback or its teardown)",
      _signal_command(lambda tmp: ["ntk-weights", "--problem", "wave", "--width", "64", "--depth", "3"],
                      (0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.45, 0.4, 0.35), INT,
                      (0, 130, -2), before_end=True))


def _reproduce_dir_ok(tmp: Path) -> list[str]:
    left = [n for n in _files(tmp / "paper") if n.endswith(".tmp") or n.startswith(".")]
    return [f"temporaries left {left}"] if left else []


probe(SIG, "SIGTERM during pinnlab reproduce", "subprocess: pinnlab reproduce fig1 --scale smoke; SIGTERM after 5 s",
      _signal_command(lambda tmp: ["reproduce", "fig1", "--scale", "smoke", "--no-progress", "--out",
                                   str(tmp / "paper")], (5.0,), T, (0, 143, -15), _reproduce_dir_ok))
probe(SIG, "Ctrl-C during pinnlab reproduce", "subprocess: pinnlab reproduce fig1 --scale smoke; SIGINT after 4 s, "
      "then after 5 s",
      _signal_command(lambda tmp: ["reproduce", "fig1", "--scale", "smoke", "--no-progress", "--out",
                                   str(tmp / "paper")], (4.0, 5.0), INT, (0, 130), _reproduce_dir_ok))


# ====================================================================================================================
# divergence
# ====================================================================================================================
def diverged_run(res: Res, out: Path) -> Verdict:
    """Exit 1, one line that says so, and the saved run ends with the kept (finite) state's own row."""
    from pinnlab.history import History

    lines, error = _lines(res.stderr), exception_line(res.stderr) or res.exc
    line = lines[0] if lines else ""
    why = []
    if error:
        return Verdict(False, line, f"traceback ({error}), exit {res.code}", error)
    if res.code != 1:
        why.append(f"exit code {res.code}, expected 1")
    if not any("diverged" in ln for ln in lines):
        why.append("stderr does not say it diverged")
    issues = run_dir_issues(out, "diverged")
    if issues:
        return Verdict(False, line, "; ".join(why + issues))
    h = History.load(out)
    metrics = json.loads((out / "metrics.json").read_text())
    m = re.search(r"kept as at step (\d+)|kept up to step (\d+)", h.message)
    steps = h.curve("steps")
    if not m:
        why.append(f"message does not say which step is kept: {h.message!r}")
    elif not len(steps) or int(steps[-1]) != int(m.group(1) or m.group(2)):
        kept = m.group(1) or m.group(2)
        why.append(f"rows end at step {steps[-1] if len(steps) else None}, message keeps step {kept}")
    if not np.all(np.isfinite(h.curve("losses"))):
        why.append("non-finite losses saved")
    if metrics.get("rel_l2") is None or not h.rel_l2 or not np.isfinite(h.rel_l2[-1]):
        why.append(f"rel_l2 {metrics.get('rel_l2')}")
    return Verdict(not why, line, "; ".join(why))


def cli_diverges(description: str, args: list[str], base=TINY):
    argv = [*base, *args]

    def run(tmp: Path) -> Verdict:
        out = tmp / "run"
        return diverged_run(main_inproc([*argv, "--out", str(out)]), out)

    probe(DIV, description, "cli.main: pinnlab " + " ".join(argv), run)


cli_diverges("--lr 10 --chunk 1 (divergence on a chunk's first row, the issue's case)",
             ["--lr", "10", "--steps", "200", "--chunk", "1"])
cli_diverges("--lr 10 --chunk 100 (inside a chunk)", ["--lr", "10", "--steps", "200", "--chunk", "100"])
cli_diverges("--lr 10 --chunk 3", ["--lr", "10", "--steps", "200", "--chunk", "3"])
cli_diverges("--lr 10 --chunk 2 --update-every 1 (weights refreshed every step)",
             ["--lr", "10", "--steps", "200", "--chunk", "2", "--update-every", "1"])
cli_diverges("--lr 1e300 (inf in float32: diverges at step 1)", ["--lr", "1e300"])
cli_diverges("--decay-rate 1e300 --decay-steps 1 (the lr explodes)", ["--decay-rate", "1e300", "--decay-steps", "1"])
cli_diverges("wave --optimizer sgd --lr 10", ["--optimizer", "sgd", "--lr", "10", "--steps", "100"], base=WAVE)


def _api_divergence(chunk: int):
    def run(tmp: Path) -> Verdict:
        from pinnlab import TrainConfig, Trainer

        p, n, _ = small()
        t = Trainer(p, n, TrainConfig(lr=10.0, chunk=chunk, steps=200))
        h = t.run()
        steps = h.curve("steps")
        import jax

        flat = jax.flatten_util.ravel_pytree(t.state.params)[0]
        why = []
        if h.status != "diverged":
            why.append(f"status {h.status}")
        if not len(steps) or int(steps[-1]) != t.step:
            why.append(f"rows end at {steps[-1] if len(steps) else None}, state at step {t.step}")
        if not np.all(np.isfinite(np.asarray(flat))):
            why.append("non-finite parameters kept")
        if not np.all(np.isfinite(h.curve("losses"))):
            why.append("non-finite losses recorded")
        if not h.rel_l2 or not np.isfinite(h.rel_l2[-1]):
            why.append("no finite rel_l2")
        return Verdict(not why, f"{h.status}: {h.message}", "; ".join(why))
    return run


probe(DIV, "Trainer(lr=10, chunk=1).run(): rows end at the kept state", "Trainer(problem, net, TrainConfig(lr=10, "
      "chunk=1)).run()", _api_divergence(1))
probe(DIV, "Trainer(lr=10, chunk=7).run()", "Trainer(..., TrainConfig(lr=10, chunk=7)).run()", _api_divergence(7))


def _lab_divergence(tmp: Path) -> Verdict:
    lab = _lab("width=8&lr=10&chunk=1&budget=1000")
    outcome = lab.run(200)
    h = lab.history
    steps = h.curve("steps")
    why = []
    if outcome.reason != "diverged":
        why.append(f"outcome {outcome.reason}")
    if not len(steps) or int(steps[-1]) != lab.step:
        why.append(f"rows end at {steps[-1] if len(steps) else None}, lab at step {lab.step}")
    if not np.all(np.isfinite(h.curve("losses"))):
        why.append("non-finite losses")
    return Verdict(not why, outcome.message, "; ".join(why))


probe(DIV, "the lab with lr=10, chunk=1: back at the last finite step", "Lab('width=8&lr=10&chunk=1').run(200)",
      _lab_divergence)


def _lab_step0(tmp: Path) -> Verdict:
    try:
        lab = _lab("width=8&param=1e20")
    except ValueError as e:
        return Verdict("param" in str(e), _exc(e), "" if "param" in str(e) else "does not name param")
    outcome = lab.run(5)
    return Verdict(False, f"{outcome.reason}: {outcome.message}", "accepted a problem whose forcing overflows "
                   "float32: the loss is non-finite at step 0 and the message blames the lr")


probe(DIV, "the lab with param=1e20 (non-finite loss at step 0)", "Lab('width=8&param=1e20').run(5)", _lab_step0)


# ====================================================================================================================
# CLI usage (what a new user types)
# ====================================================================================================================
def cli_bad(description: str, argv: list[str], *fragments: str, out: bool = False):
    def run(tmp: Path) -> Verdict:
        full = [*argv, "--out", str(tmp / "out")] if out else argv
        return refused(main_inproc(full), tmp / "out", *fragments)

    probe(CLI, description, "cli.main: pinnlab " + " ".join(argv), run)


cli_bad("pinnlab (no subcommand)", [], "required")
cli_bad("pinnlab frobnicate", ["frobnicate"], "frobnicate")
cli_bad("train without --out", ["train", "--problem", "poisson"], "--out")
cli_bad("train without --problem", ["train", "--out", "x"], "--problem")
cli_bad("--problem nope", ["train", "--problem", "nope", "--out", "x"], "nope")
cli_bad("--problem POISSON (capitalised)", ["train", "--problem", "POISSON", "--out", "x"], "POISSON")
cli_bad("an unknown option --bogus", [*TINY, "--bogus"], "--bogus", out=True)
cli_bad("a typo: --stpes 10", [*TINY, "--stpes", "10"], "--stpes", out=True)
cli_bad("--steps 0", [*TINY, "--steps", "0"], "--steps", "0", out=True)
cli_bad("--steps -5", [*TINY, "--steps", "-5"], "--steps", out=True)
cli_bad("--steps abc", [*TINY, "--steps", "abc"], "--steps", "abc", out=True)
cli_bad("--steps 1e4 (float syntax)", [*TINY, "--steps", "1e4"], "--steps", "1e4", out=True)
cli_bad("--steps 1.5", [*TINY, "--steps", "1.5"], "--steps", "1.5", out=True)
cli_bad("--lr 0", [*TINY, "--lr", "0"], "--lr", out=True)
cli_bad("--lr -1", [*TINY, "--lr", "-1"], "--lr", out=True)
cli_bad("--lr nan", [*TINY, "--lr", "nan"], "--lr", "nan", out=True)
cli_bad("--lr 1e-3x", [*TINY, "--lr", "1e-3x"], "--lr", out=True)
cli_bad("--momentum 1", [*TINY, "--momentum", "1"], "--momentum", out=True)
cli_bad("--decay-rate 0", [*TINY, "--decay-rate", "0"], "--decay-rate", out=True)
cli_bad("--chunk 0", [*TINY, "--chunk", "0"], "--chunk", out=True)
cli_bad("--optimizer lbfgs", [*TINY, "--optimizer", "lbfgs"], "lbfgs", out=True)
cli_bad("--weighting magic", [*TINY, "--weighting", "magic"], "magic", out=True)
cli_bad("--activation foo", [*TINY, "--activation", "foo"], "foo", out=True)
cli_bad("--batch zz=5", [*TINY, "--batch", "zz=5"], "zz", out=True)
cli_bad("--batch r (no value)", [*TINY, "--batch", "r"], "--batch", out=True)
cli_bad("--batch r=1.5", [*TINY, "--batch", "r=1.5"], "r=1.5", out=True)
cli_bad("--batch '' (empty)", [*TINY, "--batch", ""], "--batch", out=True)
cli_bad("--batch r=1 (poisson needs 2)", [*TINY, "--batch", "r=1"], "n_r", out=True)
cli_bad("--initial-weights u=0", [*TINY, "--initial-weights", "u=0"], "u=0", out=True)
cli_bad("--initial-weights zz=1", [*TINY, "--initial-weights", "zz=1"], "zz", out=True)
cli_bad("--spectra-at x", [*TINY, "--spectra-at", "x"], "--spectra-at", out=True)
cli_bad("--spectra-at 99 with --steps 20", [*TINY, "--spectra-at", "99"], "99", out=True)
cli_bad("poisson --c 2 (a wave parameter)", [*TINY, "--c", "2"], "--c", out=True)
cli_bad("poisson --ntk-points 5", [*TINY, "--ntk-points", "5"], "--ntk-points", out=True)
cli_bad("heat --a 1", ["train", "--problem", "heat", "--no-progress", "--a", "1"], "--a", out=True)
cli_bad("wave --c 0", [*WAVE, "--c", "0"], "c", "0", out=True)
cli_bad("ntk-weights --width 0", ["ntk-weights", "--problem", "poisson", "--width", "0"], "--width")
cli_bad("ntk-weights wave --c nan", ["ntk-weights", "--problem", "wave", "--c", "nan"], "--c")
cli_bad("report of a missing directory", ["report", "/nonexistent/run"], "/nonexistent/run")
cli_bad("report of a file", ["report", str(ROOT / "README.md")], "README.md")
cli_bad("reproduce fig99", ["reproduce", "fig99"], "fig99")
cli_bad("reproduce --scale huge", ["reproduce", "fig1", "--scale", "huge"], "huge")
cli_bad("lecture nope (unknown preset)", ["lecture", "nope"], "nope")
cli_bad("lecture --port 0", ["lecture", "--port", "0"], "--port")


def _help(argv):
    def run(tmp: Path) -> Verdict:
        res = main_inproc(argv)
        ok = res.code == 0 and res.stdout.strip() and not res.stderr.strip() and not res.exc
        return Verdict(bool(ok), first_line(res.stdout), "" if ok else f"exit {res.code} {res.exc}")
    probe(CLI, f"pinnlab {' '.join(argv)}", "cli.main: pinnlab " + " ".join(argv), run)


_help(["--help"])
_help(["train", "--help"])
_help(["--version"])

cli_success(CLI, "a valid tiny run (control)", [])
cli_success(CLI, "--steps 1 --chunk 1000", ["--steps", "1", "--chunk", "1000"])
cli_success(CLI, "--spectra-at 0,5,end", ["--spectra-at", "0,5,end"])
cli_success(CLI, "--batch n_b=20,n_r=20 (factory keywords)", ["--batch", "n_b=20,n_r=20"])
cli_success(CLI, "--batch 'u=20, r=20' (with a space)", ["--batch", "u=20, r=20"])
cli_success(CLI, "--optimizer lm --steps 5", ["--optimizer", "lm", "--steps", "5"])
cli_success(CLI, "--initial-weights ntk", ["--initial-weights", "ntk"])
cli_success(CLI, "burgers (nonlinear, Jacobian NTK)", [], problem="burgers",
            base=["train", "--problem", "burgers", "--width", "8", "--steps", "10", "--no-progress", "--no-report"])
cli_success(CLI, "convection", [], problem="convection",
            base=["train", "--problem", "convection", "--width", "8", "--steps", "10", "--no-progress",
                  "--no-report"])


def _ntk_weights_ok(tmp: Path) -> Verdict:
    res = main_inproc(["ntk-weights", "--problem", "poisson", "--width", "8"])
    try:
        ok = res.code == 0 and set(json.loads(res.stdout)["weights"]) == {"u", "r"}
    except Exception:  # noqa: BLE001
        ok = False
    return Verdict(ok, first_line(res.stderr) or "JSON on stdout", "" if ok else f"exit {res.code} {res.exc}")


probe(CLI, "ntk-weights prints JSON (control)", "cli.main: pinnlab ntk-weights --problem poisson --width 8",
      _ntk_weights_ok)


def _empty_out(tmp: Path) -> Verdict:
    cwd = tmp / "cwd"
    cwd.mkdir()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        res = main_inproc([*TINY, "--out", ""])
    finally:
        os.chdir(old)
    if res.code == 2 and len(_lines(res.stderr)) == 1 and "--out" in res.stderr and not _files(cwd):
        return Verdict(True, first_line(res.stderr))
    return Verdict(False, first_line(res.stderr) or first_line(res.stdout),
                   f"exit {res.code}; an empty --out (an unset $OUT) wrote {_files(cwd)} into the working directory")


probe(CLI, "--out '' (an unset shell variable)", "cli.main: pinnlab train ... --out ''", _empty_out)


# ====================================================================================================================
# environment
# ====================================================================================================================
def env_run(description: str, env: dict, argv=TINY, check: str = "completed", **kw):
    def run(tmp: Path) -> Verdict:
        out = tmp / "run"
        res = main_sub([*argv, "--out", str(out)], tmp, 120, env={k: (v.replace("{tmp}", str(tmp)) if v else v)
                                                                   for k, v in env.items()}, **kw)
        if check == "completed":
            return completed(res, out, "poisson")
        return refused(res, out)

    probe(ENV, description, f"subprocess with {env}: pinnlab {' '.join(argv)}", run)


def _xdg_file(tmp: Path) -> Verdict:
    (tmp / "cachefile").write_text("x")
    out = tmp / "run"
    return completed(main_sub([*TINY, "--out", str(out)], tmp, 120, env={"XDG_CACHE_HOME": str(tmp / "cachefile")}),
                     out, "poisson")


probe(ENV, "XDG_CACHE_HOME is a file (no compilation cache possible)", "subprocess: XDG_CACHE_HOME=FILE pinnlab train",
      _xdg_file)
env_run("HOME unwritable, no XDG_CACHE_HOME", {"HOME": "/proc/self", "XDG_CACHE_HOME": None})
env_run("JAX_PLATFORMS=cuda on a machine without CUDA", {"JAX_PLATFORMS": "cuda"}, check="refused")
env_run("stderr in cp1252 (a Windows console redirected): the progress bar's λ", {"PYTHONIOENCODING": "cp1252"},
        argv=[a for a in TINY if a != "--no-progress"])


def _broken_pipe(tmp: Path) -> Verdict:
    r, w = os.pipe()
    os.close(r)
    res = main_sub(["ntk-weights", "--problem", "poisson", "--width", "8"], tmp, 60, stdout=w)
    os.close(w)
    error = exception_line(res.stderr)
    lines = _lines(res.stderr)
    ok = not error and len(lines) <= 1
    return Verdict(ok, first_line(res.stderr) or f"exit {res.code}", "" if ok else f"traceback ({error}), exit "
                   f"{res.code}", error)


probe(ENV, "pinnlab ntk-weights | head (the reader has gone)", "subprocess: ntk-weights with stdout a closed pipe",
      _broken_pipe)


def _dev_full(tmp: Path) -> Verdict:
    out = tmp / "run"
    with open("/dev/full", "w") as full:
        res = main_sub([*TINY, "--out", str(out)], tmp, 120, stdout=full)
    error = exception_line(res.stderr)
    issues = run_dir_issues(out, "completed")
    ok = not error and res.code in (0, 3) and not issues and len(_lines(res.stderr)) <= 1
    return Verdict(ok, first_line(res.stderr) or f"exit {res.code}",
                   "; ".join(([f"traceback ({error}), exit {res.code}"] if error else []) + issues), error)


probe(ENV, "stdout on a full device (pinnlab train > /dev/full)", "subprocess: pinnlab train ... > /dev/full",
      _dev_full)


# ====================================================================================================================
# running the table
# ====================================================================================================================
def run_all(probes: list[Probe]) -> list[dict]:
    rows = []
    for i, p in enumerate(probes, 1):
        tmp = Path(tempfile.mkdtemp(prefix="probe-"))
        t0 = time.perf_counter()
        try:
            v = p.run(tmp)
            probe_error = ""
        except Exception as e:  # noqa: BLE001 (a defect of the probe itself, reported as such)
            v = Verdict(False, _exc(e), "PROBE ERROR")
            probe_error = traceback.format_exc()
        seconds = time.perf_counter() - t0
        shutil.rmtree(tmp, ignore_errors=True)
        rows.append({"category": p.category, "description": p.description, "how": p.how, "handled": v.handled,
                     "first_line": v.first_line, "why": v.why, "error": v.error, "seconds": round(seconds, 2),
                     **({"probe_error": probe_error} if probe_error else {})})
        mark = "ok " if v.handled else "NOT"
        print(f"[{i:3d}/{len(probes)}] {mark} {seconds:5.1f}s {p.category}: {p.description}"
              + ("" if v.handled else f"\n        -> {v.why} | {v.first_line[:150]}"), file=sys.stderr, flush=True)
        if probe_error:
            print(probe_error, file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    lines = [f"{'category':<22} {'tried':>5} {'handled':>7} {'not':>4}"]
    for c in CATEGORIES:
        sub = [r for r in rows if r["category"] == c]
        if sub:
            h = sum(r["handled"] for r in sub)
            lines.append(f"{c:<22} {len(sub):>5} {h:>7} {len(sub) - h:>4}")
    h = sum(r["handled"] for r in rows)
    lines.append(f"{'total':<22} {len(rows):>5} {h:>7} {len(rows) - h:>4}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="run the categories whose name contains this")
    parser.add_argument("--match", help="run the probes whose description contains this")
    parser.add_argument("--list", action="store_true", help="list the probes and exit")
    parser.add_argument("--out", default=str(RESULTS), help=f"results JSON (default {RESULTS.relative_to(ROOT)})")
    args = parser.parse_args()
    # Children must get SIGINT's default action even if this script runs as a shell's background job.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    probes = [p for p in PROBES if (not args.only or args.only in p.category)
              and (not args.match or args.match.lower() in p.description.lower())]
    if args.list:
        for p in probes:
            print(f"{p.category:<20} | {p.description} | {p.how}")
        print(f"{len(probes)} probes")
        return 0
    from pinnlab.provenance import versions

    t0 = time.perf_counter()
    try:
        rows = run_all(probes)
    finally:
        if "run" in _CACHE:
            shutil.rmtree(_CACHE["run"].parent, ignore_errors=True)
    seconds = time.perf_counter() - t0
    print(table(rows))
    print(f"{len(rows)} probes in {seconds:.0f} s")
    by_cat = {c: {"tried": sum(r["category"] == c for r in rows),
                  "handled": sum(r["handled"] for r in rows if r["category"] == c)} for c in CATEGORIES}
    result = {"command": "PYTHONPATH=. python benchmarks/probe_inputs.py" + "".join(
                  f" --{k} {v}" for k, v in (("only", args.only), ("match", args.match)) if v),
              "seconds": round(seconds, 1), "tried": len(rows), "handled": sum(r["handled"] for r in rows),
              "categories": {c: v for c, v in by_cat.items() if v["tried"]},
              "tmpfs": can_mount(), "versions": versions(), "load_average_1min": round(os.getloadavg()[0], 2),
              "probes": rows}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
