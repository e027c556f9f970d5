"""pinnlab.lab.widget: the deferred nbformat import, the trace-delta ValueError, and the acknowledgements.

Headless: the front end's messages are fed through ipywidgets' own path (``Widget._handle_msg``),
shaped as plotly's ``widgetbundle.js`` sends them. One test runs that real bundle in Debian's chromium
with a stand-in anywidget model (skipped without chromium or playwright) to show the message shapes
assumed here are the ones the JS sends, and that the fix holds against it.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("anywidget")
go = pytest.importorskip("plotly.graph_objects")

from plotly.basedatatypes import Undefined  # noqa: E402
from plotly.serializers import _py_to_js  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402

from pinnlab.lab import widget  # noqa: E402
from pinnlab.lab.widget import LabFigureWidget, figure_widget  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def _lab_like_figure() -> go.Figure:
    """A small figure shaped like the lab's: float32 curves (two with hover templates) and a heat map."""
    fig = make_subplots(rows=1, cols=2)
    x = np.arange(1, 6, dtype=np.float32)
    fig.add_scatter(x=x, y=x**2, name="loss", hovertemplate="L %{y:.3g} @ %{x}<extra></extra>", row=1, col=1)
    fig.add_scatter(x=x, y=x, name="weight", row=1, col=1)
    fig.add_heatmap(z=np.zeros((3, 4), np.float32), row=1, col=2)
    fig.update_layout(width=700, height=300, uirevision="lab-0")
    return fig


def _frame(fw: go.FigureWidget, k: int) -> None:
    """One dashboard frame: a batch where trace 0 changes x, y and its hover template, trace 1 only y."""
    n = 5 + k
    with fw.batch_update():
        fw.data[0].update(x=np.arange(1, n + 1, dtype=np.float32), y=np.linspace(0, k + 1, n, dtype=np.float32),
                          hovertemplate=f"L (frame {k}) %{{y:.3g}}<extra></extra>")
        fw.data[1].update(y=np.full(5, k, np.float32))
        fw.data[2].z = np.full((3, 4), k, np.float32)


def _recording(fw: go.FigureWidget) -> list[dict]:
    """Record the widget's outgoing comm messages instead of sending them (no kernel here)."""
    sent: list[dict] = []
    fw._send = lambda msg, buffers=None: sent.append(msg)
    return sent


def _deliver(fw: go.FigureWidget, state: dict) -> None:
    """A front-end state update, through the path a real comm message takes."""
    fw._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}}, "buffers": []})


def _ack(fw: go.FigureWidget, edit_id: int, deltas: list[dict] | None = None) -> None:
    """What ``FigureView._sendTraceDeltas`` sends: one delta per trace (uid plus computed defaults)."""
    if deltas is None:
        deltas = [{"uid": t.uid, "visible": True, "hovertemplate": ""} for t in fw.data]
    _deliver(fw, {"_js2py_traceDeltas": {"trace_deltas": deltas, "trace_edit_id": edit_id}})


def _updates(fw: go.FigureWidget) -> list[dict]:
    """The ``Plotly.update`` messages the widget sends from now on, before serialisation."""
    out: list[dict] = []
    fw.observe(lambda change: change["new"] and out.append(change["new"]), names="_py2js_update")
    return out


# -- A. the import -----------------------------------------------------------------------------------------
def _fresh_python(code: str, **env) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_importing_the_widget_defers_nbformat_and_mime_rendering_still_works():
    out = _fresh_python("""
        import sys
        from pinnlab.lab.widget import LabFigureWidget, figure_widget
        import plotly.graph_objects as go, plotly.io as pio, plotly.io._renderers as renderers
        after_import = sorted(m for m in ("nbformat", "jsonschema", "rfc3987_syntax") if m in sys.modules)
        fig = go.Figure(go.Scatter(y=[1, 3, 2]))
        bundle = figure_widget(fig)._repr_mimebundle_()   # what displaying the dashboard's widget does
        html = pio.to_html(fig, include_plotlyjs=False)
        after_display = sorted(m for m in ("nbformat", "jsonschema") if m in sys.modules)
        fig.show(renderer="json")                          # a mime render: plotly checks nbformat's version
        import nbformat
        nb = nbformat.v4.new_notebook()
        print("RESULT", after_import, after_display, "widget-view+json" in str(bundle), "<div" in html,
              renderers.nbformat is sys.modules["nbformat"], nbformat.__version__ >= "4.2", nb.nbformat)
        """)
    line = next(row for row in out.splitlines() if row.startswith("RESULT"))
    assert line == "RESULT [] [] True True True True 4", line


def test_the_stock_figurewidget_still_imports_nbformat_eagerly():
    """The premise of defer_nbformat: if this fails, plotly fixed it and the stand-in can go."""
    out = _fresh_python("""
        import sys
        import plotly.graph_objects as go
        go.FigureWidget
        print("RESULT", all(m in sys.modules for m in ("nbformat", "jsonschema")))
        """)
    assert "RESULT True" in out


def test_defer_nbformat_is_a_no_op_once_plotly_renderers_are_imported():
    import plotly.io._renderers  # noqa: F401  (this process imported it when it imported the widget)

    assert widget.defer_nbformat() is False


def test_the_version_check_reads_metadata_instead_of_importing_jupyterlab(monkeypatch):
    psutil = pytest.importorskip("psutil")

    class Parent:
        def cmdline(self):
            return ["/usr/bin/python3", "/venv/bin/jupyter-lab"]  # a plain `jupyter lab`

    monkeypatch.setattr(psutil, "Process", lambda: type("P", (), {"parent": lambda self: Parent()})())
    monkeypatch.delitem(sys.modules, "jupyterlab", raising=False)
    versions = {"jupyterlab": "2.3.0"}
    monkeypatch.setattr(widget.importlib.metadata, "version", lambda name: versions[name])
    with pytest.warns(UserWarning, match="jupyterlab >= 3"):
        widget._jupyter_version_warnings()
    versions["jupyterlab"] = "4.6.6"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        widget._jupyter_version_warnings()
    assert "jupyterlab" not in sys.modules


# -- B. the ValueError -----------------------------------------------------------------------------------
def _index_keyed(values) -> dict:
    """How the JS diff (``Ox`` in widgetbundle.js) renders a typed array it finds changed: an object."""
    return {str(i): float(v) for i, v in enumerate(values)}


def _corrupted_model_deltas(fw: go.FigureWidget) -> list[dict]:
    """The deltas the front end sends once its model holds ``"_undefined_"`` as trace 1's x and hover
    template: both reported as differing from the plot (x as an index-keyed object), as captured from
    the real bundle in chromium (see test_the_real_plotly_bundle_...)."""
    deltas = [{"uid": t.uid, "visible": True} for t in fw.data]
    deltas[1].update(x=_index_keyed(fw.data[1].x), hovertemplate="")
    return deltas


def test_a_batch_leaves_undefined_holes_in_the_stock_widget_and_none_in_the_lab_widget():
    holes = {}
    for name, fw in (("stock", go.FigureWidget(_lab_like_figure())), ("lab", figure_widget(_lab_like_figure()))):
        _recording(fw)
        updates = _updates(fw)
        _frame(fw, 1)
        (update,) = updates
        wire = json.dumps(_py_to_js(update, None), default=lambda b: "<buffer>")  # as it goes on the wire
        holes[name] = 0
        for prop, values in update["style_data"].items():
            for t, value in zip(update["style_traces"], values):
                valid = prop in fw.data[t]  # a scatter has no "z": that hole is never read
                holes[name] += value is Undefined and valid
                if name == "lab" and valid:  # the holes carry the values the traces have anyway
                    current = fw.data[t][prop]
                    assert (value is None and current is None) or np.array_equal(value, current), (prop, t)
        assert wire.count("_undefined_") >= holes[name]
    assert isinstance(figure_widget(_lab_like_figure()), LabFigureWidget)
    assert holes["stock"] >= 4 and holes["lab"] == 0, holes  # trace 1: x, hover template; trace 2: ...


def test_the_stock_handler_raises_the_ambiguous_truth_value_error_on_such_a_delta():
    fw = go.FigureWidget(_lab_like_figure())
    _recording(fw)
    _frame(fw, 1)
    with pytest.raises(ValueError, match="truth value of an array"):
        fw._js2py_traceDeltas = {"trace_deltas": _corrupted_model_deltas(fw), "trace_edit_id": fw._last_trace_edit_id}


def test_the_lab_widget_handles_such_a_delta_quietly_and_keeps_its_figure(caplog):
    fw = figure_widget(_lab_like_figure())
    sent = _recording(fw)
    _frame(fw, 1)
    before = fw.to_plotly_json()
    with caplog.at_level(logging.DEBUG):
        _ack(fw, fw._last_trace_edit_id, _corrupted_model_deltas(fw))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    after = fw.to_plotly_json()
    assert after["data"][0]["hovertemplate"] == before["data"][0]["hovertemplate"]  # nothing popped
    assert np.array_equal(after["data"][1]["x"], before["data"][1]["x"])
    assert not any(m.get("state", {}).get("_py2js_removeTraceProps") for m in sent)
    assert not any(m.get("method") == "echo_update" for m in sent)  # not sent back to the browser
    assert fw._js2py_traceDeltas is None and fw._trace_edit_in_process is False


# -- C. acknowledgements ---------------------------------------------------------------------------------
def test_edits_in_flight_counts_unacknowledged_edits():
    fw = figure_widget(_lab_like_figure())
    _recording(fw)
    assert (fw.edits_in_flight(), fw.acknowledged, fw.last_ack_time) == (0, False, None)
    for k in range(3):
        _frame(fw, k)
    assert fw.edits_in_flight() == 3 and not fw.acknowledged
    t0 = time.perf_counter()
    _ack(fw, 1)  # the front end drew the first frame
    assert fw.edits_in_flight() == 2 and fw.acknowledged and t0 <= fw.last_ack_time <= time.perf_counter()
    _ack(fw, 3)
    assert fw.edits_in_flight() == 0 and fw.acknowledgements == 2
    _ack(fw, 2)  # a slower second view: never counts backwards
    assert fw.edits_in_flight() == 0 and fw.acknowledgements == 3
    _frame(fw, 4)
    assert fw.edits_in_flight() == 1


def test_a_first_render_acknowledges_everything_sent_before_it():
    """A new view's ``newPlot`` answers with the model's ``_last_trace_edit_id``: all edits so far."""
    fw = figure_widget(_lab_like_figure())
    _recording(fw)
    _frame(fw, 0)
    _frame(fw, 1)
    fw._repr_mimebundle_()  # displayed: the full state goes out, then the view renders it
    _ack(fw, fw._last_trace_edit_id)
    assert fw.edits_in_flight() == 0 and fw.acknowledged


def test_an_acknowledgement_beyond_the_last_edit_does_not_go_negative():
    fw = figure_widget(_lab_like_figure())
    _recording(fw)
    _ack(fw, 7)
    _frame(fw, 0)
    assert fw.edits_in_flight() == 1


# -- the real bundle in chromium -----------------------------------------------------------------------------
PAGE = """<!doctype html><html><body><div id="el" style="width:700px;height:300px"></div>
<script type="module">
import factory from "./widgetbundle.js";
const dv = (s) => {
  const b = atob(s), u = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) u[i] = b.charCodeAt(i);
  return new DataView(u.buffer);
};
const b64 = (v) => {
  const u = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  let s = "";
  for (const c of u) s += String.fromCharCode(c);
  return btoa(s);
};
const out = (v) => {  // what ipywidgets would send: binary buffers apart (here base64), the rest as JSON
  if (v instanceof ArrayBuffer) return {__b64__: b64(new Uint8Array(v))};
  if (ArrayBuffer.isView(v)) return {__b64__: b64(v)};
  if (Array.isArray(v)) return v.map(out);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, out(x)]));
  return v === undefined ? null : v;
};
function put(state, paths, buffers) {  // as ipywidgets does: each binary buffer lands as a DataView
  paths.forEach((p, i) => {
    let o = state;
    for (const k of p.slice(0, -1)) o = o[k];
    o[p[p.length - 1]] = dv(buffers[i]);
  });
}
class Model {  // the part of anywidget's model interface plotly's bundle uses
  constructor(state) { this.state = state; this.on_ = {}; this.dirty = {}; }
  get(k) { return this.state[k]; }
  set(k, v) { this.state[k] = v; this.dirty[k] = v; }
  on(ev, cb) { (this.on_[ev] ||= []).push(cb); }
  save_changes() { window.saved.push(out(this.dirty)); this.dirty = {}; }
  send() {}
}
window.saved = [];
window.start = (m) => {
  put(m.state, m.buffer_paths, m.buffers);
  window.model = new Model(m.state);
  window.w = factory();
  window.w.initialize({model: window.model});
  window.w.render({model: window.model, el: document.getElementById("el")});
};
window.second = () => {  // a second view of the same model, rendered from its state (a re-shown cell)
  const el = document.createElement("div");
  el.id = "second";
  el.style = "width:700px;height:300px";
  document.body.appendChild(el);
  window.w.render({model: window.model, el});
};
window.apply = (m) => {
  put(m.state, m.buffer_paths, m.buffers);
  for (const k in m.state) {
    window.model.state[k] = m.state[k];
    (window.model.on_["change:" + k] || []).forEach((cb) => cb());
  }
};
window.ready = true;
</script></body></html>"""


@pytest.fixture(scope="module")
def bundle_page(tmp_path_factory):
    """The real ``widgetbundle.js`` served on 127.0.0.1 and opened in headless chromium."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Python playwright is not installed")
    root = tmp_path_factory.mktemp("bundle")
    (root / "index.html").write_text(PAGE)
    import plotly

    (root / "widgetbundle.js").symlink_to(Path(plotly.__file__).parent / "package_data" / "widgetbundle.js")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser, f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
        browser.close()
    httpd.shutdown()


def _wire(state: dict) -> dict:
    from ipywidgets.widgets.widget import _remove_buffers

    s, paths, buffers = _remove_buffers(state)
    return {"state": s, "buffer_paths": paths, "buffers": [base64.b64encode(bytes(b)).decode() for b in buffers]}


def _from_page(v, paths, buffers, path=()):
    if isinstance(v, dict) and set(v) == {"__b64__"}:
        paths.append(list(path))
        buffers.append(memoryview(base64.b64decode(v["__b64__"])))
        return None
    if isinstance(v, dict):
        return {k: _from_page(x, paths, buffers, (*path, k)) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_page(x, paths, buffers, (*path, i)) for i, x in enumerate(v)]
    return v


@pytest.mark.parametrize("kind", ["stock", "lab"])
def test_the_real_plotly_bundle_sends_array_deltas_to_the_stock_widget_only(bundle_page, kind, caplog):
    browser, url = bundle_page
    fw = (go.FigureWidget if kind == "stock" else LabFigureWidget)(_lab_like_figure())
    sent: list = []
    fw._send = lambda msg, buffers=None: sent.append((msg, buffers))
    page = browser.new_page()
    try:
        page.goto(url)
        page.wait_for_function("window.ready === true", timeout=120_000)
        fw._repr_mimebundle_()
        sent.clear()
        page.evaluate("m => window.start(m)", _wire(fw.get_state()))
        deltas, warnings = [], []

        def exchange():
            for msg, buffers in sent:
                if msg.get("method") == "update":
                    page.evaluate("m => window.apply(m)", {"state": msg["state"],
                                                           "buffer_paths": msg.get("buffer_paths", []),
                                                           "buffers": [base64.b64encode(bytes(b)).decode()
                                                                       for b in buffers or []]})
            sent.clear()
            page.wait_for_timeout(300)
            for state in page.evaluate("() => window.saved.splice(0)"):
                paths, buffers = [], []
                state = _from_page(state, paths, buffers)
                if "_js2py_traceDeltas" in state:
                    deltas.append(state["_js2py_traceDeltas"])
                with caplog.at_level(logging.WARNING):
                    fw._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": paths}},
                                    "buffers": buffers})
                warnings.extend(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
                caplog.clear()

        page.wait_for_function("window.saved.length > 0", timeout=60_000)  # the first render's answer
        exchange()
        for k in range(1, 4):
            _frame(fw, k)
            exchange()
        arrays = sorted({(i, p) for d in deltas for i, t in enumerate(d["trace_deltas"]) for p in ("x", "y", "z")
                         if p in t})
        ids = [d["trace_edit_id"] for d in deltas]
        model_x = page.evaluate("() => { const x = window.model.get('_widget_data')[1].x; "
                                "return typeof x === 'string' ? x : 'array'; }")
        page.evaluate("() => window.second()")
        page.wait_for_function("document.getElementById('second').data !== undefined", timeout=30_000)
        second_x = page.evaluate("() => { const x = document.getElementById('second').data[1].x; "
                                 "return x === undefined ? 'missing' : Array.from(x); }")
        exchange()  # the second view's first render answers too
    finally:
        page.close()
    assert ids == sorted(ids) and ids[-1] == fw._last_trace_edit_id  # one answer per edit, in order
    if kind == "stock":  # the cause, as the real bundle shows it, and what a re-shown view then draws
        assert model_x == "_undefined_" and (1, "x") in arrays and second_x == "missing"
        assert any("truth value of an array" in w for w in warnings), warnings
    else:
        assert model_x == "array" and arrays == [] and warnings == []
        assert second_x == list(fw.data[1].x)
        assert fw.edits_in_flight() == 0 and fw.acknowledged
