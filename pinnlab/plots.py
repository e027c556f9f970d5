"""Plotly figures of a run: pure functions ``History -> plotly.graph_objects.Figure``.

Used by notebooks, the HTML report and the live widget (which copies their traces into one
FigureWidget), so every function takes only a :class:`~pinnlab.history.History` and returns a new
figure. Nothing in the core imports this module: plotly is an optional dependency (``pinnlab[report]``).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pinnlab import panels
from pinnlab.history import History

MAX_POINTS = 2000


def downsample(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` evenly spread rows of ``n``, always keeping the last."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))


def _layout(fig: go.Figure, title: str, **kw) -> go.Figure:
    fig.update_layout(title=title, template="plotly_white", height=kw.pop("height", 380),
                      margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h", y=-0.2), **kw)
    return fig


_TRACES = {"scatter": go.Scatter, "heatmap": go.Heatmap, "contour": go.Contour}


def panel_figure(panel: panels.Panel, history: History) -> go.Figure:
    """One panel of the dashboard (:mod:`pinnlab.panels`) as a figure of its own, for a recorded run."""
    view = panels.RunView.from_history(history)
    idx = downsample(len(view.steps))
    view.steps, view.losses, view.weights, view.traces = (a[idx] for a in (view.steps, view.losses, view.weights,
                                                                           view.traces))
    fig = go.Figure()
    for trace in panel.traces(view):
        trace.pop("key")
        fig.add_trace(_TRACES[trace.pop("type")](**trace))
    xaxis, yaxis = panel.axes(view)
    fig.update_xaxes(**xaxis)
    fig.update_yaxes(**yaxis)
    return _layout(fig, panel.title[:1].upper() + panel.title[1:])


def losses(history: History) -> go.Figure:
    """Unweighted loss of each term vs step (log y), and the relative L2 error at the evaluations."""
    return panel_figure(panels.LOSSES, history)


def weights(history: History) -> go.Figure:
    """Weight lambda of each term vs step (log y)."""
    return panel_figure(panels.WEIGHTS, history)


def traces(history: History) -> go.Figure:
    """Each term's share of the weighted NTK trace, lambda_i Tr K_ii / sum_j lambda_j Tr K_jj (equal under
    Algorithm 1), and the raw share Tr K_ii / Tr K (faint), vs step."""
    return panel_figure(panels.SHARES, history)


def _field(history: History) -> tuple[np.ndarray, np.ndarray]:
    """Exact solution and final prediction on the evaluation grid (prediction NaN when absent)."""
    exact = np.asarray(history.exact, float)
    pred = np.full_like(exact, np.nan) if history.prediction is None else np.asarray(history.prediction, float)
    return exact, pred


def _heatmap(history: History, values: np.ndarray, colorscale: str, colorbar_x: float) -> go.Heatmap:
    """A heat map of grid values; the first coordinate (e.g. t) on x, the second (e.g. x) on y."""
    shape = tuple(history.grid_shape)
    grid = np.asarray(history.grid)
    first = grid[:, 0].reshape(shape)[:, 0]
    second = grid[:, 1].reshape(shape)[0, :]
    return go.Heatmap(x=first, y=second, z=values.reshape(shape).T, colorscale=colorscale,
                      colorbar=dict(x=colorbar_x, len=0.9, thickness=12))


def prediction(history: History) -> go.Figure:
    """Predicted vs exact solution: a line plot in 1D; heat maps (exact, predicted, |error|) in 2D."""
    exact, pred = _field(history)
    coords = history.coords
    if len(coords) == 1:
        return panel_figure(panels.PREDICTION, history)
    spacing = 0.13  # room for a colour bar and the next panel's axis title
    width = (1 - 2 * spacing) / 3
    fig = make_subplots(rows=1, cols=3, subplot_titles=("exact u", "predicted û", "error û − u"),
                        horizontal_spacing=spacing)
    lo, hi = np.nanmin(exact), np.nanmax(exact)
    for col, (values, scale) in enumerate(((exact, "RdBu_r"), (pred, "RdBu_r"), (pred - exact, "RdBu_r"))):
        heat = _heatmap(history, values, scale, colorbar_x=col * (width + spacing) + width + 0.01)
        if col < 2:  # exact and predicted share one colour scale, shown once
            heat.update(zmin=lo, zmax=hi, showscale=col == 1)
        fig.add_trace(heat, 1, col + 1)
    fig.update_xaxes(title=coords[0])
    fig.update_yaxes(title=coords[1])
    return _layout(fig, "Prediction vs exact", height=400)


def error(history: History) -> go.Figure:
    """The signed error u_hat - u on the evaluation grid (1D: with its best line alpha + beta x; 2D: a heat map)."""
    if len(history.coords) == 1:
        return panel_figure(panels.ERROR, history)
    exact, pred = _field(history)
    fig = go.Figure(_heatmap(history, pred - exact, "RdBu_r", colorbar_x=1.02).update(zmid=0))
    fig.update_xaxes(title=history.coords[0])
    fig.update_yaxes(title=history.coords[1])
    return _layout(fig, "Error û − u")


def spectra(history: History) -> go.Figure:
    """Eigenvalues of K and of each diagonal block vs index (log-log), one line per recorded step."""
    blocks = list(history.spectra[0]) if history.spectra else ["K"]
    fig = make_subplots(rows=1, cols=len(blocks), subplot_titles=blocks)
    for i, (step, eig) in enumerate(zip(history.spectra_step, history.spectra, strict=True)):
        color = panels.series_color(i, len(history.spectra))
        for col, block in enumerate(blocks, start=1):
            lam = np.asarray(eig[block], float)
            lam = lam[np.isfinite(lam) & (lam > 0)]  # log axes: only positive eigenvalues
            index = np.arange(1, len(lam) + 1)
            fig.add_trace(go.Scatter(x=index, y=lam, mode="lines", name=f"step {step}", legendgroup=str(step),
                                     showlegend=col == 1, line=dict(color=color)), 1, col)
            if len(lam):
                floor = panels.NOISE_FLOOR * lam.max()
                fig.add_trace(go.Scatter(x=[1, len(lam)], y=[floor, floor], mode="lines", hoverinfo="skip",
                                         name="float32 noise floor", legendgroup="floor",
                                         showlegend=col == 1 and i == 0, line=dict(color=color, dash="dash", width=1)),
                              1, col)
    fig.update_xaxes(**panels.INDEX_AXIS)
    fig.update_yaxes(**panels.LOG_AXIS)
    return _layout(fig, "NTK eigenvalues (descending)", height=400)


def _positive(values) -> list:
    """Values for a log axis: zeros (drift at step 0) and non-finite values become gaps."""
    return [v if v is not None and np.isfinite(v) and v > 0 else None for v in values]


def convergence(history: History) -> go.Figure:
    """Relative L2 error, relative parameter drift and relative NTK drift vs step (log y)."""
    fig = go.Figure([
        go.Scatter(x=history.eval_step, y=_positive(history.rel_l2), mode="lines+markers", name="relative L2 error",
                   line=dict(color=panels.NEUTRAL)),
        go.Scatter(x=history.eval_step, y=_positive(history.param_drift), mode="lines+markers",
                   name="‖θ - θ₀‖ / ‖θ₀‖", line=dict(color=panels.SERIES_COLORS[1])),
        go.Scatter(x=history.spectra_step, y=_positive(history.ntk_drift), mode="markers",
                   marker=dict(size=10, symbol="diamond", color=panels.SERIES_COLORS[3]), name="‖K - K₀‖ / ‖K₀‖"),
    ])
    fig.update_xaxes(**panels.STEP_AXIS)
    fig.update_yaxes(**panels.LOG_AXIS)
    return _layout(fig, "Error and drift")


FIGURES = {
    "losses": losses, "weights": weights, "traces": traces, "prediction": prediction, "error": error,
    "spectra": spectra, "convergence": convergence,
}


def figures(history: History) -> dict[str, go.Figure]:
    """Every figure that has data in ``history``, in report order."""
    has = {
        "losses": bool(history.steps), "weights": bool(history.steps), "traces": bool(history.steps),
        "prediction": history.prediction is not None, "error": history.prediction is not None,
        "spectra": bool(history.spectra), "convergence": bool(history.eval_step),
    }
    return {name: f(history) for name, f in FIGURES.items() if has[name]}
