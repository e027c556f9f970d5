"""Plotly figures of the lessons (``linearized``, ``infinite-width``, ``stability``) from a
:class:`pinnlab.lessons.Lesson`'s numbers alone (so a saved JSON redraws them too)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pinnlab.panels import EXACT_COLOR, KERNEL_COLOR, LOG_AXIS, NEUTRAL, PREDICTION_COLOR, series_color, term_color

# Kernel blocks keep their terms' colours (as in the lab's spectra); K itself is the kernel's black.
BLOCK_COLORS = {"K": KERNEL_COLOR, "K_uu": term_color("u"), "K_ur": NEUTRAL, "K_rr": term_color("r")}


def _layout(fig: go.Figure, title: str, height: int = 430) -> go.Figure:
    fig.update_layout(title=title, template="plotly_white", height=height, margin=dict(l=70, r=20, t=70, b=50))
    return fig


def _width_axis(widths) -> dict:
    """A log axis ticked at the widths themselves (plotly's log ticks crowd a short range)."""
    return dict(type="log", tickvals=list(widths), ticktext=[f"{w:g}" for w in widths], title="width")


def _fit(x, y):
    """The least-squares power law through (x, y) on log-log axes, evaluated at x (NaN-safe)."""
    from pinnlab.lessons import power_law

    x = np.asarray(x, np.float64)
    slope, icept = power_law(x, y)
    return np.exp(icept) * x ** slope


def linearized(lesson) -> go.Figure:
    n = lesson.numbers
    runs, widths = n["runs"], np.asarray(n["widths"], np.float64)
    fig = make_subplots(1, 2, subplot_titles=["real vs linearised network, after training",
                                              f"predictions, widths {runs[0]['width']} and {runs[-1]['width']}"])
    series = (("prediction_distance", "||u - u_lin|| / ||u|| on the grid"),
              ("kernel_drift", "||K_T - K_0|| / ||K_0||"),
              ("residual_distance", "||r - r_lin|| / ||r|| at the points"))
    for i, (key, name) in enumerate(series):
        color = series_color(i, len(series))
        y = [r[key] for r in runs]
        fig.add_scatter(x=widths, y=y, mode="lines+markers", line=dict(color=color), row=1, col=1,
                        name=f"{name}: slope {n['slope_vs_width'][key]:.2f}", legendgroup=key)
        fig.add_scatter(x=widths, y=_fit(widths, y), mode="lines", line=dict(color=color, dash="dot"), row=1, col=1,
                        showlegend=False, legendgroup=key, hoverinfo="skip")
    x = n["grid"]
    fig.add_scatter(x=x, y=n["exact"], name="exact", line=dict(color=EXACT_COLOR, width=1), row=1, col=2)
    for r, color in ((runs[0], NEUTRAL), (runs[-1], PREDICTION_COLOR)):
        fig.add_scatter(x=x, y=r["prediction_real"], name=f"width {r['width']}: real", line=dict(color=color),
                        row=1, col=2)
        fig.add_scatter(x=x, y=r["prediction_linearised"], name=f"width {r['width']}: linearised",
                        line=dict(color=color, dash="dash"), row=1, col=2)
    fig.update_xaxes(_width_axis(widths), row=1, col=1)
    fig.update_yaxes(LOG_AXIS, title="relative distance", row=1, col=1)
    fig.update_xaxes(title="x", row=1, col=2)
    return _layout(fig, f"The linearised network vs the real one: {n['steps']} gradient-descent steps, "
                        f"lr = {n['lr_factor']:g} / lambda_max(K-tilde); dotted: fitted power laws")


def infinite_width(lesson) -> go.Figure:
    n = lesson.numbers
    widths = np.asarray(n["widths"], np.float64)
    fig = make_subplots(1, 2, subplot_titles=[f"distance to the infinite-width kernel ({n['seeds']} seeds each)",
                                              "diagonal of K_rr: seed 0 vs the limit"])
    for name, color in BLOCK_COLORS.items():
        rms = [row[name]["rms"] for row in n["distances"]]
        fig.add_scatter(x=widths, y=rms, mode="lines+markers", line=dict(color=color), row=1, col=1, legendgroup=name,
                        name=f"{name}: RMS, slope {n['slope_vs_width'][name]:.2f}")
        each = [(w, d) for w, row in zip(widths, n["distances"]) for d in row[name]["all"]]
        fig.add_scatter(x=[w for w, _ in each], y=[d for _, d in each], mode="markers", opacity=0.35,
                        marker=dict(color=color, size=5), row=1, col=1, showlegend=False, legendgroup=name)
    k_first = n["distances"][0]["K"]["rms"]
    fig.add_scatter(x=widths, y=k_first * (widths / widths[0]) ** -0.5, mode="lines", row=1, col=1,
                    line=dict(color=NEUTRAL, dash="dot"), name="width^-1/2")
    n_b, x = n["n_b"], n["points"][n["n_b"]:]
    for i, (width, diag) in enumerate(n["diagonal_seed0"].items()):
        fig.add_scatter(x=x, y=diag[n_b:], mode="lines", line=dict(color=series_color(i, len(widths))), row=1, col=2,
                        name=f"width {width}, seed 0")
    fig.add_scatter(x=x, y=n["diagonal_limit"][n_b:], mode="lines", line=dict(color=KERNEL_COLOR, width=3, dash="dash"),
                    row=1, col=2, name="infinite width")
    fig.update_xaxes(_width_axis(widths), row=1, col=1)
    fig.update_yaxes(LOG_AXIS, title="||K_m - K_inf|| / ||K_inf||", row=1, col=1)
    fig.update_xaxes(title="x", row=1, col=2)
    fig.update_yaxes(LOG_AXIS, title="K_rr(x, x)", row=1, col=2)
    return _layout(fig, "The one-hidden-layer NTK tends to its infinite-width limit as width^-1/2 "
                        f"(limit: {n['limit']})")


def _log_ticks(values) -> dict:
    return dict(tickvals=np.log10(values).tolist(), ticktext=[f"{v:g}" for v in values])


def _edges(logs) -> list[float]:
    """The heat map's outer cell edges: half a cell beyond the first and last values."""
    logs = np.asarray(logs, np.float64)
    half = (logs[1] - logs[0]) / 2 if len(logs) > 1 else 0.5
    end = (logs[-1] - logs[-2]) / 2 if len(logs) > 1 else 0.5
    return [float(logs[0] - half), float(logs[-1] + end)]


def stability(lesson) -> go.Figure:
    n = lesson.numbers
    lrs, lams = np.asarray(n["lr"], np.float64), np.asarray(n["lambda_b"], np.float64)
    mean = np.array([[np.nan if v is None else v for v in row] for row in n["mean_rel_l2"]], np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log10(mean)
    seeds = len(n["seeds"])
    text = [[f"lr {lr:g}, lambda_b {lam:g}: mean rel. L2 {m:.2e}, {d}/{seeds} diverged"
             for lam, m, d in zip(lams, row, div)] for lr, row, div in zip(lrs, mean, n["diverged"])]
    finite = z[np.isfinite(z)]
    low = float(finite.min()) if finite.size else -1.0
    # errors above 1 (an error as large as the solution) share the top colour: one blown-up run would
    # otherwise squash every other cell into the bottom of the scale
    fig = go.Figure(go.Heatmap(x=np.log10(lams), y=np.log10(lrs), z=z, colorscale="Viridis", text=text,
                               hoverinfo="text", zmin=min(low, -1.0), zmax=0.0,
                               colorbar=dict(title="log10 rel. L2<br>(capped at 0)")))
    cells = [(lam, lr, d) for lr, div in zip(lrs, n["diverged"]) for lam, d in zip(lams, div) if d]
    if cells:
        fig.add_scatter(x=[np.log10(c[0]) for c in cells], y=[np.log10(c[1]) for c in cells], mode="markers+text",
                        marker=dict(symbol="x", size=10, color=NEUTRAL), text=[f"{c[2]}/{seeds}" for c in cells],
                        textposition="top center", textfont=dict(size=9), name="diverged (seeds)", hoverinfo="skip")
    line = n["bound"]["line"]
    x, y = np.log10(line["lambda_b"]), np.log10(line["lr_max"])
    # a white halo under a black line: visible on the dark and the light cells and on the blank (diverged) ones
    fig.add_scatter(x=x, y=y, mode="lines", line=dict(color="white", width=6), showlegend=False, hoverinfo="skip")
    fig.add_scatter(x=x, y=y, mode="lines", line=dict(color=KERNEL_COLOR, width=2),
                    name=f"2 / lambda_max(K-tilde), seed {n['bound']['line_seed']}")
    fig.update_xaxes(title="lambda_b (lambda_r = 1)", range=_edges(np.log10(lams)), **_log_ticks(lams))
    fig.update_yaxes(title="learning rate (gradient descent)", range=_edges(np.log10(lrs)), **_log_ticks(lrs))
    fig.update_layout(legend=dict(orientation="h", y=-0.2))
    return _layout(fig, f"Fig. 5 as a map: final error after {n['steps']} steps; gradient descent is stable below "
                        "the line (initial kernel)", height=520)


DRAW = {"linearized": linearized, "infinite-width": infinite_width, "stability": stability}


def build(lesson) -> dict[str, go.Figure]:
    """``{lesson.name: figure}``."""
    return {lesson.name: DRAW[lesson.name](lesson)}
