"""The dashboard's plotly ``FigureWidget``: fast to import, quiet in the kernel log, and telling the
dashboard when the browser has drawn a frame.

Three things about plotly 6/7's stock ``go.FigureWidget`` matter for a live lab, each fixed here and
pinned by ``tests/test_widget.py``:

1. **Import cost.** ``plotly.basewidget`` imports ``plotly.io._renderers``, which runs
   ``optional_imports.get_module("nbformat")`` at module level. nbformat imports jsonschema, whose
   ``_format`` module imports ``rfc3987_syntax``, which builds a URI grammar at import: 3-12 s of a
   first cell on a 2-core laptop, for a module plotly only reads when it renders a figure as a mime
   bundle (``fig.show()``: a version check). :func:`defer_nbformat` imports that module while
   plotly's ``get_module`` answers ``"nbformat"`` with a stand-in that imports the real module on
   first attribute access: ``fig.show()`` and ``pio.to_html`` work unchanged, only a mime render
   pays the import, and ``import nbformat`` elsewhere is untouched.
   The stock widget also calls plotly's ``display_jupyter_version_warnings`` whenever it is displayed
   on its own (``lab.figure`` as a cell's result; the lab's VBox does not call it), which, when the
   kernel's parent process is a plain ``jupyter-lab``, *imports the JupyterLab server package* to read
   its version (seconds: jupyter_server, jsonschema); :meth:`LabFigureWidget._repr_mimebundle_` reads
   the same versions from package metadata instead.

2. **The ``ValueError: The truth value of an array ... is ambiguous``** logged by
   ``_handler_js2py_traceDeltas`` on every run. Cause (plotly's ``widgetbundle.js``, reproduced with
   the real bundle in chromium): ``batch_update`` sends one ``Plotly.update`` whose per-trace lists
   hold the placeholder ``"_undefined_"`` for traces that did not change a property another trace
   did (``_build_update_params_from_batch``). The front end's *model* applies that message without
   deserialising it, so it stores the string ``"_undefined_"`` as e.g. ``x`` of those traces in its
   ``_widget_data`` (the view deserialises, so the plot itself is right). Each acknowledgement then
   diffs the plot's full data against that model: the stored ``x`` no longer matches, and the JS
   diff turns the typed array into an index-keyed object ``{"0": x0, "1": x1, ...}``. Python merges
   that "default" into the trace, and ``_remove_overlapping_props`` recurses into the trace's numpy
   ``x`` and evaluates ``not ndarray``. Side effects besides the log line: every acknowledgement
   carries whole arrays as JSON objects, the merge pops the lab's own properties (hover templates)
   from the Python figure, and a newly rendered view (the cell shown again, a reopened notebook) draws
   those traces without their ``x``. :class:`LabFigureWidget` fixes the cause (it fills the holes of a
   batch with the traces' current values, so the front end's model stays equal to the figure) and the
   symptom (its trace-delta handler keeps plotly's edit bookkeeping and drops the merge of front-end
   defaults, which pinnlab never reads).

3. **Flow control.** The front end answers each trace edit (``Plotly.update``/``restyle``: right after
   the call returns, without waiting for its promise; plotly.js draws SVG traces within the call and
   the browser paints them after the current task; ``addTraces``/``deleteTraces``: after their
   promise resolves) with ``_js2py_traceDeltas`` carrying that edit's ``trace_edit_id``,
   one message per attached view, in order, and once more when a view first renders (carrying the
   newest edit it rendered). :meth:`LabFigureWidget.edits_in_flight` counts the edits
   sent and not yet acknowledged, so the dashboard can send a frame only when the last one was drawn
   (and fall back to a timeout when no front end answers: no view attached, a closed tab);
   :meth:`LabFigureWidget.on_drawn` calls back when the last edit was drawn. ipywidgets
   would echo each acknowledgement back to the browser; this widget does not.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from copy import deepcopy


class _LazyNbformat:
    """Stands in for ``nbformat`` in ``plotly.io._renderers`` until plotly reads an attribute of it.

    plotly only tests the module's truth and reads ``nbformat.__version__`` (before a mime render);
    the first attribute read imports nbformat and puts the real module in plotly's place.
    """

    def __getattr__(self, name: str):
        import nbformat
        import plotly.io._renderers as renderers

        renderers.nbformat = nbformat
        return getattr(nbformat, name)

    def __repr__(self) -> str:
        return "<nbformat, imported on first use (pinnlab.lab.widget.defer_nbformat)>"


def defer_nbformat() -> bool:
    """Import plotly's renderer module with a stand-in for nbformat that imports it on first use.

    Why: ``plotly.io._renderers`` runs ``optional_imports.get_module("nbformat")`` at import, only
    to check nbformat's version later, when it renders a mime bundle; the import costs seconds
    (jsonschema's format checkers build a URI grammar). While that one module is imported, plotly's
    ``get_module`` answers ``"nbformat"`` with a :class:`_LazyNbformat` (every other name as before).
    A stdlib ``LazyLoader`` module in ``sys.modules`` would not do: on Python 3.11 the ``import``
    statement reads ``module.__spec__``, which loads it. Returns whether it deferred anything (not
    when plotly's renderers or nbformat are already imported, or nbformat is not installed).
    """
    if "plotly.io._renderers" in sys.modules or "nbformat" in sys.modules:
        return False
    if importlib.util.find_spec("nbformat") is None:
        return False  # plotly sees None, as it would anyway
    from plotly import optional_imports

    real = optional_imports.get_module

    def get_module(name: str, should_load: bool = True):
        return _LazyNbformat() if name == "nbformat" else real(name, should_load)

    optional_imports.get_module = get_module
    try:
        import plotly.io._renderers  # noqa: F401  (what we came for: imported with the stand-in)
    finally:
        optional_imports.get_module = real
    return True


# The stock widget, for before/after comparisons (benchmarks/bench_lab.py --only first_cell) and for
# telling a plotly problem from a pinnlab one: plotly's eager imports and go.FigureWidget itself.
PLAIN = os.environ.get("PINNLAB_PLAIN_FIGUREWIDGET", "") not in ("", "0")

if not PLAIN:
    defer_nbformat()

import plotly.graph_objects as go  # noqa: E402  (after defer_nbformat, on purpose)
from plotly.basedatatypes import BaseFigure, Undefined  # noqa: E402
from plotly.serializers import custom_serializers  # noqa: E402
from traitlets import Dict, observe  # noqa: E402


class LabFigureWidget(go.FigureWidget):
    """A ``go.FigureWidget`` that acknowledges what the browser drew and never logs plotly's ValueError.

    Use it exactly like ``go.FigureWidget`` (``figure_widget(fig)`` builds one from a figure). On top:
    :meth:`edits_in_flight`, :attr:`acknowledged` and :attr:`last_ack_time` (see the module notes).
    """

    # plotly's trait, without ipywidgets' echo: the kernel sent every acknowledgement (its per-trace
    # defaults, ~20 kB for the lab's figure) straight back to the browser, once per frame.
    _js2py_traceDeltas = Dict(allow_none=True).tag(sync=True, echo_update=False, **custom_serializers)

    def __init__(self, *args, **kwargs):
        self._acked_edit = 0  # the newest trace_edit_id a front end acknowledged
        self._ack_count = 0
        self._ack_time: float | None = None
        self._drawn_callbacks: list[Callable[[], object]] = []
        super().__init__(*args, **kwargs)

    # -- flow control ------------------------------------------------------------------------------------
    def edits_in_flight(self) -> int:
        """Trace edits sent to the front end and not yet acknowledged by any view (0 when all drawn).

        It only grows while no front end answers (not displayed, tab closed): pair it with a timeout.
        """
        return max(0, self._last_trace_edit_id - self._acked_edit)

    def on_drawn(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever an acknowledgement leaves no edit in flight (the front end has drawn
        everything sent), on the thread that handled the message."""
        self._drawn_callbacks.append(callback)

    @property
    def acknowledged(self) -> bool:
        """Whether a front end has acknowledged at least one edit (its first render counts)."""
        return self._ack_count > 0

    @property
    def last_ack_time(self) -> float | None:
        """``time.perf_counter()`` of the last acknowledgement, None before the first."""
        return self._ack_time

    @property
    def acknowledgements(self) -> int:
        """How many acknowledgements arrived (one per edit per attached view, plus one per render)."""
        return self._ack_count

    # -- the fixes -----------------------------------------------------------------------------------------
    @observe("_js2py_traceDeltas")
    def _handler_js2py_traceDeltas(self, change):
        """plotly's handler without the merge of front-end defaults (the part that raises).

        Kept from plotly: an acknowledgement of the newest edit ends the "trace edit in process" state
        and runs the callbacks waiting for it; the message is reset so an identical one fires again.
        """
        msg = change["new"]
        if not msg:
            return
        edit_id = msg.get("trace_edit_id")
        if isinstance(edit_id, int | float):  # a JS number
            self._acked_edit = max(self._acked_edit, min(int(edit_id), self._last_trace_edit_id))
            self._ack_count += 1
            self._ack_time = time.perf_counter()
            if self.edits_in_flight() == 0:
                for callback in self._drawn_callbacks:
                    callback()
        if edit_id == self._last_trace_edit_id:
            self._trace_edit_in_process = False
            if not self._layout_edit_in_process:
                while self._waiting_edit_callbacks:
                    self._waiting_edit_callbacks.pop()()
        self._js2py_traceDeltas = None

    def _build_update_params_from_batch(self):
        """plotly's batch, with each ``Undefined`` hole filled by that trace's current value.

        Why: the front end's model stores the ``"_undefined_"`` placeholder verbatim (see the module
        notes). Sending the value the property has anyway (None for an unset one: plotly.js then keeps
        its default) keeps that model equal to the figure; the extra bytes are the few unchanged arrays
        of traces edited in the same frame, next to the arrays that did change. A property the trace's
        type does not have keeps its hole (plotly refuses it, and the front end never reads it).
        """
        restyle_data, relayout_data, trace_indexes = super()._build_update_params_from_batch()
        for prop, values in restyle_data.items():
            path = BaseFigure._str_to_dict_path(prop)
            for i, value in enumerate(values):
                index = trace_indexes[i]
                if value is Undefined and prop in self.data[index]:  # a scatter's "z" stays a hole
                    values[i] = _lookup(self._data[index], path)
        return restyle_data, relayout_data, trace_indexes

    def _repr_mimebundle_(self, include=None, exclude=None, validate=True, **kwargs):
        """plotly's widget bundle, with its Jupyter version check read from package metadata.

        Why: plotly's check imports the JupyterLab server package (seconds) just to read its version
        whenever the kernel's parent process is a plain ``jupyter-lab``.
        """
        _jupyter_version_warnings()
        # As plotly does: edits made before the cell ran reach the front end with the full state.
        self._widget_layout = deepcopy(self._layout_obj._props)
        self._widget_data = deepcopy(self._data)
        return {"application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                             "model_id": self._model_id}}


def figure_widget(fig: go.Figure) -> go.FigureWidget:
    """The dashboard's widget for ``fig``: a :class:`LabFigureWidget` (see the module notes for why).

    A plain ``go.FigureWidget`` only when ``PINNLAB_PLAIN_FIGUREWIDGET=1`` was set before the import.
    """
    return go.FigureWidget(fig) if PLAIN else LabFigureWidget(fig)


def _lookup(props: dict, path: tuple) -> object:
    """The raw value at a property path (``("line", "color")``) of a trace's props, None if unset."""
    node = props
    for key in path:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _jupyter_version_warnings() -> None:
    """plotly's ``display_jupyter_version_warnings``, reading versions without importing the servers."""
    import warnings

    from packaging.version import Version  # plotly's own dependency

    try:
        import psutil

        parent = psutil.Process().parent().cmdline()[-1]
    except Exception:  # no psutil, no parent, no permission: plotly skips the check too
        return
    for marker, package, minimum in (("jupyter-notebook", "notebook", 7), ("jupyter-lab", "jupyterlab", 3)):
        if marker in parent:
            try:
                version = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                return
            if Version(version) < Version(str(minimum)):
                warnings.warn(f"plotly >= 6 needs {package} >= {minimum}, but {package} {version} is installed; "
                              f"upgrade it: pip install --upgrade {package}", stacklevel=3)
            return
