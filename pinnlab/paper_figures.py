"""Plotly figures of the paper (Figs. 1-8) from an :class:`pinnlab.paper.Experiment`."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pinnlab.panels import positive_spectrum as _positive
from pinnlab.panels import series_color, term_color

# Runs of a figure (widths, values of a, snapshots) take the series ramp; loss terms keep their own colours.
COLORS = tuple(series_color(i, 6) for i in range(6))


def _log_axes(fig, rows, cols, x=True):
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            fig.update_yaxes(type="log", row=r, col=c)
            if x:
                fig.update_xaxes(type="log", row=r, col=c)


def fig1(exp) -> go.Figure:
    blocks = [("K", "K"), ("K_u", "K_uu"), ("K_r", "K_rr")]
    fig = make_subplots(1, 3, subplot_titles=[f"eigenvalues of {t}" for _, t in blocks])
    for i, (label, h) in enumerate(exp.histories.items()):
        for col, (key, _) in enumerate(blocks, 1):
            for spec, dash, when in ((h.spectra[0], "solid", "init"), (h.spectra[-1], "dot", "trained")):
                x, y = _positive(spec[key])
                fig.add_scatter(x=x, y=y, mode="lines", line=dict(color=COLORS[i], dash=dash), row=1, col=col,
                                name=f"{label} ({when})", legendgroup=f"{label}{when}", showlegend=col == 1)
    _log_axes(fig, 1, 3)
    fig.update_layout(title="Fig. 1: NTK spectra for u = sin(a pi x): init (solid) and after training (dotted)")
    return fig


def fig2(exp) -> go.Figure:
    """Also Fig. 3 (depth 3): parameter change, NTK change, and the widest net's spectra."""
    fig = make_subplots(1, 3, subplot_titles=["||theta_n - theta_0|| / ||theta_0||", "||K_n - K_0|| / ||K_0||",
                                              "eigenvalues of K, widest net"])
    for i, (label, h) in enumerate(exp.histories.items()):
        fig.add_scatter(x=h.eval_step, y=h.param_drift, name=label, line=dict(color=COLORS[i]), row=1, col=1)
        fig.add_scatter(x=h.spectra_step, y=h.ntk_drift, name=label, line=dict(color=COLORS[i]), row=1, col=2,
                        showlegend=False)
    h = list(exp.histories.values())[-1]
    for spec, step, dash in ((h.spectra[0], h.spectra_step[0], "solid"), (h.spectra[-1], h.spectra_step[-1], "dash")):
        x, y = _positive(spec["K"])
        fig.add_scatter(x=x, y=y, name=f"n = {step}", line=dict(color="black", dash=dash), row=1, col=3)
    fig.update_xaxes(title="iteration", row=1, col=1)
    fig.update_xaxes(title="iteration", row=1, col=2)
    fig.update_xaxes(type="log", row=1, col=3)
    fig.update_yaxes(type="log", row=1, col=3)
    depth = exp.numbers.get("depth", 1)
    fig.update_layout(title=f"Fig. {2 if depth == 1 else 3}: NTK of a {depth}-hidden-layer PINN vs width")
    return fig


def _line_prediction(fig, h, row, col, showlegend):
    x = h.grid[:, 0]
    fig.add_scatter(x=x, y=h.exact, name="exact", line=dict(color="black"), row=row, col=col, showlegend=showlegend)
    fig.add_scatter(x=x, y=h.prediction, name="PINN", line=dict(color="#d62728", dash="dash"), row=row, col=col,
                    showlegend=showlegend)


def fig4(exp) -> go.Figure:
    labels = list(exp.histories)
    titles = [f"{k}: rel. L2 {exp.numbers[k]['rel_l2']:.2e}" for k in labels]
    fig = make_subplots(2, len(labels), subplot_titles=titles + ["|error|"] * len(labels))
    for col, label in enumerate(labels, 1):
        h = exp.histories[label]
        _line_prediction(fig, h, 1, col, col == 1)
        fig.add_scatter(x=h.grid[:, 0], y=np.abs(h.prediction - h.exact), line=dict(color="#444"), row=2, col=col,
                        showlegend=False)
        fig.update_yaxes(type="log", row=2, col=col)
    fig.update_layout(title="Fig. 4: Poisson u = sin(4 pi x), without and with NTK weights")
    return fig


def fig5(exp) -> go.Figure:
    n = exp.numbers
    fig = go.Figure(go.Scatter(x=n["lambda_b"], y=n["mean"], error_y=dict(type="data", array=n["std"]),
                               mode="lines+markers", name="mean +- std"))
    for lam, errs in zip(n["lambda_b"], n["rel_l2"]):
        fig.add_scatter(x=[lam] * len(errs), y=errs, mode="markers", marker=dict(color="#999", size=4),
                        showlegend=False)
    fig.update_yaxes(type="log", title="relative L2 error")
    fig.update_xaxes(title="lambda_b (lambda_r = 1)")
    fig.update_layout(title=f"Fig. 5: error vs lambda_b, {n['trials']} trials each")
    return fig


def fig6(exp) -> go.Figure:
    labels = list(exp.histories)
    h0 = exp.histories[labels[0]]
    shape = h0.grid_shape
    axis = np.unique(h0.grid[:, 1])
    titles = ["exact u(x, t)"] + [f"{k} (L2 {exp.numbers[k]['rel_l2']:.1e})" for k in labels]
    titles += [f"{k}: |error|" for k in labels]
    fig = make_subplots(1, 1 + 2 * len(labels), subplot_titles=titles)
    heat = lambda z, col, **kw: fig.add_heatmap(x=axis, y=axis, z=np.reshape(z, shape), row=1, col=col,  # noqa: E731
                                                showscale=False, **kw)
    heat(h0.exact, 1, colorscale="RdBu")
    for i, label in enumerate(labels):
        h = exp.histories[label]
        heat(h.prediction, 2 + i, colorscale="RdBu")
        heat(np.abs(h.prediction - h.exact), 2 + len(labels) + i, colorscale="Viridis")
    fig.update_xaxes(title="x")
    fig.update_yaxes(title="t", col=1)
    fig.update_layout(title="Fig. 6: wave equation, exact / predicted / error", height=420)
    return fig


def fig7(exp) -> go.Figure:
    h = exp.histories["no weights"]
    names = [k for k in h.spectra[0] if k != "K"]
    fig = make_subplots(1, len(names), subplot_titles=[f"eigenvalues of {k}" for k in names])
    for i, (step, spec) in enumerate(zip(h.spectra_step, h.spectra)):
        for col, k in enumerate(names, 1):
            x, y = _positive(spec[k])
            fig.add_scatter(x=x, y=y, name=f"n = {step}", line=dict(color=COLORS[i % len(COLORS)]), row=1, col=col,
                            legendgroup=str(step), showlegend=col == 1)
    _log_axes(fig, 1, len(names))
    fig.update_layout(title="Fig. 7: NTK spectra of the unweighted wave PINN during training")
    return fig


def fig8(exp) -> go.Figure:
    h = exp.histories["Algorithm 1"]
    steps, weights = h.curve("steps"), h.curve("weights")
    stride = max(1, len(steps) // 2000)
    names = [k for k in h.spectra[-1] if k != "K"]
    fig = make_subplots(1, 2, subplot_titles=["weights during training", "spectra at the last step"])
    for i, term in enumerate(h.terms):
        fig.add_scatter(x=steps[::stride], y=weights[::stride, i], name=f"lambda_{term}",
                        line=dict(color=term_color(term, h.terms)), row=1, col=1)
    final_w = weights[-1]
    for i, k in enumerate(names):
        x, y = _positive(h.spectra[-1][k])
        color = term_color(k[2:], h.terms)
        fig.add_scatter(x=x, y=y, name=k, line=dict(color=color, dash="dot"), row=1, col=2)
        fig.add_scatter(x=x, y=final_w[i] * y, name=f"lambda {k}", line=dict(color=color), row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title="iteration", row=1, col=1)
    fig.update_xaxes(type="log", row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_layout(title="Fig. 8: Algorithm 1's weights and the weighted spectra (solid) vs raw (dotted)")
    return fig


# How each figure is drawn; which experiment makes it is stated once, in :data:`pinnlab.paper.FIGURES`.
DRAW = {"fig1": fig1, "fig2": fig2, "fig3": fig2, "fig4": fig4, "fig5": fig5, "fig6": fig6, "fig7": fig7,
        "fig8": fig8}


def build(exp) -> dict[str, go.Figure]:
    """Every figure that experiment ``exp`` makes (per :data:`pinnlab.paper.FIGURES`), drawn."""
    from pinnlab.paper import FIGURES

    return {fig: DRAW[fig](exp) for fig, (name, _) in FIGURES.items() if name == exp.name}
