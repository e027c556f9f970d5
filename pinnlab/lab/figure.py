"""The dashboard's one figure: six subplots built once per reset and updated in place every frame.

Row 1: loss per term, weight per term, trace ratios Tr K_r / Tr K_i (all log y, per step).
Row 2: NTK eigenvalues of K and its diagonal blocks (log-log; faint dotted: step 0), the prediction
against the exact solution (a line in 1D; a heat map with the exact solution's contours in 2D) and the
pointwise error. In compare mode run A is drawn solid and run B dashed on the same axes (2D: the two
error maps side by side on one colour scale).

:class:`LabFigure` only computes trace data: ``updates()`` returns ``[(trace index, properties)]`` and
the dashboard applies them in one ``batch_update`` to a ``FigureWidget`` or a plain ``go.Figure``.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pinnlab.lab.run import Keyframe, LiveRun
from pinnlab.plots import COLORS, NOISE_FLOOR

WIDTH = 1060  # px: fits a JupyterLab notebook next to its file browser on a 1366 px screen
RUN_DASH = ("solid", "dash")
RUN_PRED_COLORS = ("#d62728", "#2ca02c")
TERM_LABELS = {"u": "u: boundary / initial values", "ut": "u_t: initial velocity", "r": "r: PDE residual"}
TITLES = ("loss L_i per term", "weight λ_i per term", "trace ratio Tr K_r / Tr K_i", "NTK eigenvalues (faint: step 0)",
          "prediction vs exact", "pointwise error |u − û|")
Update = tuple[int, dict]


def f32(values) -> np.ndarray:
    """Trace data as float32 (half the bytes on the wire, and what plotly's widget serialises fastest)."""
    return np.asarray(values, np.float32)


def positive_spectrum(eigenvalues: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index (from 1) and eigenvalues above the float32 noise floor (1e-7 of the largest), for log axes."""
    lam = np.asarray(eigenvalues, np.float64)
    top = lam.max() if len(lam) else 0.0
    keep = lam > NOISE_FLOOR * top if top > 0 else np.zeros(len(lam), bool)
    return f32(np.arange(1, len(lam) + 1)[keep]), f32(lam[keep])


class LabFigure:
    """Builds the figure for some runs of one problem and computes each frame's trace data."""

    def __init__(self, runs: list[LiveRun], title: str, revision: int = 0):
        self.runs, self.title, self.revision = runs, title, revision
        first = runs[0]
        self.terms = first.terms
        self.residual = "r" if "r" in self.terms else self.terms[-1]
        self.blocks = ["K"] + [f"K_{t}" for t in self.terms]
        self.two_d = len(first.problem.coords) == 2
        self.coords = first.problem.coords
        self.grid = np.asarray(first.problem.grid)
        self.shape = tuple(first.problem.grid_shape)
        self.shared_init = all(_same_params(first, run) for run in runs[1:])
        self.index: dict[tuple, int] = {}

    # -- building ------------------------------------------------------------------------------------
    def build(self) -> go.Figure:
        """A fresh ``go.Figure`` with every trace (empty data where it changes per frame) and the layout."""
        titles = list(TITLES)
        if self.two_d and len(self.runs) > 1:  # two error maps side by side, one colour scale
            titles[4:6] = [f"{run.label}: pointwise error |u − û|" for run in self.runs]
        fig = make_subplots(rows=2, cols=3, subplot_titles=titles, horizontal_spacing=0.1 if self.two_d else 0.07,
                            vertical_spacing=0.16)
        self._fig, self.index = fig, {}
        for r, run in enumerate(self.runs):
            self._curves(r, run)
            self._spectra(r, run)
        self._fields()
        self._axes(fig)
        return fig

    def _add(self, key: tuple, trace, row: int, col: int) -> None:
        self.index[key] = len(self._fig.data)
        self._fig.add_trace(trace, row=row, col=col)

    def _prefix(self, r: int) -> str:
        return f"{self.runs[r].label}: " if len(self.runs) > 1 else ""

    def _curves(self, r: int, run: LiveRun) -> None:
        dash, pre = RUN_DASH[r], self._prefix(r)
        for j, term in enumerate(self.terms):
            line = dict(color=COLORS[j % len(COLORS)], dash=dash, width=1.6)
            group = f"term-{term}"
            self._add(("loss", r, term), go.Scatter(mode="lines", name=f"{pre}{TERM_LABELS.get(term, term)}",
                                                    legendgroup=group, showlegend=r == 0, line=line,
                                                    hovertemplate=f"{pre}L_{term} %{{y:.3g}} @ %{{x}}<extra></extra>"),
                      1, 1)
            self._add(("weight", r, term), go.Scatter(mode="lines", name=f"{pre}λ_{term}", legendgroup=group,
                                                      showlegend=False, line=line,
                                                      hovertemplate=f"{pre}λ_{term} %{{y:.4g}}<extra></extra>"), 1, 2)
            if term != self.residual:
                name = f"{pre}Tr K_{self.residual} / Tr K_{term}"
                self._add(("ratio", r, term), go.Scatter(mode="lines", name=name, legendgroup=group,
                                                         showlegend=False, line=line,
                                                         hovertemplate=f"{name} %{{y:.4g}}<extra></extra>"), 1, 3)
        self._add(("rel_l2", r), go.Scatter(mode="lines+markers", name=f"{pre}relative L2 error", showlegend=r == 0,
                                            marker=dict(size=3), line=dict(color="#444", dash=("dot", "dashdot")[r]),
                                            legendgroup="rel_l2"), 1, 1)

    def _block_color(self, block: str) -> str:
        if block == "K":
            return "black"
        return COLORS[self.terms.index(block[2:]) % len(COLORS)]

    def _spectra(self, r: int, run: LiveRun) -> None:
        reference = run.keyframes[0].spectra or {}
        for block in self.blocks:
            color, pre = self._block_color(block), self._prefix(r)
            self._add(("eig", r, block), go.Scatter(mode="lines", name=f"{pre}eig {block}", legendgroup=f"eig-{block}",
                                                    showlegend=r == 0 and block == "K",
                                                    line=dict(color=color, dash=RUN_DASH[r], width=1.8)), 2, 1)
            if r == 0 or not self.shared_init:
                x, y = positive_spectrum(reference.get(block, []))
                self._add(("eig0", r, block), go.Scatter(x=x, y=y, mode="lines", name=f"{pre}step 0",
                                                         legendgroup="eig0", showlegend=r == 0 and block == "K",
                                                         opacity=0.35, hoverinfo="skip",
                                                         line=dict(color=color, dash="dot", width=1.2)), 2, 1)

    def _fields(self) -> None:
        exact = self.runs[0].exact
        if not self.two_d:
            x = f32(self.grid[:, 0])
            black = dict(color="black", width=2.5)
            self._add(("exact",), go.Scatter(x=x, y=f32(exact), mode="lines", name="exact", line=black), 2, 2)
            # y is filled from the start: the FigureWidget front end loses an x sent without its y.
            for r, run in enumerate(self.runs):
                line = dict(color=RUN_PRED_COLORS[r], dash=RUN_DASH[r], width=1.8)
                pred = run.keyframes[-1].prediction
                self._add(("pred", r), go.Scatter(x=x, y=f32(pred), mode="lines", line=line,
                                                  name=f"{self._prefix(r)}prediction"), 2, 2)
                self._add(("err", r), go.Scatter(x=x, y=f32(np.abs(pred - run.exact)), mode="lines", line=line,
                                                 name=f"{self._prefix(r)}|error|", showlegend=False), 2, 3)
            return
        t, xs = self._axes_2d()
        # z is filled from the start: plotly.js drops the x/y of a heat map created without z.
        errors = [self._grid2d(np.abs(run.keyframes[-1].prediction - run.exact)) for run in self.runs]
        if len(self.runs) == 1:
            pred = self._grid2d(self.runs[0].keyframes[-1].prediction)
            self._add(("pred", 0), go.Heatmap(x=t, y=xs, z=pred, coloraxis="coloraxis", name="prediction"), 2, 2)
            self._add(("exact",), go.Contour(x=t, y=xs, z=self._grid2d(exact), contours_coloring="lines",
                                             colorscale=[[0, "black"], [1, "black"]], line=dict(width=1),
                                             showscale=False, ncontours=10,
                                             name="exact (contours)", hoverinfo="skip", showlegend=True), 2, 2)
            self._add(("err", 0), go.Heatmap(x=t, y=xs, z=errors[0], coloraxis="coloraxis2", name="|error|"), 2, 3)
        else:
            for r, col in ((0, 2), (1, 3)):
                self._add(("err", r), go.Heatmap(x=t, y=xs, z=errors[r], coloraxis="coloraxis2",
                                                 name=f"{self._prefix(r)}|error|"), 2, col)

    def _axes_2d(self) -> tuple[np.ndarray, np.ndarray]:
        first = self.grid[:, 0].reshape(self.shape)[:, 0]
        second = self.grid[:, 1].reshape(self.shape)[0, :]
        return f32(first), f32(second)

    def _grid2d(self, values: np.ndarray) -> np.ndarray:
        """Grid values as a heat-map z: first coordinate (t) along x, second (x) along y."""
        return f32(np.asarray(values).reshape(self.shape).T)

    def _axes(self, fig: go.Figure) -> None:
        for col in (1, 2, 3):
            fig.update_xaxes(title_text="step", row=1, col=col)
            fig.update_yaxes(type="log", exponentformat="power", row=1, col=col)
        fig.update_xaxes(type="log", title_text="index", row=2, col=1)
        fig.update_yaxes(type="log", exponentformat="power", row=2, col=1)
        x_title, y_title = (self.coords[0], self.coords[1]) if self.two_d else (self.coords[0], "u")
        for col in (2, 3):
            fig.update_xaxes(title_text=x_title, row=2, col=col)
            fig.update_yaxes(title_text=y_title, row=2, col=col)
        if not self.two_d:
            fig.update_yaxes(type="log", exponentformat="power", title_text="|u − û|", row=2, col=3)
        # A fixed width: FigureWidget draws before it is attached to the page, so "autosize" would give 700 px.
        layout = dict(title=dict(text=self.title, font=dict(size=14), x=0.01, xanchor="left", y=0.985, yref="container",
                                 yanchor="top"),
                      template="plotly_white", width=WIDTH, height=720, font=dict(size=11),
                      margin=dict(l=60, r=70 if self.two_d else 20, t=130, b=45), uirevision=f"lab-{self.revision}",
                      legend=dict(orientation="h", x=0, y=1.075, yanchor="bottom", font=dict(size=10)))
        if self.two_d:
            exact = self.runs[0].exact
            bound = float(np.max(np.abs(exact))) or 1.0
            layout["coloraxis"] = dict(colorscale="RdBu_r", cmin=-bound, cmax=bound,
                                       colorbar=self._colorbar(fig, 5, "u"))
            layout["coloraxis2"] = dict(colorscale="Viridis", cmin=0, colorbar=self._colorbar(fig, 6, "|error|"))
        fig.update_layout(**layout)

    @staticmethod
    def _colorbar(fig: go.Figure, axis: int, title: str) -> dict:
        """A slim colour bar just right of subplot ``axis`` (5: row 2 col 2, 6: row 2 col 3)."""
        xd, yd = fig.layout[f"xaxis{axis}"].domain, fig.layout[f"yaxis{axis}"].domain
        return dict(x=xd[1] + 0.005, xanchor="left", y=(yd[0] + yd[1]) / 2, len=yd[1] - yd[0], thickness=10,
                    title=dict(text=title, side="right"))

    # -- per frame ------------------------------------------------------------------------------------
    def curve_updates(self) -> list[Update]:
        """Loss, weight and trace-ratio curves of every run, up to its current step."""
        out = []
        res = self.terms.index(self.residual)
        for r, run in enumerate(self.runs):
            steps, values = run.curves.view()
            x = f32(steps)
            with np.errstate(divide="ignore", invalid="ignore"):
                tr = values[:, 2, :].astype(np.float64)
                ratio = np.where(tr > 0, tr[:, [res]] / np.where(tr > 0, tr, 1.0), np.nan)
            for j, term in enumerate(self.terms):
                out.append((self.index[("loss", r, term)], dict(x=x, y=f32(values[:, 0, j]))))
                out.append((self.index[("weight", r, term)], dict(x=x, y=f32(values[:, 1, j]))))
                if term != self.residual:
                    out.append((self.index[("ratio", r, term)], dict(x=x, y=f32(ratio[:, j]))))
            frames = run.keyframes
            out.append((self.index[("rel_l2", r)], dict(x=f32([k.step for k in frames]),
                                                        y=f32([k.rel_l2 for k in frames]))))
        return out

    def keyframe_updates(self, index: int | None) -> list[Update]:
        """Spectra, prediction and error at keyframe ``index`` of every run (None: the newest)."""
        out = []
        for r, run in enumerate(self.runs):
            i = len(run.keyframes) - 1 if index is None else min(index, len(run.keyframes) - 1)
            frame, with_spectra = run.keyframes[i], run.spectra_at(i)
            if with_spectra is not None:
                for block in self.blocks:
                    x, y = positive_spectrum(with_spectra.spectra[block])
                    out.append((self.index[("eig", r, block)], dict(x=x, y=y)))
            out.extend(self._field_updates(r, run, frame))
        return out

    def _field_updates(self, r: int, run: LiveRun, frame: Keyframe) -> list[Update]:
        err = np.abs(frame.prediction - run.exact)
        if not self.two_d:
            return [(self.index[("pred", r)], dict(y=f32(frame.prediction))),
                    (self.index[("err", r)], dict(y=f32(err)))]
        out = [(self.index[("err", r)], dict(z=self._grid2d(err)))]
        if ("pred", r) in self.index:
            out.append((self.index[("pred", r)], dict(z=self._grid2d(frame.prediction))))
        return out

    def marker_shapes(self, step: int | None) -> list[dict]:
        """Vertical lines at the replayed step on the three per-step panels (none when live)."""
        if step is None:
            return []
        line = dict(color="#888", width=1, dash="dot")
        return [dict(type="line", xref=f"x{'' if col == 1 else col}", yref=f"y{'' if col == 1 else col} domain",
                     x0=step, x1=step, y0=0, y1=1, line=line) for col in (1, 2, 3)]


def _same_params(a: LiveRun, b: LiveRun) -> bool:
    import jax

    la, lb = jax.tree.leaves(a.trainer.params0), jax.tree.leaves(b.trainer.params0)
    return len(la) == len(lb) and all(x.shape == y.shape and bool((x == y).all()) for x, y in zip(la, lb))
