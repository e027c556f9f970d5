"""The ``pinnlab`` command: outputs of a run, bad input, divergence, Ctrl-C and help."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pinnlab import cli, make_problem, ntk_weights_at_init
from pinnlab.cache import host_tag
from pinnlab.history import History
from pinnlab.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--steps", "200", "--chunk", "100", "--width", "16", "--no-progress"]


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory) -> Path:
    """A private XDG cache so tests never write the user's JAX compilation cache."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def _private_cache(cache_home, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """``cli.main(argv)`` in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cache_home) -> tuple[Path, int, str, str]:
    """One tiny Poisson run through the CLI (defaults: NTK weights at step 0, then fixed)."""
    out = tmp_path_factory.mktemp("run") / "nested" / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(cache_home))
        result = run_main(["train", "--problem", "poisson", "--batch", "u=50,r=60", *TINY, "--out", str(out)])
    return (out, *result)


def test_train_writes_metrics_with_sane_values(run_dir):
    out, code, stdout, _ = run_dir
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("rel_l2", "steps", "seconds", "steps_per_second", "weights", "traces", "config", "status", "message"):
        assert key in m, key
    assert m["status"] == "completed" and m["message"] == ""
    assert m["steps"] == 200
    assert m["seconds"] > 0 and math.isclose(m["steps_per_second"], 200 / m["seconds"], rel_tol=1e-9)
    assert 0 < m["rel_l2"] < 10 and m["rel_l2_step"] == 200
    assert set(m["weights"]) == set(m["traces"]) == {"u", "r"}
    assert all(v > 0 for v in m["traces"].values())
    # Algorithm 1: lambda_i = (Tr K_u + Tr K_r) / Tr K_i, hence sum_i 1/lambda_i = 1.
    assert math.isclose(sum(1 / w for w in m["weights"].values()), 1.0, rel_tol=1e-4)
    assert m["config"]["problem_params"]["n_b"] == 50 and m["config"]["problem_params"]["n_r"] == 60
    assert m["config"]["net"]["width"] == 16 and m["config"]["train"]["lr"] == 1e-5
    assert f"{m['rel_l2']:.3e}" in stdout


def test_poisson_default_weights_fixed_after_step0(run_dir):
    history = History.load(run_dir[0])
    weights = history.curve("weights")
    assert np.all(weights == weights[0])  # computed once from the NTK at init (paper Sec. 7.2)
    assert weights[0, 0] > 10 * weights[0, 1]  # lambda_b >> lambda_r for a = 4


def test_history_loads_back(run_dir):
    out = run_dir[0]
    history = History.load(out)
    m = json.loads((out / "metrics.json").read_text())
    assert history.curve("steps").tolist() == list(range(200))  # rows: 0-based step indices
    assert history.status == "completed"
    assert history.rel_l2[-1] == pytest.approx(m["rel_l2"])
    assert history.final["weights"] == pytest.approx(m["weights"])
    assert history.spectra_step == [0, 200]  # default --spectra-at 0,end
    assert history.prediction is not None and history.prediction.shape == history.exact.shape


def test_report_is_self_contained(run_dir):
    html = (run_dir[0] / "report.html").read_text()
    assert len(html) > 1_000_000  # plotly.js is embedded, not linked
    assert html.count("window.PlotlyConfig") == 1  # ... and embedded once
    assert html.count("Plotly.newPlot") >= 6
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)
    assert "completed" in html and "poisson" in html


def test_compilation_cache_under_user_cache_dir(run_dir, cache_home):
    import jax

    # one directory per CPU type: a shared home directory never loads code compiled for another CPU
    assert jax.config.jax_compilation_cache_dir == os.path.join(str(cache_home), "pinnlab", "jax", host_tag())
    assert (cache_home / "pinnlab" / "jax" / host_tag()).is_dir()


def test_the_cache_tag_changes_with_the_cpu(monkeypatch):
    import platform

    tag = host_tag()
    assert tag == host_tag() and len(tag) == 12
    monkeypatch.setattr(platform, "machine", lambda: "another-cpu")
    assert host_tag() != tag


def test_report_subcommand_rebuilds(run_dir, tmp_path):
    target = tmp_path / "again.html"
    code, stdout, _ = run_main(["report", str(run_dir[0]), "--out", str(target)])
    assert code == 0 and str(target) in stdout
    assert target.stat().st_size > 1_000_000


@pytest.mark.parametrize("args, value", [
    (["--problem", "navier_stokes"], "navier_stokes"),
    (["--problem", "poisson", "--width", "0"], "'0'"),
    (["--problem", "poisson", "--depth", "-3"], "'-3'"),
    (["--problem", "poisson", "--steps", "0"], "'0'"),
    (["--problem", "poisson", "--lr", "nan"], "'nan'"),
    (["--problem", "poisson", "--lr=-0.1"], "'-0.1'"),
    (["--problem", "poisson", "--batch", "u300"], "u300"),
    (["--problem", "poisson", "--batch", "u=0"], "u=0"),
    (["--problem", "wave", "--batch", "u=10,q=5"], "'q'"),
    (["--problem", "heat", "--c", "3"], "--c 3"),
    (["--problem", "poisson", "--ntk-points", "50"], "--ntk-points 50"),
    (["--problem", "poisson", "--spectra-at", "0,99999"], "99999"),
    (["--problem", "poisson", "--initial-weights", "u=1,z=2"], "'z'"),
])
def test_bad_input_one_line_exit_2(args, value, tmp_path):
    code, stdout, stderr = run_main(["train", *args, "--out", str(tmp_path / "o")])
    assert code == 2
    assert stderr.startswith("pinnlab: error: ") and stderr.count("\n") == 1, stderr
    assert value in stderr
    assert "Traceback" not in stderr and stdout == ""
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_unwritable_out_dir_exit_2_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setattr(Trainer, "__init__", lambda *a, **k: pytest.fail("trained despite a bad --out"))
    code, _, stderr = run_main(["train", "--problem", "poisson", *TINY, "--out", str(blocker / "out")])
    assert code == 2 and stderr.count("\n") == 1
    assert stderr.startswith("pinnlab: error: cannot write to --out") and str(blocker / "out") in stderr


def test_help_lists_every_subcommand_and_option():
    code, stdout, _ = run_main(["--help"])
    assert code == 0
    for command in ("train", "ntk-weights", "report", "reproduce", "lecture"):
        assert command in stdout
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(subparsers.choices) == {"train", "ntk-weights", "report", "reproduce", "lecture"}
    for name, sub in subparsers.choices.items():
        code, text, _ = run_main([name, "--help"])
        assert code == 0
        for action in sub._actions:
            for option in action.option_strings:
                assert option in text, (name, option)
            assert action.help, (name, action.dest)  # every option is documented


def test_ntk_weights_json_matches_engine():
    code, stdout, _ = run_main(["ntk-weights", "--problem", "poisson", "--width", "16", "--seed", "3"])
    assert code == 0
    data = json.loads(stdout)
    from pinnlab.nets import convention

    expected = ntk_weights_at_init(make_problem("poisson"), convention("paper_code", "lecun_normal", width=16), 3)
    assert list(data["weights"]) == ["u", "r"]
    np.testing.assert_allclose(list(data["weights"].values()), expected, rtol=1e-6)


def test_ctrl_c_writes_what_exists_exit_130(tmp_path, monkeypatch):
    advance, calls = Trainer.advance, []

    def interrupted(self, n):
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return advance(self, n)

    monkeypatch.setattr(Trainer, "advance", interrupted)
    out = tmp_path / "out"
    code, _, _ = run_main(["train", "--problem", "poisson", *TINY, "--out", str(out)])
    assert code == 130
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "interrupted" and m["steps"] == 100 and "step 100" in m["message"]
    assert m["rel_l2_step"] == 100
    history = History.load(out)
    assert history.status == "interrupted" and len(history.curve("steps")) == 100
    assert (out / "report.html").exists()


def test_missing_plotly_still_writes_everything(tmp_path, monkeypatch):
    import pinnlab.report

    def no_plotly(history):
        raise ImportError("No module named 'plotly'")

    monkeypatch.setattr(pinnlab.report, "render", no_plotly)
    out = tmp_path / "out"
    code, stdout, _ = run_main(["train", "--problem", "poisson", *TINY, "--steps", "100", "--out", str(out)])
    assert code == 0
    assert "pip install pinnlab[report]" in stdout
    assert (out / "metrics.json").exists() and (out / "history.npz").exists()
    assert not (out / "report.html").exists()
    assert "report.html" not in json.loads((out / "metrics.json").read_text())["files"]


def test_progress_non_tty_prints_about_every_ten_percent():
    stream = io.StringIO()
    bar = cli.Progress(1000, ("u", "r"), stream=stream)
    for step in range(10, 1001, 10):
        bar.update(step, [1.0, 2.0], [3.0, 4.0])
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert "100%" in lines[-1] and "1000/1000" in lines[-1] and "u 1.00e+00" in lines[-1] and "λ" in lines[-1]


def test_progress_tty_redraws_in_place():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = cli.Progress(100, ("u",), stream=stream)
    bar.update(100, [1.0], [1.0])
    bar.close()
    assert stream.getvalue().startswith("\r[") and stream.getvalue().endswith("\n")


def _subprocess(args: list[str], cwd: Path, cache_home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(cache_home))
    return subprocess.run([sys.executable, "-m", "pinnlab", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_subprocess_divergence_exit_1_keeps_files(tmp_path, cache_home):
    out = tmp_path / "div"
    proc = _subprocess(["train", "--problem", "poisson", "--optimizer", "sgd", "--lr", "1.0", *TINY, "--chunk", "50",
                        "--out", str(out)], tmp_path, cache_home)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "diverged" in proc.stderr and "--lr" in proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "diverged" and 0 < m["steps"] < 200
    history = History.load(out)
    assert np.all(np.isfinite(history.curve("losses")))  # up to the last finite step
    assert (out / "report.html").exists()


def test_subprocess_bad_input_exit_2(tmp_path, cache_home):
    proc = _subprocess(["train", "--problem", "poisson", "--width", "0", "--out", str(tmp_path)], tmp_path,
                       cache_home)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "'0'" in proc.stderr and "Traceback" not in proc.stderr


def test_reproduce_smoke_writes_figure_and_numbers(tmp_path):
    out = tmp_path / "paper"
    code, stdout, _ = run_main(["reproduce", "fig4", "--scale", "smoke", "--out", str(out), "--no-progress"])
    assert code == 0 and "fig4" in stdout
    record = json.loads((out / "fig4.json").read_text())
    assert record["scale"] == "smoke" and record["command"] == "pinnlab reproduce fig4 --scale smoke"
    numbers = record["numbers"]
    assert set(numbers) >= {"no weights", "NTK weights", "lambda_b=100", "ntk_weights"}
    assert numbers["lambda_b_over_lambda_r"] > 10  # K_rr dominates K_uu at initialisation
    html = (out / "fig4.html").read_text()
    assert "plotly" in html and "<script src=\"http" not in html
    assert record["machine"]["jax"] and record["machine"]["jaxlib"]  # which JAX computed these numbers


def test_every_registered_figure_has_a_drawing():
    from pinnlab import paper, paper_figures

    assert set(paper_figures.DRAW) == set(paper.FIGURES)  # the experiment of each is stated in paper.FIGURES


def test_reproduce_rejects_unknown_figure(tmp_path):
    code, _, stderr = run_main(["reproduce", "fig9", "--scale", "smoke", "--out", str(tmp_path)])
    assert code == 2 and "fig9" in stderr and "Traceback" not in stderr


def test_output_files_get_the_mode_open_would_give_them(run_dir):
    out = run_dir[0]
    mask = os.umask(0)
    os.umask(mask)
    for name in ("metrics.json", "history.json", "history.npz", "report.html"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~mask, name  # mkstemp's 0600 would hide them


def test_a_rerun_without_a_report_removes_the_old_runs_report(run_dir, tmp_path):
    out = tmp_path / "rerun"
    shutil.copytree(run_dir[0], out)
    code, stdout, _ = run_main(["train", "--problem", "poisson", *TINY, "--no-report", "--out", str(out)])
    assert code == 0 and not (out / "report.html").exists()  # the page described another run
    assert "removed the report.html of an earlier run" in stdout
    assert "report.html" not in json.loads((out / "metrics.json").read_text())["files"]


def test_report_write_failures_are_one_line_with_the_write_exit_code(run_dir, tmp_path):
    src = run_dir[0]
    code, _, err = run_main(["report", str(src), "--out", str(src)])  # a directory is in the way
    assert code == cli.WRITE_FAILED and err.count("\n") == 1 and "cannot write" in err and "in the way" in err, err
    code, _, err = run_main(["report", str(src), "--out", "/proc/pinnlab-nope/report.html"])
    assert code == cli.WRITE_FAILED and "Traceback" not in err and err.count("\n") == 1, err


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XDG_CACHE_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "pinnlab", "ntk-weights", "--problem", "poisson", "--width", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.read(1)  # `| head -c1`: read one byte, then leave
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(120) in (0, 141) and "Traceback" not in err and "BrokenPipe" not in err, err
