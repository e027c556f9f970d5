"""The dashboard's one figure: the panels of :mod:`pinnlab.panels` on a grid, built once per reset and
updated in place every frame.

:class:`View` only computes trace data: :meth:`View.updates` returns ``[(trace index, properties)]`` for
the dashboard to apply in one ``batch_update``. Per-step panels (losses, weights, trace shares) change
every frame; the keyframe panels (spectra, prediction, error) only when a new keyframe arrived or the
replay slider moved. In compare mode both runs share the axes, A solid and B dashed (2D: the two error
maps side by side).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pinnlab import panels
from pinnlab.panels import Panel, RunView

DASHES = ("solid", "dash")
DATA_KEYS = ("x", "y", "z", "hovertemplate")  # what changes from frame to frame
# Figure size and fonts per layout: "notebook" fits JupyterLab beside its file browser on a 1366 px
# screen; "presentation" fits under one row of controls in a 1280 x 720 projector page.
SIZES = {"notebook": dict(width=1060, height=700, font=13, title=15),
         "presentation": dict(width=1240, height=560, font=16, title=17)}
BUDGET_LINE = dict(color="#555", width=1.5, dash="dash")
REPLAY_LINE = dict(color="#888", width=1, dash="dot")


class View:
    """Builds the figure for some runs of one problem and computes each frame's trace data.

    Args:
      views: one :class:`~pinnlab.panels.RunView` per run (their labels and dashes set).
      title: the figure's title (the problem and settings).
      layout: ``"notebook"`` or ``"presentation"`` (sizes and fonts, see :data:`SIZES`).
      revision: changes on every reset, so plotly keeps a user's zoom only within one build.
      grid: the panels, row by row (:data:`pinnlab.panels.DASHBOARD` or ``DASHBOARD_MODES``).
    """

    def __init__(self, views: list[RunView], title: str, layout: str = "notebook", revision: int = 0,
                 grid: tuple = panels.DASHBOARD):
        self.title, self.layout, self.revision = title, layout, revision
        self.two_d = views[0].two_d
        self.cells = self._cells(len(views), grid)
        self.index: dict[tuple, int] = {}
        self._sent: dict[tuple[int, str], object] = {}  # the data last sent per (trace, property)
        self._figure = self._build(views)

    def _cells(self, runs: int, grid: tuple) -> list[tuple[Panel, tuple[int, ...]]]:
        """(panel, runs drawn in it) per subplot, row by row."""
        cells = [(panel, tuple(range(runs))) for row in grid for panel in row]
        if self.two_d and runs > 1:  # heat maps cannot overlay: one error map per run, no prediction map
            middle = cells[-2][0]
            cells[-2:] = ([(panels.ERROR, (0,)), (panels.ERROR, (1,))] if middle is panels.PREDICTION else
                          [(middle, (0,) if middle is panels.EIGENMODE else cells[-2][1]), (panels.ERROR, (0,))])
            # the modes view keeps its panel and A's error; a clicked eigenvector is A's (coloured points)
        return cells

    @property
    def figure(self) -> go.Figure:
        return self._figure

    # -- building -------------------------------------------------------------------------------------
    def _build(self, views: list[RunView]) -> go.Figure:
        titles = [p.title if len(r) != 1 or len(views) == 1 else f"{views[r[0]].label}: {p.title}"
                  for p, r in self.cells]
        fig = make_subplots(rows=2, cols=3, subplot_titles=titles, horizontal_spacing=0.1 if self.two_d else 0.075,
                            vertical_spacing=0.2)
        for c, (panel, runs) in enumerate(self.cells):
            row, col = divmod(c, 3)
            for r in runs:
                for trace in panel.traces(views[r]):
                    key = (c, r, trace.pop("key"))
                    if r > 0 and key[2] == "exact":
                        continue  # the exact solution once
                    self.index[key] = len(fig.data)
                    kind = trace.pop("type")
                    fig.add_trace(go.Heatmap(**trace) if kind == "heatmap" else go.Contour(**trace)
                                  if kind == "contour" else go.Scatter(**trace), row=row + 1, col=col + 1)
            xaxis, yaxis = panel.axes(views[runs[0]])
            fig.update_xaxes(**xaxis, row=row + 1, col=col + 1)
            fig.update_yaxes(**yaxis, row=row + 1, col=col + 1)
        self._style(fig, views[0])
        return fig

    def _style(self, fig: go.Figure, view: RunView) -> None:
        size = SIZES[self.layout]
        layout = dict(title=dict(text=self.title, font=dict(size=size["title"]), x=0.01, xanchor="left", y=0.99,
                                 yref="container", yanchor="top"),
                      template="plotly_white", width=size["width"], height=size["height"],
                      font=dict(size=size["font"]), uirevision=f"lab-{self.revision}",
                      margin=dict(l=70, r=80 if self.two_d else 20, t=115, b=50),
                      legend=dict(orientation="h", x=0, y=1.06, yanchor="bottom", font=dict(size=size["font"])))
        for annotation in fig.layout.annotations:  # subplot titles: the figure's font, a little smaller
            annotation.font = dict(size=size["font"] - 1)
        if self.two_d:
            bound = float(np.max(np.abs(view.exact))) or 1.0
            layout["coloraxis"] = dict(colorscale="RdBu_r", cmin=-bound, cmax=bound,
                                       colorbar=self._colorbar(fig, 5, "u"))
            layout["coloraxis2"] = dict(colorscale="RdBu_r", cmid=0, colorbar=self._colorbar(fig, 6, "û − u"))
        fig.update_layout(**layout)
        # Every frame replots the whole figure. With plotly_white's automargin and plotly.js's default
        # ticklabeloverflow ("hide past div"), each replot measures every tick label's box, a forced layout
        # of the whole JupyterLab page each time: ~40 % of a frame (benchmarks/README.md, "tick labels"). The
        # margins above are fixed and fit the labels, so neither measurement can change anything drawn.
        fig.update_xaxes(automargin=False, ticklabeloverflow="allow")
        fig.update_yaxes(automargin=False, ticklabeloverflow="allow")

    @staticmethod
    def _colorbar(fig: go.Figure, axis: int, title: str) -> dict:
        """A slim colour bar just right of subplot ``axis`` (5: row 2 col 2, 6: row 2 col 3)."""
        xd, yd = fig.layout[f"xaxis{axis}"].domain, fig.layout[f"yaxis{axis}"].domain
        return dict(x=xd[1] + 0.005, xanchor="left", y=(yd[0] + yd[1]) / 2, len=yd[1] - yd[0], thickness=10,
                    title=dict(text=title, side="right"))

    def size_layout(self, layout: str) -> dict:
        """The layout properties that change between the notebook and presentation layouts."""
        size = SIZES[layout]
        return {"width": size["width"], "height": size["height"], "font.size": size["font"],
                "title.font.size": size["title"], "legend.font.size": size["font"]}

    # -- per frame ------------------------------------------------------------------------------------
    def updates(self, views: list[RunView], keyframe: bool) -> list[tuple[int, dict]]:
        """The changed data of every trace: per-step panels always, keyframe panels if ``keyframe``.

        A property equal to what was last sent is left out: the exact solution's contours and the grids
        never change, and a browser redraws (and re-contours) whatever it is sent.
        """
        out = []
        for c, (panel, runs) in enumerate(self.cells):
            if not (panel.per_step or keyframe):
                continue
            for r in runs:
                for trace in panel.traces(views[r]):
                    index = self.index.get((c, r, trace["key"]))
                    if index is None:
                        continue
                    props = {k: trace[k] for k in DATA_KEYS if k in trace and not self._same(index, k, trace[k])}
                    if props:
                        out.append((index, props))
        return out

    def restyle(self, views: list[RunView], panel: Panel) -> list[tuple[int, dict]]:
        """Every property of ``panel``'s traces (names, legend, markers too: :meth:`updates` sends only data),
        for a panel whose content changes in kind but not in its traces: another clicked eigenvector."""
        out = []
        for c, (cell, runs) in enumerate(self.cells):
            if cell is not panel:
                continue
            for r in runs:
                for trace in panel.traces(views[r]):
                    index = self.index.get((c, r, trace.pop("key")))
                    if index is not None:
                        trace.pop("type")
                        for k in DATA_KEYS:
                            if k in trace:
                                self._same(index, k, trace[k])  # what was sent, for the next frame's comparison
                        out.append((index, trace))
        return out

    def _same(self, index: int, key: str, value) -> bool:
        """Whether ``value`` equals what was last sent for this trace property (and remember it if not)."""
        old = self._sent.get((index, key))
        same = old is not None and (old == value if isinstance(value, str) else
                                    np.shape(old) == np.shape(value) and np.array_equal(old, value, equal_nan=True))
        if not same:
            self._sent[(index, key)] = value
        return same

    def shapes(self, budgets: list[int], replay_step: int | None) -> list[dict]:
        """Dashed lines at the step budgets and a dotted one at the replayed step, on the per-step panels."""
        lines = [(b, BUDGET_LINE) for b in budgets] + ([] if replay_step is None else [(replay_step, REPLAY_LINE)])
        out = []
        for c, (panel, _) in enumerate(self.cells):
            if panel.per_step:
                axis = "" if c == 0 else str(c + 1)
                out += [dict(type="line", xref=f"x{axis}", yref=f"y{axis} domain", x0=x, x1=x, y0=0, y1=1,
                             line=line) for x, line in lines]
        return out
