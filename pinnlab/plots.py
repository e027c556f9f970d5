"""Plotly figures of a run: pure functions ``History -> plotly.graph_objects.Figure``.

Used by notebooks, the HTML report and the live widget (which copies their traces into one
FigureWidget), so every function takes only a :class:`~pinnlab.history.History` and returns a new
figure. Nothing in the core imports this module: plotly is an optional dependency (``pinnlab[report]``).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pinnlab.history import History

MAX_POINTS = 2000
# Eigenvalues of a float32 kernel below ~1e-7 of the largest are rounding noise, not spectrum.
NOISE_FLOOR = 1e-7
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def downsample(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` evenly spread rows of ``n``, always keeping the last."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))


def _layout(fig: go.Figure, title: str, **kw) -> go.Figure:
    fig.update_layout(title=title, template="plotly_white", height=kw.pop("height", 380),
                      margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h", y=-0.2), **kw)
    return fig


def _per_term(history: History, name: str, title: str, ytitle: str) -> go.Figure:
    """One log-scale line per loss term of the per-step curve ``name``."""
    steps, values = history.curve("steps"), history.curve(name)
    idx = downsample(len(steps))
    fig = go.Figure()
    for j, term in enumerate(history.terms):
        fig.add_trace(go.Scatter(x=steps[idx], y=values[idx, j], mode="lines", name=f"{ytitle} {term}",
                                 line=dict(color=COLORS[j % len(COLORS)])))
    fig.update_yaxes(type="log", title=ytitle, exponentformat="power")
    fig.update_xaxes(title="step")
    return _layout(fig, title)


def losses(history: History) -> go.Figure:
    """Unweighted loss of each term vs step (log y)."""
    return _per_term(history, "losses", "Loss per term (unweighted)", "L")


def weights(history: History) -> go.Figure:
    """Weight lambda of each term vs step (log y)."""
    return _per_term(history, "weights", "Loss weights", "λ")


def traces(history: History) -> go.Figure:
    """NTK block traces Tr K_i per term and the ratios Tr K / Tr K_i (Algorithm 1's raw weights)."""
    steps, tr = history.curve("steps"), history.curve("traces")
    idx = downsample(len(steps))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Tr K_i", "Tr K / Tr K_i"))
    total = tr.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(tr > 0, total / tr, np.nan)
    for j, term in enumerate(history.terms):
        color = dict(color=COLORS[j % len(COLORS)])
        fig.add_trace(go.Scatter(x=steps[idx], y=tr[idx, j], mode="lines", name=f"Tr K_{term}", line=color), 1, 1)
        fig.add_trace(go.Scatter(x=steps[idx], y=ratio[idx, j], mode="lines", name=f"Tr K / Tr K_{term}",
                                 line=dict(dash="dot", **color)), 1, 2)
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_xaxes(title="step")
    return _layout(fig, "NTK traces (on the NTK points; refreshed every ntk_every steps)")


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
        x = np.asarray(history.grid)[:, 0]
        fig = go.Figure([
            go.Scatter(x=x, y=exact, mode="lines", name="exact", line=dict(color="black")),
            go.Scatter(x=x, y=pred, mode="lines", name="predicted", line=dict(color="#d62728", dash="dash")),
        ])
        fig.update_xaxes(title=coords[0])
        fig.update_yaxes(title="u")
        return _layout(fig, "Prediction vs exact")
    spacing = 0.13  # room for a colour bar and the next panel's axis title
    width = (1 - 2 * spacing) / 3
    fig = make_subplots(rows=1, cols=3, subplot_titles=("exact", "predicted", "|error|"), horizontal_spacing=spacing)
    lo, hi = np.nanmin(exact), np.nanmax(exact)
    for col, (values, scale) in enumerate(((exact, "RdBu_r"), (pred, "RdBu_r"), (np.abs(pred - exact), "Viridis"))):
        heat = _heatmap(history, values, scale, colorbar_x=col * (width + spacing) + width + 0.01)
        if col < 2:  # exact and predicted share one colour scale, shown once
            heat.update(zmin=lo, zmax=hi, showscale=col == 1)
        fig.add_trace(heat, 1, col + 1)
    fig.update_xaxes(title=coords[0])
    fig.update_yaxes(title=coords[1])
    return _layout(fig, "Prediction vs exact", height=400)


def error(history: History) -> go.Figure:
    """Pointwise absolute error |u - u_hat| on the evaluation grid (log y in 1D, heat map in 2D)."""
    exact, pred = _field(history)
    err = np.abs(pred - exact)
    if len(history.coords) == 1:
        fig = go.Figure(go.Scatter(x=np.asarray(history.grid)[:, 0], y=err, mode="lines", name="|error|"))
        fig.update_xaxes(title=history.coords[0])
        fig.update_yaxes(type="log", title="|u - û|", exponentformat="power")
    else:
        fig = go.Figure(_heatmap(history, err, "Viridis", colorbar_x=1.02))
        fig.update_xaxes(title=history.coords[0])
        fig.update_yaxes(title=history.coords[1])
    return _layout(fig, "Pointwise error |u - û|")


def spectra(history: History) -> go.Figure:
    """Eigenvalues of K and of each diagonal block vs index (log-log), one line per recorded step."""
    blocks = list(history.spectra[0]) if history.spectra else ["K"]
    fig = make_subplots(rows=1, cols=len(blocks), subplot_titles=blocks)
    for i, (step, eig) in enumerate(zip(history.spectra_step, history.spectra, strict=True)):
        color = COLORS[i % len(COLORS)]
        for col, block in enumerate(blocks, start=1):
            lam = np.asarray(eig[block], float)
            lam = lam[np.isfinite(lam) & (lam > 0)]  # log axes: only positive eigenvalues
            index = np.arange(1, len(lam) + 1)
            fig.add_trace(go.Scatter(x=index, y=lam, mode="lines", name=f"step {step}", legendgroup=str(step),
                                     showlegend=col == 1, line=dict(color=color)), 1, col)
            if len(lam):
                floor = NOISE_FLOOR * lam.max()
                fig.add_trace(go.Scatter(x=[1, len(lam)], y=[floor, floor], mode="lines", hoverinfo="skip",
                                         name="float32 noise floor", legendgroup="floor",
                                         showlegend=col == 1 and i == 0, line=dict(color=color, dash="dash", width=1)),
                              1, col)
    fig.update_xaxes(type="log", title="index")
    fig.update_yaxes(type="log", exponentformat="power")
    return _layout(fig, "NTK eigenvalues (descending)", height=400)


def _positive(values) -> list:
    """Values for a log axis: zeros (drift at step 0) and non-finite values become gaps."""
    return [v if v is not None and np.isfinite(v) and v > 0 else None for v in values]


def convergence(history: History) -> go.Figure:
    """Relative L2 error, relative parameter drift and relative NTK drift vs step (log y)."""
    fig = go.Figure([
        go.Scatter(x=history.eval_step, y=_positive(history.rel_l2), mode="lines+markers", name="relative L2 error"),
        go.Scatter(x=history.eval_step, y=_positive(history.param_drift), mode="lines+markers",
                   name="‖θ - θ₀‖ / ‖θ₀‖"),
        go.Scatter(x=history.spectra_step, y=_positive(history.ntk_drift), mode="markers",
                   marker=dict(size=10, symbol="diamond"), name="‖K - K₀‖ / ‖K₀‖"),
    ])
    fig.update_xaxes(title="step")
    fig.update_yaxes(type="log", exponentformat="power")
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
