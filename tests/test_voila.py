"""The lecture mode: ``pinnlab lecture`` serves the dashboard as a Voila page, code hidden.

The command-line checks run in-process (unknown presets, a missing Voila). The server checks start the real
command (``python -m pinnlab lecture poisson --no-browser --port P``) once per module: its URL's query string
reaches the kernel (``?preset=``), and in Debian's chromium, driven by Python playwright, the page shows the
dashboard before anything trains, Run advances the step counter and redraws the figure, and switching the
weighting to Algorithm 1 mid-run makes the weighted trace shares equal in the page.
Skipped only when voila, chromium or playwright are missing (CI installs all three; never
``playwright install``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pinnlab import lecture
from pinnlab.cli import main
from tests.conftest import server_log_errors

REPO = Path(__file__).resolve().parent.parent
SHARES_JS = """() => { const g = document.querySelector('.js-plotly-plot');
    if (!g || !g.data) return null;
    return g.data.filter(d => typeof d.meta === 'string' && d.meta.startsWith('share:'))
        .map(d => [d.meta.slice(6), d.y && d.y.length ? Number(d.y[d.y.length - 1]) : null]); }"""


# -- choosing the preset and layout ---------------------------------------------------------------------------
def test_the_url_overrides_the_command_line_which_overrides_the_default():
    assert lecture.choose({}) == ("poisson", "presentation")
    assert lecture.choose({lecture.PRESET_ENV: "wave"}) == ("wave", "presentation")
    assert lecture.choose({lecture.PRESET_ENV: "wave", "QUERY_STRING": "preset=heat&layout=notebook"}) == (
        "heat", "notebook")
    assert lecture.choose({"QUERY_STRING": "x=1&preset=fig1&preset=fig4"}) == ("fig4", "presentation")
    assert lecture.choose({lecture.LAYOUT_ENV: "notebook", "QUERY_STRING": ""}) == ("poisson", "notebook")


def test_an_unknown_preset_in_the_url_is_shown_with_the_valid_ones():
    from pinnlab.lab.state import PRESETS

    shown = lecture.lecture_lab({"QUERY_STRING": "preset=nope"})
    text = shown._repr_html_()
    assert "unknown preset &#x27;nope&#x27;" in text and all(name in text for name in PRESETS)
    assert "unknown layout 'big'" in repr(lecture.lecture_lab({"QUERY_STRING": "layout=big"}))


def test_the_packaged_notebook_only_builds_the_lab(tmp_path):
    nb = json.loads(lecture.NOTEBOOK.read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in cells)  # committed without outputs
    code = "".join("".join(c["source"]) for c in cells)
    assert "lecture_lab()" in code
    # nothing trains while Voila executes the notebook: the page shows at once and Run starts the run
    assert not re.search(r"\.(run|arun|play|demo|step_once)\(", code), code


# -- the command line -----------------------------------------------------------------------------------------
def test_lecture_rejects_an_unknown_preset_naming_the_valid_ones(capsys):
    from pinnlab.lab.state import PRESETS

    assert main(["lecture", "nope", "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pinnlab: error: unknown preset 'nope'; choose one of "), err
    assert all(name in err for name in PRESETS), err
    assert main(["lecture", "--layout", "big"]) == 2  # argparse's choices
    assert "invalid choice: 'big'" in capsys.readouterr().err


def test_lecture_without_voila_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "voila", None)  # what `import voila.app` meets when voila is missing
    monkeypatch.setitem(sys.modules, "voila.app", None)
    assert main(["lecture", "wave", "--no-browser"]) == 2
    assert 'pip install "pinnlab[jupyter]"' in capsys.readouterr().err


# -- the server ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``pinnlab lecture poisson --no-browser`` on a free port; its base URL. SIGTERM stops it afterwards."""
    pytest.importorskip("voila", reason="voila is not installed (pip install 'pinnlab[jupyter]')")
    home = tmp_path_factory.mktemp("lecture")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "OPENBLAS_NUM_THREADS": "1",
           "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # JAX set it in this process; a lecturer's shell has the CLI's default
    log_path = home / "server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pinnlab", "lecture", "poisson", "--no-browser", f"--port={port}"],
                            env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Voila prints its address once it listens (on the next free port if this one was taken meanwhile).
        found: list[str] = []

        def listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"pinnlab lecture exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
            found[:] = re.findall(r"(http://127\.0\.0\.1:\d+/)", log_path.read_text())
            return bool(found)

        _until(listening, 90, "Voila to listen")
        yield found[0]
    finally:
        proc.send_signal(signal.SIGTERM)  # Voila stops its ioloop and shuts its kernels down
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group started here: the server and its kernels
            proc.wait(10)
        log.close()
    text = log_path.read_text(errors="replace")
    errors = server_log_errors(text)
    assert not errors, "the server's kernels logged errors:\n" + "\n".join(errors[:20])
    assert "cpu_aot_loader" not in text  # the lecturer's terminal: XLA's false SIGILL lines stay silenced


def test_the_url_preset_reaches_the_kernel(server):
    # An unknown preset is cheap to render (no dashboard is built) and proves the kernel saw the query string.
    with urllib.request.urlopen(f"{server}?preset=nope", timeout=120) as r:
        body = r.read().decode()
    assert "unknown preset" in body and "nope" in body and "wave_paper" in body
    assert "lecture_lab" not in body  # the code is hidden


def _step(page) -> int:
    """The step shown by the dashboard's counter."""
    text = page.locator(".widget-html:has-text('steps/s')").first.inner_text()
    match = re.search(r"step ([\d,]+)", text)
    return int(match.group(1).replace(",", "")) if match else -1


def _lines(page) -> list[str]:
    return page.eval_on_selector_all(".js-plotly-plot .scatterlayer path.js-line",
                                     "els => els.map(e => e.getAttribute('d') || '')")


def _shares(page) -> dict[str, float]:
    """The newest value of each weighted trace share (traces with ``meta="share:<term>"``)."""
    return {term: y for term, y in page.evaluate(SHARES_JS) or [] if y is not None}


def test_lecture_page_trains_live_in_voila(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    t0 = time.monotonic()
    try:
        page.goto(server, timeout=120_000)
        run = page.locator("button:has-text('Run')").first
        run.wait_for(timeout=120_000)
        _until(lambda: any(len(d) > 50 for d in _lines(page)), 60, "the step-0 spectra and prediction")
        assert page.locator(".jp-InputArea, .jp-CodeMirrorEditor").count() == 0  # code hidden
        assert _step(page) == 0  # shown before any training
        shown = time.monotonic() - t0
        lines = _lines(page)

        t_run = time.monotonic()
        run.click()
        _until(lambda: _step(page) > 0, 90, "the step counter to move")
        first_frame = time.monotonic() - t_run
        _until(lambda: _lines(page) != lines, 30, "the figure to be redrawn")
        _until(lambda: len(_shares(page)) == 2, 30, "the weighted trace shares")
        unweighted = _shares(page)
        assert unweighted["u"] < 0.1 < unweighted["r"], unweighted  # unweighted: the boundary's share is tiny

        t_toggle, toggled_at = time.monotonic(), _step(page)
        page.locator("button:has-text('NTK (Alg. 1)')").first.click()
        balanced = lambda s: len(s) == 2 and all(abs(v - 0.5) < 1e-3 for v in s.values())  # noqa: E731
        _until(lambda: balanced(_shares(page)), 45, f"Algorithm 1 to balance the shares ({_shares(page)})")
        balanced_after = time.monotonic() - t_toggle
        assert not [e for e in errors if "pinnlab" in e or "plotly" in e.lower()], errors
        print(f"voila: page with the dashboard {shown:.1f} s, Run -> first counter update {first_frame:.1f} s, "
              f"toggle at step {toggled_at:,} -> shares balanced {balanced_after:.1f} s")
    finally:
        page.screenshot(path=str(tmp_path / "last_page.png"))
        page.close()
