"""The dashboard in a real browser: JupyterLab on 127.0.0.1, Debian's chromium driven by Python playwright.

Opens ``notebooks/00_lab.ipynb``, runs its cells up to the dashboard, presses Run, waits for the step
counter and the NTK spectrum to update in the page, switches the weighting on, checks that the weights
panel changes and that the weighted trace shares become equal (Algorithm 1 balances lambda_i Tr K_ii) while
training continues, pauses, and saves a screenshot to ``docs/lab.png`` (used by the
README). A second test checks the ``backend="static"`` fallback the same way; a third runs three labs in one
notebook (two Poisson, then a wave lab) and checks that every figure draws. The server works on a
copy of the notebook in a temporary directory, so nothing it saves lands in the repository.
Skipped only when chromium or playwright are missing (CI installs both; never ``playwright install``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import server_log_errors

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/00_lab.ipynb"
SCREENSHOT = REPO / "docs" / "lab.png"
CELLS_TO_DASHBOARD = 5  # title, Colab install, imports, section text, `lab = Lab(...); lab`
STATIC_NOTEBOOK = "notebooks/static_lab.ipynb"
MULTI_NOTEBOOK = "notebooks/three_labs.ipynb"
# Three dashboards in one notebook: a user saw the third (a wave lab after two Poisson labs) draw an empty figure.
MULTI_CELLS = ('from pinnlab.lab import Lab\n\na = Lab("poisson", width=16)\na',
               'b = Lab("poisson", seed=1, width=16)\nb',
               'c = Lab("wave", width=16, n_b=30, n_r=30, n_ntk=12)\nc')
OUTPUT = ".jp-OutputArea-output"
# The newest value of each weighted trace share: the dashboard's traces with meta "share:<term>" hold
# lambda_i Tr K_ii / sum_j lambda_j Tr K_jj per logged step.
SHARES_JS = """() => { const g = document.querySelector('.jp-OutputArea-output .js-plotly-plot');
    if (!g || !g.data) return null;
    return g.data.filter(d => typeof d.meta === 'string' && d.meta.startsWith('share:'))
        .map(d => [d.meta.slice(6), d.y && d.y.length ? Number(d.y[d.y.length - 1]) : null]); }"""


def _notebook(*sources: str, name: str = "cell") -> dict:
    """A notebook with one code cell per source, no outputs."""
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "language": "python",
                                                                            "display_name": "Python 3"}},
            "cells": [{"cell_type": "code", "id": f"{name}-{i}", "metadata": {}, "execution_count": None,
                       "outputs": [], "source": source} for i, source in enumerate(sources)]}


def _static_notebook() -> dict:
    """A one-cell notebook showing the lab with the static backend (re-rendered plain figures)."""
    return _notebook('from pinnlab.lab import Lab\n\nlab = Lab("poisson", backend="static")\nlab', name="static-lab")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"jupyter lab did not answer {url} within {timeout:.0f} s")


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    """A JupyterLab server on a free port with a token, rooted at the repository; shut down afterwards."""
    pytest.importorskip("jupyterlab")
    home = tmp_path_factory.mktemp("jupyter")
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                            "checkForUpdates": False}))
    root = home / "root"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / NOTEBOOK, root / NOTEBOOK)
    (root / STATIC_NOTEBOOK).write_text(json.dumps(_static_notebook()))
    (root / MULTI_NOTEBOOK).write_text(json.dumps(_notebook(*MULTI_CELLS, name="lab")))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "PINNLAB_SMOKE": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.news_url=", "--LabApp.expose_app_in_browser=True"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            _wait_http(f"{base}/api/status?token={token}", 90, proc)
        except (RuntimeError, TimeoutError) as e:
            log.flush()
            raise RuntimeError(f"{e}\n{(home / 'server.log').read_text()[-2000:]}") from None
        yield base, token
    finally:
        # SIGTERM: the server shuts its kernels down and exits at once. (SIGINT is no good here: a process
        # started in the background, as CI jobs often are, inherits SIGINT ignored, and the server then sat
        # out the whole 30 s wait below before being killed.)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group of the server started here, and its kernels
            proc.wait(10)
        log.close()
    errors = server_log_errors((home / "server.log").read_text(errors="replace"))  # the kernels' log
    assert not errors, "the server's kernels logged errors:\n" + "\n".join(errors[:20])


# The page position of point ``i`` of the first trace whose name starts with ``name`` (plotly's own axes).
POINT_JS = f"""([name, i]) => {{ const gd = document.querySelector('{OUTPUT} .js-plotly-plot');
  const t = gd.data.find(d => (d.name || '').startsWith(name)), L = gd._fullLayout, r = gd.getBoundingClientRect();
  const ax = L['xaxis' + t.xaxis.slice(1)], ay = L['yaxis' + t.yaxis.slice(1)];
  return [r.left + ax._offset + ax.c2p(t.x[i]), r.top + ay._offset + ay.c2p(t.y[i])]; }}"""


def _step(page) -> int:
    """The step shown by the dashboard's counter (the first one in ``page``, a page or a cell's locator)."""
    text = page.locator(f"{OUTPUT} .widget-html:has-text('steps/s')").first.inner_text()
    match = re.search(r"step ([\d,]+)", text)
    return int(match.group(1).replace(",", "")) if match else -1


def _paths(page, subplot: str) -> list[str]:
    """The SVG path data of every line in one subplot (``x4y4``: the spectra, ``x2y2``: the weights)."""
    return page.eval_on_selector_all(f"{OUTPUT} .subplot.{subplot} .scatterlayer path.js-line",
                                     "els => els.map(e => e.getAttribute('d') || '')")


def _shares(page) -> dict[str, float]:
    """The newest weighted trace share per term, e.g. ``{"u": 0.01, "r": 0.99}``."""
    return {term: y for term, y in page.evaluate(SHARES_JS) or [] if y is not None}


def _texts(page) -> list[str]:
    """The dashboard's text widgets (counter, status, error), for failure messages."""
    return [t[:300] for t in page.locator(f"{OUTPUT} .widget-html").all_inner_texts() if t.strip()]


def _tick_value(text: str) -> float:
    """A plotly tick label as a number: ``"50"``, ``"2k"``, or ``"10\u200b2\u200b"`` (10^2, power format)."""
    parts = text.replace("\u2212", "-").strip().split("\u200b")
    try:
        if len(parts) > 1 and parts[1]:
            return float(parts[0]) ** int(parts[1])
        scale = {"k": 1e3, "M": 1e6}.get(parts[0][-1:], 1.0)
        return float(parts[0][:-1] if scale != 1.0 else parts[0]) * scale
    except ValueError:
        return float("nan")


def _until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


@pytest.fixture
def page(browser, tmp_path):
    """A fresh page; on failure its screenshot is kept next to the test's temporary files."""
    page = browser.new_page(viewport={"width": 1500, "height": 1200})
    yield page
    page.screenshot(path=str(tmp_path / "last_page.png"))
    page.close()


def _open_and_run(page, jupyter, notebook: str, last_cell: int) -> list[str]:
    """Open ``notebook`` in JupyterLab and run its cells up to ``last_cell``; returns the page-error list."""
    base, token = jupyter
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # ?reset: a fresh layout, so a notebook left open by an earlier test is not restored next to this one
    page.goto(f"{base}/lab/tree/{notebook}?reset&token={token}", timeout=120_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.wait_for_function("""(path) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
        return w && w.context && w.context.path === path && w.sessionContext.session
            && w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle'; }""",
                           arg=notebook, timeout=120_000)
    # Run the cells through JupyterLab's own commands (simulated key presses can be lost while it loads).
    page.evaluate("""async (last) => {
        const app = window.jupyterapp, panel = app.shell.currentWidget;
        await panel.sessionContext.ready;
        panel.content.activeCellIndex = last;
        if (last > 0) await app.commands.execute('notebook:run-all-above');
        await app.commands.execute('notebook:run-cell');
    }""", last_cell)
    return errors


def test_dashboard_trains_live_in_jupyterlab(page, jupyter):
    errors = _open_and_run(page, jupyter, NOTEBOOK, CELLS_TO_DASHBOARD - 1)

    run = page.locator(f"{OUTPUT} button:has-text('Run')").first
    run.wait_for(timeout=180_000)
    page.wait_for_selector(f"{OUTPUT} .subplot.x4y4 .scatterlayer path.js-line", timeout=60_000)
    assert _step(page) == 0
    spectra_before = _paths(page, "x4y4")
    assert any(len(d) > 50 for d in spectra_before)  # the step-0 spectra are drawn before training
    # lift the preset's 40,000-step budget, as a lecturer would: on a fast machine the lab reached it (and
    # paused itself) before this test's Pause click
    assert "/ 40,000" in " ".join(_texts(page)), _texts(page)  # the counter shows the budget
    budget = page.locator(f"{OUTPUT} .widget-text", has=page.locator("label", has_text="budget")).locator("input")
    budget.first.fill("0")
    budget.first.press("Enter")
    _until(lambda: "/ 40,000" not in " ".join(_texts(page)), 30, f"the budget to be lifted ({_texts(page)})")

    t_run = time.monotonic()
    run.click()
    _until(lambda: _step(page) > 0, 120, "the step counter to move")
    first_frame = time.monotonic() - t_run
    _until(lambda: _paths(page, "x4y4") != spectra_before, 60, "the spectrum to be redrawn")
    _until(lambda: _step(page) >= 5_000, 120, "5,000 steps")

    weights_before, unweighted = _paths(page, "x2y2"), _shares(page)
    assert len(unweighted) == 2 and unweighted["u"] < 0.1 < unweighted["r"], unweighted  # the boundary starves
    page.locator(f"{OUTPUT} button:has-text('NTK (Alg. 1)')").first.click()
    toggled_at = _step(page)
    _until(lambda: _paths(page, "x2y2") != weights_before, 60, f"the weights curve to change ({_texts(page)})")
    balanced = lambda s: len(s) == 2 and all(abs(v - 0.5) < 1e-3 for v in s.values())  # noqa: E731
    _until(lambda: balanced(_shares(page)), 60, f"Algorithm 1 to balance the trace shares ({_shares(page)})")
    _until(lambda: _step(page) > toggled_at + 5_000, 120, "5,000 more steps after the toggle")
    # the weights axis now reaches lambda_u ~ 10^2..10^3 (it spanned 1 before the toggle)
    ticks = page.eval_on_selector_all(f"{OUTPUT} .yaxislayer-above .y2tick text", "els => els.map(e => e.textContent)")
    assert max(_tick_value(t) for t in ticks) >= 50, ticks

    page.locator(f"{OUTPUT} button:has-text('Pause')").first.click()
    _until(lambda: page.locator(f"{OUTPUT} button:has-text('Run')").count() > 0, 30, "Pause to act")
    paused = _step(page)
    time.sleep(1.0)
    assert _step(page) == paused  # Pause stopped the kernel's training task

    dashboard = page.locator(f"{OUTPUT}:has(.subplot.x4y4)").first
    dashboard.scroll_into_view_if_needed()
    time.sleep(0.5)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    dashboard.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 20_000
    # a click on the third eigenvalue of lambda K_rr draws its eigenvector in place of the prediction
    page.mouse.click(*page.evaluate(POINT_JS, ["λ·K_rr", 2]))
    _until(lambda: "Click it again to hide" in " ".join(_texts(page)), 30, f"the eigenvector ({_texts(page)})")
    legend = page.eval_on_selector_all(f"{OUTPUT} .legendtext", "els => els.map(e => e.textContent)")
    assert any(t.startswith("mode 3 of λ·K_rr") and "steps to learn" in t for t in legend), legend
    assert not [e for e in errors if "pinnlab" in e or "plotly" in e.lower()], errors
    print(f"browser: Run -> first counter update {first_frame:.1f} s")


def _execute(page, code: str) -> None:
    """Run ``code`` in the open notebook's kernel (as a later cell would)."""
    page.evaluate("""async (code) => { const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
        await k.requestExecute({code, silent: true}).done; }""", code)


def test_static_backend_rerenders_in_jupyterlab(page, jupyter):
    errors = _open_and_run(page, jupyter, STATIC_NOTEBOOK, 0)
    run = page.locator(f"{OUTPUT} button:has-text('Run')").first
    run.wait_for(timeout=180_000)
    # The header keeps two rows' height: when the counter's or the status's text grows and wraps the row, the
    # weighting toggle below stays where the pointer is (bench_click once clicked "lr ×" instead of it).
    toggle = page.locator(f"{OUTPUT} button:has-text('NTK (Alg. 1)')").first
    y0 = toggle.bounding_box()["y"]
    _execute(page, """lab.controls.status.value = '<span style="display:inline-block;width:900px">wide</span>'""")
    wide = page.locator(f"{OUTPUT} span:has-text('wide')").first
    wide.wait_for(timeout=30_000)
    assert wide.bounding_box()["y"] > run.bounding_box()["y"] + 10  # the status did wrap to a second row
    assert toggle.bounding_box()["y"] == y0
    _execute(page, "lab.controls.status.value = ''")
    page.wait_for_selector(f"{OUTPUT} .js-plotly-plot .subplot.x4y4 .scatterlayer path.js-line", timeout=60_000)
    losses_before = _paths(page, "xy")
    run.click()
    _until(lambda: _step(page) > 0, 120, "the step counter to move")
    _until(lambda: _paths(page, "xy") != losses_before, 60, "the static figure to be re-rendered")
    page.locator(f"{OUTPUT} button:has-text('Pause')").first.click()
    _until(lambda: page.locator(f"{OUTPUT} button:has-text('Run')").count() > 0, 30, "Pause to act")
    assert page.locator(f"{OUTPUT} .js-plotly-plot").count() == 1  # re-rendered in place, not appended
    assert not [e for e in errors if "pinnlab" in e or "plotly" in e.lower()], errors


def _cell_lines(page, index: int) -> list[str]:
    """The SVG path data of every line in the figure of code cell ``index``."""
    lines = page.locator(".jp-Notebook .jp-CodeCell").nth(index).locator(f"{OUTPUT} .scatterlayer path.js-line")
    return lines.evaluate_all("els => els.map(e => e.getAttribute('d') || '')")


def test_three_labs_in_one_notebook_all_draw(page, jupyter):
    console: list[str] = []  # the browser console's errors, for the failure message
    page.on("console", lambda m: console.append(m.text[:300]) if m.type == "error" else None)
    errors = _open_and_run(page, jupyter, MULTI_NOTEBOOK, len(MULTI_CELLS) - 1)
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    for i in range(len(MULTI_CELLS)):
        cell = cells.nth(i)
        cell.locator(f"{OUTPUT} button:has-text('Run')").first.wait_for(timeout=240_000)
        cell.scroll_into_view_if_needed()  # as a user would (JupyterLab may skip painting off-screen cells)
        _until(lambda: any(len(d) > 50 for d in _cell_lines(page, i)), 90,
               f"lab {i + 1} of {len(MULTI_CELLS)} to draw its step-0 figure (page errors {errors}, console {console})")
    assert page.locator(f".jp-Notebook {OUTPUT} .js-plotly-plot").count() == len(MULTI_CELLS)

    third = cells.nth(len(MULTI_CELLS) - 1)
    third.scroll_into_view_if_needed()
    before = _cell_lines(page, len(MULTI_CELLS) - 1)
    third.locator(f"{OUTPUT} button:has-text('Run')").first.click()
    _until(lambda: _step(third) > 0, 120, "the wave lab's step counter to move")
    _until(lambda: _cell_lines(page, len(MULTI_CELLS) - 1) != before, 60, "the wave lab's figure to be redrawn")
    third.locator(f"{OUTPUT} button:has-text('Pause')").first.click()
    _until(lambda: third.locator(f"{OUTPUT} button:has-text('Run')").count() > 0, 30, "Pause to act")
    for i in range(len(MULTI_CELLS) - 1):  # the first two labs still show their figures
        assert any(len(d) > 50 for d in _cell_lines(page, i)), i
    assert not [e for e in errors if "pinnlab" in e or "plotly" in e.lower()], errors
