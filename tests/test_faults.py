"""No lost, mixed or half-written run: signals, two runs on one --out, full disks, concurrent writers.

The signal cases run ``python -m pinnlab train`` in a subprocess and signal it once its first progress line
shows that training is under way.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pinnlab import cli, files
from pinnlab.history import History

# A wave run slow enough to be signalled mid-training (~20 s on 2 cores), fast to compile.
SLOW = ["train", "--problem", "wave", "--width", "16", "--depth", "2", "--steps", "40000", "--chunk", "50",
        "--no-report"]
TINY = ["train", "--problem", "poisson", "--width", "8", "--steps", "200", "--chunk", "100", "--no-progress"]


def _start(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    # A shell's background jobs inherit SIGINT ignored, and Python keeps an ignored SIGINT ignored: the child
    # first takes the handler a terminal gives it (a preexec_fn would fork this multithreaded JAX process),
    # then runs `python -m pinnlab`'s main.
    launcher = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "from pinnlab.__main__ import main; sys.exit(main())")
    return subprocess.Popen([sys.executable, "-c", launcher, *SLOW, "--out", str(out), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_training(proc: subprocess.Popen, timeout: float = 180.0) -> None:
    """Block until the run prints its first progress line (it prints one per 10% on a pipe)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if line.startswith("["):
            return
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"the run never started training (exit {proc.poll()})")


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _assert_one_consistent_run(out: Path, status: str) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    history = History.load(out)
    assert metrics["status"] == history.status == status
    assert metrics["steps"] == history.final["steps"] > 0
    assert metrics["rel_l2"] == history.rel_l2[-1]
    assert np.all(np.isfinite(history.prediction))
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    return metrics


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_save_the_run_and_a_second_run_on_its_out_is_refused(tmp_path, signum):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_training(proc)
    if signum == signal.SIGTERM:  # one run holds --out; a second one is refused at once, and changes nothing
        code, _, err = _run_main([*TINY, "--out", str(out)])
        assert code == 2 and "another pinnlab run is writing to" in err and err.count("\n") == 1, err
    proc.send_signal(signum)
    code, stdout, err = _finish(proc)
    assert code == 128 + signum, err
    metrics = _assert_one_consistent_run(out, "interrupted")
    assert signal.Signals(signum).name in metrics["message"] and "Traceback" not in err
    assert metrics["config"]["problem"] == "wave"  # the refused Poisson run left nothing behind


def test_more_ctrl_c_during_the_final_save_loses_nothing(tmp_path):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_training(proc)
    proc.send_signal(signal.SIGINT)
    for _ in range(40):  # keep pressing while it saves (the save takes a fraction of a second)
        time.sleep(0.025)
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGINT)
    code, _, err = _finish(proc)
    assert code == 130 and "Traceback" not in err, err
    metrics = _assert_one_consistent_run(out, "interrupted")
    assert "Ctrl-C" in metrics["message"]


def test_ctrl_c_while_starting_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    proc = _start(out)
    time.sleep(0.5)  # inside the JAX import (seconds on these machines), before any training
    proc.send_signal(signal.SIGINT)
    code, _, err = _finish(proc)
    assert code in (130, -signal.SIGINT), err  # -SIGINT: the signal beat Python's own handler
    assert "Traceback" not in err and err.count("\n") <= 1, err
    assert not out.exists() or not any(out.iterdir())


def _run_main(argv):
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        code = cli.main(argv)
    return code, o.getvalue(), e.getvalue()


def test_a_write_failure_is_one_line_exit_code_3_leaves_no_temporaries_and_keeps_the_old_run(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert _run_main([*TINY, "--out", str(out)])[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fill = files._fill

    def full_disk(path, content):
        if ".history.npz." in path.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fill(path, content)

    monkeypatch.setattr(files, "_fill", full_disk)
    code, stdout, err = _run_main([*TINY, "--steps", "100", "--out", str(out)])
    assert code == cli.WRITE_FAILED == 3
    assert err.count("\n") == 1 and "No space left on device" in err and "history.npz" in err, err
    assert "relative L2 error" in stdout  # the numbers are still reported
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporaries, nothing replaced


def test_a_directory_in_the_way_of_an_output_file_is_one_line_exit_code_3(tmp_path):
    out = tmp_path / "run"
    (out / "metrics.json").mkdir(parents=True)
    code, _, err = _run_main([*TINY, "--out", str(out), "--no-report"])
    assert code == 3 and "cannot write" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]


def test_a_really_full_disk(tmp_path):
    """A 32 KiB tmpfs, where one can be mounted (root on Linux); the patched write above covers the rest."""
    mount = tmp_path / "small"
    mount.mkdir()
    if not shutil.which("mount") or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mount)],
                                                   capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        code, _, err = _run_main([*TINY, "--out", str(mount / "run")])
        assert code == 3 and "No space left on device" in err and err.count("\n") == 1, err
        assert not list((mount / "run").iterdir())
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_concurrent_writers_never_share_a_temporary_and_readers_never_see_half_a_file(tmp_path):
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(tag: int):
        data = np.full(20_000, tag, np.float64)
        try:
            for _ in range(100):
                files.write_files(tmp_path, {"a.npz": lambda f: np.savez_compressed(f, x=data),
                                             "a.json": files.to_json({"tag": tag})})
        except BaseException as e:  # noqa: BLE001 (collected for the assertion below)
            errors.append(e)

    def reader():
        while not stop.is_set():
            try:
                with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
                    x = z["x"]
                assert len(np.unique(x)) == 1 and json.loads((tmp_path / "a.json").read_text())["tag"] in (1, 2)
            except FileNotFoundError:
                pass  # before the first rename
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in (1, 2)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads[:2]:
        t.join()
    stop.set()
    threads[2].join()
    assert not errors, errors[:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.npz"]


def test_history_json_is_strict_json_with_nan_as_null(tmp_path):
    assert _run_main([*TINY, "--steps", "100", "--out", str(tmp_path), "--no-report"])[0] == 0
    meta = json.loads((tmp_path / "history.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    history = History.load(tmp_path)
    history.seconds = float("nan")
    history.events.append({"step": 3, "field": "lr", "value": float("inf")})
    history.save(tmp_path)
    text = (tmp_path / "history.json").read_text()
    meta = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in history.json"))
    assert meta["seconds"] is None and meta["events"][-1]["value"] is None


def test_divergence_keeps_the_last_finite_state_and_its_row(tmp_path):
    code, _, err = _run_main(["train", "--problem", "poisson", "--lr", "10", "--steps", "200", "--chunk", "1",
                              "--no-progress", "--no-report", "--out", str(tmp_path)])
    assert code == 1 and "training diverged" in err
    history = History.load(tmp_path)
    kept = int(history.message.rsplit("step ", 1)[1])
    assert history.curve("steps")[-1] == kept  # the rows end with the kept state's own (finite) row
    assert np.all(np.isfinite(history.curve("losses"))) and np.all(np.isfinite(history.prediction))
    assert history.rel_l2[-1] is not None and np.isfinite(history.rel_l2[-1])


def test_a_warm_compilation_cache_does_not_flood_stderr(tmp_path):
    """XLA:CPU's false 'machine feature' errors on cache loads (jax-ml/jax#38445) stay out of the CLI's output."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    for run in ("cold", "warm"):
        proc = subprocess.run([sys.executable, "-m", "pinnlab", *TINY, "--no-report", "--out", str(tmp_path / run)],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "cpu_aot_loader" not in proc.stderr and proc.stderr.count("\n") <= 1, proc.stderr[:500]
    assert any((tmp_path / "cache").rglob("*"))  # the cache was written (and read by the warm run)


def _lose_a_sigint_in_a_gc_callback() -> None:
    """What JAX's gc callback does to a Ctrl-C that lands in it: the handler's exception is printed and dropped."""
    import gc

    def callback(phase, info):
        gc.callbacks.remove(callback)
        signal.raise_signal(signal.SIGINT)  # the handler runs here, inside the callback

    gc.callbacks.append(callback)
    gc.collect()


def test_a_ctrl_c_lost_in_a_jax_callback_still_stops_the_run_at_the_next_chunk(tmp_path, monkeypatch):
    from pinnlab.training import Trainer

    advance, calls = Trainer.advance, []

    def advance_and_lose_a_ctrl_c(self, n):
        calls.append(n)
        if len(calls) == 1:
            _lose_a_sigint_in_a_gc_callback()  # swallowed: training goes on
        return advance(self, n)

    monkeypatch.setattr(Trainer, "advance", advance_and_lose_a_ctrl_c)
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    out = tmp_path / "run"
    code, _, err = _run_main([*TINY, "--steps", "1000", "--out", str(out), "--no-report"])
    assert code == 130 and "Exception ignored" not in err and unraisable == [], err
    history = History.load(out)
    assert history.status == "interrupted" and len(history.curve("steps")) == 100  # stopped after its first chunk


def test_a_signal_wrapped_in_a_system_error_saves_the_run(tmp_path, monkeypatch):
    from pinnlab.training import Trainer

    advance, calls = Trainer.advance, []

    def hup_inside_a_c_callback(self, n):  # numpy calling JAX's dtype hook as SIGHUP's handler raises
        calls.append(n)
        if len(calls) == 2:
            try:
                raise cli.Interrupted(signal.SIGHUP)
            except KeyboardInterrupt as e:
                raise SystemError("<function __numpy_dtype__> returned a result with an exception set") from e
        return advance(self, n)

    monkeypatch.setattr(Trainer, "advance", hup_inside_a_c_callback)
    out = tmp_path / "run"
    code, _, err = _run_main([*TINY, "--out", str(out), "--no-report"])
    assert code == 128 + signal.SIGHUP and "interrupted by SIGHUP at step 100" in err, err
    assert History.load(out).status == "interrupted"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_an_interrupted_reproduce_exits_with_its_signals_code(tmp_path, monkeypatch, signum):
    import pinnlab.reproduce

    def stopped(figures, scale, out, progress):  # the signal's exception, raised where the handler raises it
        raise cli._interrupt(signum)

    monkeypatch.setattr(pinnlab.reproduce, "reproduce", stopped)
    code, _, err = _run_main(["reproduce", "fig1", "--scale", "smoke", "--no-progress", "--out", str(tmp_path)])
    assert code == 128 + signum and "interrupted; figures already finished are written" in err, (code, err)


def test_a_missing_jax_platform_is_one_line_exit_code_2(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cuda"}  # no CUDA plugin in the test venv (skipped where one exists)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], env=env, capture_output=True)
    if probe.returncode == 0:
        pytest.skip("this machine has a CUDA backend")
    proc = subprocess.run([sys.executable, "-m", "pinnlab", *TINY, "--out", str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "JAX cannot start a backend" in proc.stderr and "JAX_PLATFORMS='cuda'" in proc.stderr
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_stdout_on_a_full_device_is_one_line_exit_code_3_and_the_run_is_written(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # JAX set it in this process: the CLI's own default, as a user gets it
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "pinnlab", *TINY, "--out", str(out), "--no-report"], env=env,
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == cli.WRITE_FAILED and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot write to standard output (No space left on device)" in proc.stderr
    assert History.load(out).status == "completed"


def test_a_rename_failing_half_way_through_the_set_puts_the_old_run_back(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert _run_main([*TINY, "--out", str(out), "--no-report"])[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the first file of the new set is already in place
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    code, _, err = _run_main([*TINY, "--seed", "7", "--out", str(out), "--no-report"])
    assert code == cli.WRITE_FAILED and "Input/output error" in err and f"{out} is unchanged" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporaries, no backups, old bytes


def test_the_old_file_is_linked_again_when_another_writer_replaces_it_mid_link(tmp_path, monkeypatch):
    # Linux's link() fails with ENOENT when another writer renames over its source during the call
    files.write_files(tmp_path, {"a.json": "old"})
    real, calls = os.link, []

    def link(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), src)
        real(src, dst)

    monkeypatch.setattr(files.os, "link", link)
    files.write_files(tmp_path, {"a.json": "new"})
    assert len(calls) == 2 and (tmp_path / "a.json").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # the backup was removed after the set landed


def test_a_file_system_without_hard_links_still_takes_the_set(tmp_path, monkeypatch):
    files.write_files(tmp_path, {"a.json": "old", "b.json": "old"})

    def no_links(src, dst):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), src)  # what vfat answers

    monkeypatch.setattr(files.os, "link", no_links)
    files.write_files(tmp_path, {"a.json": "new", "b.json": "new"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text() == "new"
