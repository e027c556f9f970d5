"""Click latency of the live lab while it trains, in a real browser (JupyterLab + Debian chromium).

Run from the repository root: ``python benchmarks/bench_click.py [--busy N] [--label before]``.
For each preset (default ``poisson`` and ``wave``) it opens a generated one-cell notebook,
``import pinnlab; lab = pinnlab.Lab(PRESET); lab``, presses Run, lets the counter move for a few
seconds, then clicks the weighting toggle ("NTK (Alg. 1)" / "off (λ = 1)") again and again, a few
seconds apart, and times each click (``time.time()`` right before a CDP mouse click; chromium and the
kernel share the machine's clock):

* ``kernel_received``: until the toggle's value reached the kernel (a ``observe`` callback this script
  adds to the lab's ToggleButtons after the cell ran; it fires when the kernel handles the comm message);
* ``kernel_acted``: until the lab recorded the change in ``lab.events`` (``{"time", "step", "field",
  "value"}``; only when the lab has that attribute);
* ``figure``: until the figure in the page shows the new rule, polled on every animation frame in the
  page (``gd._fullData``): the weighted trace shares (traces whose ``meta`` starts with ``"share:"``,
  within 1.25x of each other when Algorithm 1 is on, more than 1.5x apart when off) if the figure has
  them, else the last values of the weight traces ``λ_*`` (all exactly 1 when the rule is off). If the
  figure read the target rule before the click too, the judged values must also have changed. A click
  to "off" after which the λ_* curves go flat at their last NTK values instead of dropping to 1 (a lab
  bug seen in both measured versions) counts as missed in ``figure``; its time to the first frame of
  the flat part is kept apart, in ``figure_frozen``;
* ``dispatch``: until the page's ``click`` listener ran (the browser's own input delay);
* per click in ``raw_clicks``, from a log of every figure edit the kernel sends and every acknowledgement
  of one (the front end drew it): ``inflight_acked_s`` (the frame in flight when the kernel acted was
  acknowledged; None when none was in flight), ``click_frame_sent_s`` and ``click_frame_acked_s`` (the first
  frame sent after the kernel acted). The log follows ``lab.figure`` as it was when the lab was shown.

Every ``--pause-every`` toggles it also presses Pause (``pause_shown``: until the button reads "Run"
again; ``pause_kernel``: until the kernel's click handler ran) and Run (``run_counter``: until the step
counter moves). A long-task ``PerformanceObserver`` and a 100 ms ``setTimeout`` probe record how busy
the page's main thread is during the clicks. ``--busy N`` runs N busy-loop processes beside it all
(default 2: "a 2-core machine with other load"). Results (median, worst, count per latency; steps/s)
are printed and merged into ``--out`` under ``(label, busy)``.

Clicking starts once the counter has moved in two 1.5 s windows in a row (after the first compile). By
default the kernel lifts the preset's step budget first (``--kernel-setup``), so that the lab trains
through every click instead of pausing itself at 40,000 steps. ``--rev REV`` measures pinnlab as committed
at REV (``git archive`` into the temporary directory), e.g. ``--rev 1e93085 --label before``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from importlib import metadata
from pathlib import Path

from _util import CHROMIUM, busy_loops  # benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parent.parent
OUT = ".jp-OutputArea-output"

# In-page instruments, installed before JupyterLab loads: click times, long tasks, setTimeout lag.
PROBES = """(() => {
  const b = window.__bench = {clicks: [], targets: [], long: [], lag: []};
  document.addEventListener('click', e => { b.clicks.push(Date.now());
    b.targets.push(((e.target.closest && e.target.closest('button')) || e.target).innerText.trim().slice(0, 24)); },
    true);
  try {
    new PerformanceObserver(l => { for (const e of l.getEntries())
      b.long.push([performance.timeOrigin + e.startTime, e.duration]); }).observe({entryTypes: ['longtask']});
  } catch (e) {}
  let due = Date.now() + 100;
  const tick = () => { const now = Date.now(); b.lag.push([now, now - due]); due = now + 100; setTimeout(tick, 100); };
  setTimeout(tick, 100);
})();"""

# The rule the figure shows: "on", "off" or "?" (plus the values it judged, and the step it reached).
FIGURE_STATE = """() => {
  const gd = document.querySelector('OUT .js-plotly-plot');
  const data = gd && (gd._fullData || gd.data);
  if (!data) return {state: '?', kind: 'none'};
  const last = a => (a && a.length) ? Number(a[a.length - 1]) : NaN;
  let tr = data.filter(t => typeof t.meta === 'string' && t.meta.startsWith('share:')), kind = 'share';
  if (!tr.length) { tr = data.filter(t => typeof t.name === 'string' && t.name.startsWith('λ_')); kind = 'weight'; }
  const v = tr.map(t => last(t.y)).filter(Number.isFinite), x = Math.max(...tr.map(t => last(t.x)));
  let state = '?';
  if (v.length && kind === 'share') {
    const r = Math.max(...v) / Math.min(...v);
    state = r < 1.25 ? 'on' : r > 1.5 ? 'off' : '?';
  } else if (v.length) {
    state = v.every(y => Math.abs(y - 1) < 1e-6) ? 'off' : v.some(y => Math.abs(y - 1) > 1e-3) ? 'on' : '?';
  }
  return {state, kind, values: v, step: x};
}""".replace("OUT", OUT, 1)

# The figure shows the click: the rule it reads is the target and, if it read so before the click too (a lost
# click, or weights that froze instead of resetting), the judged values changed since.
# A lab that freezes the weights at their last values when the rule goes off (instead of setting them to 1) shows
# "off" as a flat weight curve: the largest λ_* unchanged from a step after the click's for FROZEN_STEPS steps.
# That is only known FROZEN_STEPS later, so such a click counts as shown at the first frame that drew the flat
# part's first point (`shown`, from a per-frame log of the figure's last step).
FROZEN_STEPS = 300  # three refresh periods of the default labs (update_every = 100)
SHOWN = """(a) => { const s = (FIGURE_STATE)();
  if (window.__benchWait !== a.n) { window.__benchWait = a.n; window.__benchHist = []; }
  window.__benchHist.push([Date.now(), s.step]);
  if (s.state === a.want)
    return (a.before.state !== a.want || JSON.stringify(s.values) !== JSON.stringify(a.before.values)) && s;
  if (a.want !== 'off') return false;
  const gd = document.querySelector('OUT .js-plotly-plot'), data = gd._fullData || gd.data;
  const lam = data.filter(t => typeof t.name === 'string' && t.name.startsWith('λ_') && t.y && t.y.length);
  if (!lam.length) return false;
  const dist = t => Math.abs(t.y[t.y.length - 1] - 1), far = Math.max(...lam.map(dist));
  const t = lam.find(t => dist(t) === far);
  if (far < 1e-3) return false;
  const y = t.y, x = t.x, n = y.length;
  let k = n - 1;
  while (k > 0 && y[k - 1] === y[n - 1]) k--;
  if (!(x[k] > a.before.step && x[n - 1] - x[k] >= FROZEN)) return false;
  const first = window.__benchHist.find(([, st]) => st >= x[k]);
  return {...s, kind: 'weight-frozen', shown: first ? first[0] : window.__benchHist[0][0], flat_from: x[k]}; }
""".replace("FIGURE_STATE", FIGURE_STATE).replace("OUT", OUT).replace("FROZEN", str(FROZEN_STEPS))

COUNTER_STEP = """() => {
  const el = [...document.querySelectorAll('OUT .widget-html')].find(e => e.innerText.includes('steps/s'));
  const m = el && el.innerText.match(/step ([\\d,]+)/);
  return m ? Number(m[1].replace(/,/g, '')) : -1;
}""".replace("OUT", OUT, 1)
SHOWN_FULL = """(a) => { const s = (SHOWN)(a);
  return s && {...s, counter: (COUNTER_STEP)(), dispatch: window.__bench.clicks[a.n] || null,
               clicked: window.__bench.targets[a.n] || null}; }
""".replace("(SHOWN)", f"({SHOWN})").replace("(COUNTER_STEP)", f"({COUNTER_STEP})")
COUNTER_ABOVE = COUNTER_STEP.replace("() =>", "(s0) =>").replace("return m ?",
                                                                "return m && Number(m[1].replace(/,/g, '')) > s0 ?")

# Resolves with Date.now() at the first animation frame where `cond` holds, or null after `ms`.
WAIT = """async ([cond, arg, ms]) => {
  const f = eval('(' + cond + ')'), end = Date.now() + ms;
  while (Date.now() < end) {
    const r = f(arg);
    if (r) return {t: Date.now(), r};
    await new Promise(res => requestAnimationFrame(res));
  }
  return null;
}"""

RUN_BUTTON_IS = "(text) => [...document.querySelectorAll('OUT button')].some(b => b.innerText.trim() === text)".replace(
    "OUT", OUT)

# Before a click: which rule button is active, what the figure shows, clicks so far, whether it is paused.
# and where the buttons are now (the same round trip; the layout can shift while it trains).
PRE = """() => {
  const find = (sel, text) => [...document.querySelectorAll(sel)].find(b => b.innerText.trim() === text);
  const at = b => { if (!b) return null; const r = b.getBoundingClientRect();
                    return [r.x + r.width / 2, r.y + r.height / 2]; };
  const on = find('OUT .widget-toggle-buttons button', 'NTK (Alg. 1)');
  const run = find('OUT button', 'Run') || find('OUT button', 'Pause');
  return {active: on && on.classList.contains('mod-active') ? 'on' : 'off', figure: (FIGURE_STATE)(),
          clicks: window.__bench.clicks.length, paused: (RUN_BUTTON_IS)('Run'),
          at: {on: at(on), off: at(find('OUT .widget-toggle-buttons button', 'off (λ = 1)')), run: at(run)}}; }"""
PRE = PRE.replace("OUT", OUT).replace("(FIGURE_STATE)", f"({FIGURE_STATE})").replace("(RUN_BUTTON_IS)",
                                                                                   f"({RUN_BUTTON_IS})")

KERNEL_EXEC = """async (code) => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const fut = k.requestExecute({code, store_history: false});
  let out = '';
  fut.onIOPub = m => { if (m.header.msg_type === 'stream') out += m.content.text;
                       if (m.header.msg_type === 'error') out += m.content.ename + ': ' + m.content.evalue; };
  await fut.done;
  return out;
}"""

# Run in the kernel after the lab is shown: log when the toggle's value and the Run/Pause clicks reach it.
INSTRUMENT = """
import json as _bj, time as _bt, ipywidgets as _bw
_bench_events = []
def _bench_walk(w, seen=None):
    seen = set() if seen is None else seen
    if id(w) in seen:
        return
    seen.add(id(w))
    yield w
    for c in getattr(w, "children", ()) or ():
        yield from _bench_walk(c, seen)
_bench_all = list(_bench_walk(lab.widget))
_bench_rule = [w for w in _bench_all if isinstance(w, _bw.ToggleButtons) and "NTK (Alg. 1)" in w._options_labels][0]
_bench_run = [w for w in _bench_all if isinstance(w, _bw.Button) and w.description in ("Run", "Pause")][0]
_bench_rule.observe(lambda ch: _bench_events.append({"time": _bt.time(), "step": lab.step, "field": "rule",
                                                     "value": ch["new"]}), "value")
_bench_run.on_click(lambda b: _bench_events.append({"time": _bt.time(), "step": lab.step, "field": "run_button",
                                                    "value": b.description}))
# every figure edit the kernel sends (Plotly.update: a frame) and every acknowledgement of one (drawn)
_bench_frames, _bench_acks, _bench_fig = [], [], lab.figure
_bench_send = _bench_fig._send_update_msg
def _bench_send_logged(*args, **kwargs):
    _bench_frames.append([_bt.time(), _bench_fig._last_trace_edit_id + 1, lab.step])
    return _bench_send(*args, **kwargs)
_bench_fig._send_update_msg = _bench_send_logged
_bench_fig.observe(lambda ch: ch["new"] and _bench_acks.append([_bt.time(), ch["new"].get("trace_edit_id")]),
                   "_js2py_traceDeltas")
import pinnlab as _bp
print("instrumented", _bench_rule.value, _bp.__file__)
"""

NO_BUDGET = 'if "budget" in type(lab.state).__dataclass_fields__: lab.set(budget=0); print("budget lifted")'

DUMP = """print(_bj.dumps({"bench": _bench_events, "events": [dict(e) for e in getattr(lab, "events", None) or []]
                  if hasattr(lab, "events") else None, "frames": _bench_frames, "acks": _bench_acks}, default=str))"""


def notebook(preset: str) -> dict:
    cell = {"cell_type": "code", "id": "lab", "metadata": {}, "execution_count": None, "outputs": [],
            "source": f'import pinnlab\n\nlab = pinnlab.Lab("{preset}")\nlab'}
    return {"nbformat": 4, "nbformat_minor": 5, "cells": [cell],
            "metadata": {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}}


def log(*args) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def start_jupyter(home: Path, source: Path) -> tuple[subprocess.Popen, str]:
    """JupyterLab on 127.0.0.1 (token, private settings/runtime dirs, the app exposed to the page)."""
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(source), os.environ.get("PYTHONPATH")))),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "ws"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={home / 'root'}", "--LabApp.news_url=", "--LabApp.expose_app_in_browser=True"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, env=env, stdout=open(home / "server.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((home / "server.log").read_text()[-2000:])
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                return proc, f"{base}/lab/tree/%s?reset&token={token}"
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("jupyter lab did not start")


BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@contextlib.contextmanager
def lab_server(rev: str | None):
    """A JupyterLab server for pinnlab as in this checkout, or as committed at ``rev`` (``git archive`` into
    a temporary directory); yields ``(url % notebook_name, root)``, the notebooks' folder."""
    home = Path(tempfile.mkdtemp(prefix="bench_click_"))
    try:
        (home / "root").mkdir()
        source = REPO
        if rev:
            source = home / "src"
            source.mkdir()
            archive = subprocess.run(["git", "archive", rev, "pinnlab"], cwd=REPO, capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
        server, url = start_jupyter(home, source)
        try:
            yield url, home / "root"
        finally:
            stop(server)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def wait_page(page, cond: str, arg=None, timeout_s: float = 30.0) -> dict | None:
    return page.evaluate(WAIT, [cond, arg, int(timeout_s * 1000)])


def click_at(page, xy) -> float:
    """A real mouse click (CDP input events) at ``xy``; returns ``time.time()`` just before it."""
    page.mouse.move(*xy)
    t0 = time.time()
    page.mouse.click(*xy)
    return t0


def summary(values: list[float | None]) -> dict:
    got = [v for v in values if v is not None]
    return {"n": len(values), "missed": len(values) - len(got),
            "median_s": round(statistics.median(got), 3) if got else None,
            "worst_s": round(max(got), 3) if got else None,
            "all_s": [None if v is None else round(v, 3) for v in values]}



def run_notebook(page, url: str, name: str) -> None:
    """Open notebook ``name`` in JupyterLab, wait for its kernel, and run its first cell (without waiting)."""
    page.goto(url % name, timeout=120_000)
    page.wait_for_function("""(p) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
        return w && w.context && w.context.path === p && w.sessionContext.session
            && w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle'; }""",
                           arg=name, timeout=120_000)
    page.evaluate("""async () => { const app = window.jupyterapp, panel = app.shell.currentWidget;
        await panel.sessionContext.ready; panel.content.activeCellIndex = 0;
        await app.commands.execute('notebook:run-cell'); }""")


def open_lab(page, url: str, name: str) -> float:
    """Open notebook ``name`` (its one cell builds the lab), run its cell and wait until the dashboard is
    shown and the kernel idle; returns the seconds that took."""
    t_open = time.time()
    run_notebook(page, url, name)
    page.locator(f"{OUT} button", has_text="Run").first.wait_for(timeout=240_000)
    page.wait_for_selector(f"{OUT} .js-plotly-plot", timeout=120_000)
    page.wait_for_function("() => { const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;"
                           " return !k || k.status === 'idle'; }", timeout=240_000)
    return round(time.time() - t_open, 1)


def run_until_flowing(page, warmup_s: float) -> float | None:
    """Press Run, wait for the counter to move (the first chunk compiles or loads from JAX's cache), then
    until it moved in two ``warmup_s / 2`` windows in a row; returns Run -> first move in seconds."""
    s0 = max(0, page.evaluate(COUNTER_STEP))
    t0 = click_at(page, page.evaluate(PRE)["at"]["run"])
    moved = wait_page(page, COUNTER_ABOVE, s0, 300)
    deadline = time.time() + 300
    flowing = 0
    while time.time() < deadline and flowing < 2:
        s1 = page.evaluate(COUNTER_STEP)
        time.sleep(warmup_s / 2)
        flowing = flowing + 1 if page.evaluate(COUNTER_STEP) > s1 > 0 else 0
    return None if moved is None else round(moved["t"] / 1e3 - t0, 2)


def bench_preset(browser, url: str, root: Path, preset: str, args) -> dict:
    name = f"bench_{preset}.ipynb"
    (root / name).write_text(json.dumps(notebook(preset)))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.add_init_script(PROBES)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)[:300]))
    result: dict = {"preset": preset}
    try:
        result["open_to_dashboard_s"] = open_lab(page, url, name)
        log(preset, "dashboard after", result["open_to_dashboard_s"], "s;",
            page.evaluate(KERNEL_EXEC, INSTRUMENT).strip())
        if args.kernel_setup:
            result["kernel_setup"] = [args.kernel_setup, page.evaluate(KERNEL_EXEC, args.kernel_setup).strip()]
            log(preset, "setup:", *result["kernel_setup"])
        page.locator(f"{OUT} .widget-toggle-buttons").filter(has_text="NTK (Alg. 1)").first.scroll_into_view_if_needed()
        result["first_run_to_counter_s"] = run_until_flowing(page, args.warmup_s)
        log(preset, "first Run -> counter moves", result["first_run_to_counter_s"], "s (compiling or cached)")

        clicks, pauses = [], []
        t_start = time.time()
        step_start = page.evaluate(COUNTER_STEP)
        for i in range(args.clicks):
            if time.time() - t_start > args.budget_s:
                log(preset, f"click budget {args.budget_s:.0f} s spent after {i} clicks")
                break
            pre = page.evaluate(PRE)  # one round trip: the page's main thread is what is busy
            if pre["paused"]:  # paused by itself (a step budget?): note it, run on
                result["auto_paused"] = result.get("auto_paused", 0) + 1
                click_at(page, pre["at"]["run"])
                wait_page(page, f"() => ({RUN_BUTTON_IS})('Pause')", None, 30)
                pre = page.evaluate(PRE)
            target = "off" if pre["active"] == "on" else "on"
            t_click = click_at(page, pre["at"][target])
            shown = wait_page(page, SHOWN_FULL, {"want": target, "before": pre["figure"], "n": pre["clicks"]},
                              args.click_timeout_s)
            r = shown["r"] if shown else page.evaluate(
                f"(n) => ({{counter: ({COUNTER_STEP})(), active: ({PRE})().active, "
                f"dispatch: window.__bench.clicks[n] || null, clicked: window.__bench.targets[n] || null}})",
                pre["clicks"])
            rec = {"i": i, "target": target, "t_click": t_click, "figure_before": pre["figure"]["state"],
                   "dispatch_s": None if r["dispatch"] is None else r["dispatch"] / 1e3 - t_click,
                   "figure_s": None if shown is None else r.get("shown", shown["t"]) / 1e3 - t_click,
                   "figure_kind": r.get("kind"), "figure_step": r.get("step"), "counter_step": r["counter"],
                   "clicked": r.get("clicked"), "button_after": r.get("active", target)}
            clicks.append(rec)
            shown_s = "missed" if shown is None else f"{rec['figure_s']:.2f} s"
            log(preset, f"click {i} -> {target}: figure {shown_s} ({rec['figure_kind']}), at {rec['counter_step']}")
            if shown is None:  # give the figure a little longer to catch up, so that clicks do not overlap
                wait_page(page, f"(want) => ({FIGURE_STATE})().state === want", target, 10)
            time.sleep(args.gap_s)
            if args.pause_every and (i + 1) % args.pause_every == 0:
                t_p = click_at(page, page.evaluate(PRE)["at"]["run"])
                shown_p = wait_page(page, f"() => ({RUN_BUTTON_IS})('Run')", None, args.click_timeout_s)
                time.sleep(1.0)
                pre = page.evaluate(PRE)
                s_p = page.evaluate(COUNTER_STEP)
                t_r = click_at(page, pre["at"]["run"])
                moved = wait_page(page, COUNTER_ABOVE, s_p, args.click_timeout_s)
                pauses.append({"t_pause": t_p, "t_run": t_r,
                               "pause_shown_s": None if shown_p is None else shown_p["t"] / 1e3 - t_p,
                               "run_counter_s": None if moved is None else moved["t"] / 1e3 - t_r})
                log(preset, "pause shown", pauses[-1]["pause_shown_s"], "s; run -> counter",
                    pauses[-1]["run_counter_s"])
                time.sleep(args.gap_s)
        t_end = time.time()
        step_end = page.evaluate(COUNTER_STEP)
        counter_text = page.evaluate(f"""() => ([...document.querySelectorAll('{OUT} .widget-html')]
            .find(e => e.innerText.includes('steps/s')) || {{innerText: ''}}).innerText""")
        probes = page.evaluate("""([a, b]) => { const B = window.__bench;
            const lag = B.lag.filter(([t]) => t >= a && t <= b).map(([, l]) => Math.max(0, l)).sort((x, y) => x - y);
            const long = B.long.filter(([t]) => t >= a && t <= b);
            return {lag: lag, long_ms: long.map(([, d]) => d), span_ms: b - a}; }""", [t_start * 1e3, t_end * 1e3])
        pre = page.evaluate(PRE)
        if not pre["paused"]:
            click_at(page, pre["at"]["run"])
            wait_page(page, f"() => ({RUN_BUTTON_IS})('Run')", None, 120)
        time.sleep(1.0)
        dump = page.evaluate(KERNEL_EXEC, DUMP).strip()
        events = json.loads(dump.splitlines()[-1]) if dump.startswith("{") else {"bench": [], "events": None}
        match_kernel(clicks, pauses, events)
        lag = probes["lag"]
        result.update({
            "clicks": len(clicks), "pause_run_cycles": len(pauses),
            "steps_per_s": round((step_end - step_start) / (t_end - t_start)) if step_end >= 0 else None,
            "counter_text_at_end": " ".join(counter_text.split()),
            "figure_kinds": dict(Counter(str(c["figure_kind"] or "missed") for c in clicks)),
            "has_lab_events": events.get("events") is not None,
            "toggle_dispatch": summary([c["dispatch_s"] for c in clicks]),
            "toggle_kernel_received": summary([c.get("kernel_received_s") for c in clicks]),
            "toggle_kernel_acted": summary([c.get("kernel_acted_s") for c in clicks])
            if events.get("events") is not None else None,
            "toggle_figure": summary([None if c["figure_kind"] == "weight-frozen" else c["figure_s"] for c in clicks]),
            "toggle_figure_frozen": summary([c["figure_s"] for c in clicks if c["figure_kind"] == "weight-frozen"]),
            "pause_kernel": summary([p.get("pause_kernel_s") for p in pauses]),
            "pause_shown": summary([p["pause_shown_s"] for p in pauses]),
            "run_counter": summary([p["run_counter_s"] for p in pauses]),
            "main_thread": {"window_s": round(probes["span_ms"] / 1e3, 1),
                            "long_task_fraction": round(sum(probes["long_ms"]) / max(probes["span_ms"], 1), 3),
                            "long_tasks": len(probes["long_ms"]),
                            "longest_task_ms": round(max(probes["long_ms"], default=0)),
                            "timer_lag_median_ms": round(statistics.median(lag)) if lag else None,
                            "timer_lag_max_ms": round(max(lag)) if lag else None},
            "page_errors": errors[:5],
            "raw_clicks": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in c.items() if k != "t_click"}
                           for c in clicks]})
    finally:
        try:
            page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
        except Exception as e:  # noqa: BLE001 - best effort: the server's shutdown stops the kernel anyway
            log("kernel shutdown:", e)
        page.close()
    return result


def match_kernel(clicks: list[dict], pauses: list[dict], events: dict) -> None:
    """Attach to each click the first kernel event of its kind after it (and before the next click)."""
    want = {"on": "ntk", "off": "none"}
    bench, lab_events = events.get("bench") or [], events.get("events") or []
    for k, c in enumerate(clicks):
        end = clicks[k + 1]["t_click"] if k + 1 < len(clicks) else float("inf")
        for key, source in (("kernel_received_s", bench), ("kernel_acted_s", lab_events)):
            hit = next((e for e in source if e.get("field") == "rule" and str(e.get("value")) == want[c["target"]]
                        and c["t_click"] - 0.05 <= float(e["time"]) < end), None)
            c[key] = None if hit is None else float(hit["time"]) - c["t_click"]
            if hit is not None and key == "kernel_acted_s":
                c["kernel_step"] = hit.get("step")
    frame_timing(clicks, events.get("frames") or [], events.get("acks") or [])
    for p in pauses:
        hit = next((e for e in bench if e.get("field") == "run_button"
                    and p["t_pause"] - 0.05 <= e["time"] < p["t_run"]), None)
        p["pause_kernel_s"] = None if hit is None else hit["time"] - p["t_pause"]


def frame_timing(clicks: list[dict], frames: list, acks: list) -> None:
    """Split each click's page time by the frames around it (kernel clock, seconds after the click):
    ``inflight_acked_s``, when the frame in flight as the kernel acted was acknowledged (None: none was);
    ``click_frame_sent_s`` and ``click_frame_acked_s``, the first frame sent after the kernel acted."""
    def acked(edit_id):
        return next((t for t, i in acks if i is not None and int(i) >= edit_id), None)

    for c in clicks:
        if c.get("kernel_acted_s") is None:
            continue
        acted = c["t_click"] + c["kernel_acted_s"]
        before = [f for f in frames if f[0] <= acted]
        after = next((f for f in frames if f[0] > acted), None)
        t_in = acked(before[-1][1]) if before else None
        c["inflight_acked_s"] = None if t_in is None or t_in <= acted else t_in - c["t_click"]
        c["click_frame_sent_s"] = None if after is None else after[0] - c["t_click"]
        t_ack = None if after is None else acked(after[1])
        c["click_frame_acked_s"] = None if t_ack is None else t_ack - c["t_click"]


def versions() -> dict:
    out = {"python": platform.python_version(), "chromium": subprocess.run([CHROMIUM, "--version"], capture_output=True,
                                                                          text=True).stdout.strip()}
    for dist in ("jupyterlab", "ipykernel", "ipywidgets", "anywidget", "plotly", "playwright", "jax", "jaxlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def git_info(rev: str | None) -> dict:
    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()
    if rev:
        return {"measured": f"git archive {rev}", "commit": git("rev-parse", "--short", rev)}
    return {"measured": "working tree", "commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_changes_in_pinnlab": bool(git("status", "--porcelain", "--", "pinnlab"))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["poisson", "wave"])
    p.add_argument("--busy", type=int, default=2, help="busy-loop processes running beside it (default 2)")
    p.add_argument("--clicks", type=int, default=10, help="weighting toggles per preset (default 10)")
    p.add_argument("--pause-every", type=int, default=4, help="a Pause/Run cycle after every N toggles (0: none)")
    p.add_argument("--gap-s", type=float, default=2.0, help="training seconds between clicks (default 2)")
    p.add_argument("--warmup-s", type=float, default=3.0, help="training seconds before the first click")
    p.add_argument("--click-timeout-s", type=float, default=30.0, help="a click not shown by then counts as missed")
    p.add_argument("--budget-s", type=float, default=120.0, help="stop clicking a preset after this many seconds")
    p.add_argument("--rev", help="measure pinnlab as committed at this git revision (exported to a temporary "
                   "directory), e.g. the commit before a change; default: this checkout's working tree")
    p.add_argument("--kernel-setup", default=NO_BUDGET, help="code run in the kernel after the lab is shown "
                   "(default: lift the preset's step budget, if it has one, so that it trains through every click)")
    p.add_argument("--label", default="current", help="name of this measurement in --out (e.g. before, after)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results_click_cpu.json")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()

    from playwright.sync_api import sync_playwright

    results = {}
    with busy_loops(args.busy):
        load_before = os.getloadavg()
        with lab_server(args.rev) as (url, root), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            for preset in args.presets:
                results[preset] = bench_preset(browser, url, root, preset, args)
            browser.close()
    entry = {"label": args.label, "busy": args.busy, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
             "command": " ".join(["python", "benchmarks/bench_click.py", *sys.argv[1:]]),
             "machine": {"nproc": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
                         "load_average_after": [round(x, 2) for x in os.getloadavg()],
                         "platform": platform.platform()},
             "versions": versions(), "git": git_info(args.rev), "presets": results}
    print(json.dumps(entry, indent=1))
    if not args.no_save:
        old = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
        old["runs"] = [r for r in old["runs"] if (r["label"], r["busy"]) != (args.label, args.busy)] + [entry]
        args.out.write_text(json.dumps(old, indent=1) + "\n")
        log("saved", args.out)


if __name__ == "__main__":
    main()
