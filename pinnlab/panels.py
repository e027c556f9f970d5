"""The panels every pinnlab figure is made of: one small function each, shared by the live lab and
:mod:`pinnlab.plots` (which builds static figures from a :class:`~pinnlab.history.History`).

A panel maps a :class:`RunView` (what one run shows at one moment) to plotly trace dictionaries, each
with a ``"key"`` that is stable for a given problem (the lab updates its traces in place by key, so a
panel returns every trace whatever the data, empty where there is nothing yet). This module needs only
numpy: it states once the palette (one colour per loss term, nothing else shares it), the block names,
the positive-spectrum filter for log axes and the weighted trace share,

    s_i = lambda_i Tr K_ii / sum_j lambda_j Tr K_jj,

which Algorithm 1 (lambda_i = sum_j Tr K_jj / Tr K_ii) makes equal to 1/m for every term. With all
weights 1 it is the raw share Tr K_ii / Tr K, whose inverse is Algorithm 1's weight.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

# One colour per loss term, in every panel and every problem; nothing else uses these.
TERM_COLORS = {"u": "#1f77b4", "ut": "#2ca02c", "r": "#d62728"}
OTHER_TERM_COLORS = ("#ff7f0e", "#8c564b", "#e377c2", "#17becf")  # terms of user-defined problems
KERNEL_COLOR, EXACT_COLOR, PREDICTION_COLOR, NEUTRAL = "#000000", "#000000", "#9467bd", "#7f7f7f"
# Eigenvalues of a float32 kernel below ~1e-7 of the largest are rounding noise, not spectrum.
NOISE_FLOOR = 1e-7
FAINT = 0.35
# Log axes label every tick with its value (1e+2, 5e+2), never a bare "5" that means 500, and few of them.
LOG_AXIS = dict(type="log", tickformat=".0e", nticks=4)
INDEX_AXIS = dict(type="log", tickvals=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000], title="eigenvalue index")
# Linear axes of small numbers: 5e-4, not "500µ".
LINEAR_AXIS = dict(exponentformat="e")
STEP_AXIS = dict(title="step")


# Series that are not terms (recorded steps, runs of a sweep): a dark-to-light ramp no term colour is on.
SERIES_COLORS = ("#222222", "#3b3b8f", "#6a51a3", "#9e5fb4", "#c994c7", "#888888")


def series_color(i: int, n: int) -> str:
    """The colour of series ``i`` of ``n`` (oldest darkest), never a term's colour."""
    return SERIES_COLORS[min(len(SERIES_COLORS) - 1, i * len(SERIES_COLORS) // max(n, 1))]


def term_color(term: str, terms: tuple[str, ...] = ()) -> str:
    """The colour of loss term ``term`` (fixed for u, ut, r; other names take the spare colours in order)."""
    if term in TERM_COLORS:
        return TERM_COLORS[term]
    others = [t for t in terms if t not in TERM_COLORS] or [term]
    return OTHER_TERM_COLORS[others.index(term) % len(OTHER_TERM_COLORS)] if term in others else NEUTRAL


def term_role(term: str, coords: tuple[str, ...]) -> str:
    """What a term constrains, in words: boundary, boundary + initial, initial velocity, residual."""
    if term == "u":
        return "boundary + initial" if "t" in coords else "boundary"
    return {"ut": "initial velocity", "r": "residual"}.get(term, term)


def block_name(term: str) -> str:
    """The paper's name of a term's diagonal NTK block: K_uu, K_rr, and K_ut for the u_t term."""
    return f"K_{term}{term}" if len(term) == 1 else f"K_{term}"


def block_label(term: str, coords: tuple[str, ...]) -> str:
    """``"K_uu (boundary)"``, ``"K_rr (residual)"``, ``"K_ut (initial velocity)"``."""
    return f"{block_name(term)} ({term_role(term, coords)})"


def positive_spectrum(eigenvalues) -> tuple[np.ndarray, np.ndarray]:
    """Index (from 1) and the eigenvalues above the float32 noise floor (1e-7 of the largest), for log axes."""
    lam = np.asarray(eigenvalues, np.float64).ravel()
    lam = np.where(np.isfinite(lam), lam, 0.0)
    top = lam.max() if len(lam) else 0.0
    keep = lam > NOISE_FLOOR * top if top > 0 else np.zeros(len(lam), bool)
    return np.arange(1, len(lam) + 1)[keep].astype(np.float32), lam[keep].astype(np.float32)


def trace_shares(traces, weights) -> np.ndarray:
    """``lambda_i Tr K_ii / sum_j lambda_j Tr K_jj`` per row (NaN where the traces are not yet known)."""
    weighted = np.asarray(weights, np.float64) * np.asarray(traces, np.float64)
    total = weighted.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((total > 0) & np.all(np.isfinite(weighted), axis=-1, keepdims=True), weighted / total,
                        np.nan)


def best_line(x, error) -> tuple[float, float]:
    """``(alpha, beta)`` of the least-squares line alpha + beta x through ``error(x)``.

    An unweighted Poisson PINN fits u_xx = f but not the boundary values, so its error e has e'' ~ 0:
    the error is close to this line (notebook 03).
    """
    x, e = np.asarray(x, np.float64), np.asarray(error, np.float64)
    ok = np.isfinite(e)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    beta, alpha = np.polyfit(x[ok], e[ok], 1)
    return float(alpha), float(beta)


@dataclasses.dataclass
class RunView:
    """What one run shows at one moment: per-step curves, evaluations and a keyframe.

    ``steps (n,)`` with ``losses``, ``weights``, ``traces (n, m)``; ``eval_steps``/``rel_l2``; the
    keyframe's ``prediction`` on ``grid``, its raw ``spectra`` (eigenvalues of ``"K"`` and ``"K_<term>"``)
    and the ``weights_now`` they are weighted with; ``spectra0`` at step 0. ``label``/``dash`` tell the
    runs of a comparison apart.
    """

    terms: tuple[str, ...]
    coords: tuple[str, ...]
    grid: np.ndarray
    grid_shape: tuple[int, ...]
    exact: np.ndarray
    steps: np.ndarray
    losses: np.ndarray
    weights: np.ndarray
    traces: np.ndarray
    eval_steps: np.ndarray
    rel_l2: np.ndarray
    prediction: np.ndarray | None = None
    spectra: dict | None = None
    spectra0: dict | None = None
    weights_now: np.ndarray | None = None
    label: str = ""
    dash: str = "solid"
    modes: dict | None = None  # per-mode decay (pinnlab.lab.decay.ModeDecay.view), when tracked
    eigenmode: object | None = None  # a clicked eigenvector (pinnlab.lab.eigenmode.Eigenmode), when shown
    linear: dict | None = None  # the linearised twin (pinnlab.lab.run.LiveRun._linear_view), while it trains

    @classmethod
    def from_history(cls, h, label: str = "", dash: str = "solid") -> RunView:
        """The final state of a recorded run."""
        weights = h.curve("weights")
        return cls(terms=tuple(h.terms), coords=tuple(h.coords), grid=np.asarray(h.grid),
                   grid_shape=tuple(h.grid_shape), exact=np.asarray(h.exact), steps=h.curve("steps"),
                   losses=h.curve("losses"), weights=weights, traces=h.curve("traces"),
                   eval_steps=np.asarray(h.eval_step), rel_l2=np.asarray(h.rel_l2, np.float64),
                   prediction=None if h.prediction is None else np.asarray(h.prediction),
                   spectra=h.spectra[-1] if h.spectra else None, spectra0=h.spectra[0] if h.spectra else None,
                   weights_now=weights[-1] if len(weights) else None, label=label, dash=dash)

    @property
    def two_d(self) -> bool:
        return len(self.coords) == 2

    def name(self, text: str) -> str:
        return f"{self.label}: {text}" if self.label else text

    def color(self, term: str) -> str:
        return term_color(term, self.terms)

    def grid2d(self, values) -> np.ndarray:
        """Grid values as a heat-map z: first coordinate (t) along x, second (x) along y."""
        return np.asarray(values, np.float32).reshape(self.grid_shape).T

    def axes2d(self) -> tuple[np.ndarray, np.ndarray]:
        first = self.grid[:, 0].reshape(self.grid_shape)[:, 0]
        second = self.grid[:, 1].reshape(self.grid_shape)[0, :]
        return np.asarray(first, np.float32), np.asarray(second, np.float32)


@dataclasses.dataclass(frozen=True)
class Panel:
    """One subplot: a title, its traces as a function of a run's view, its axes, and whether it changes
    every frame (per-step curves) or only at keyframes (spectra, prediction, error)."""

    title: str
    traces: Callable[[RunView], list[dict]]
    axes: Callable[[RunView], tuple[dict, dict]]
    per_step: bool


def _line(view: RunView, key: str, x, y, name: str, color: str, **kw) -> dict:
    line = dict(color=color, dash=kw.pop("dash", view.dash), width=kw.pop("width", 2))
    return dict(type="scatter", mode=kw.pop("mode", "lines"), key=key, x=np.asarray(x, np.float32),
                y=np.asarray(y, np.float32), name=view.name(name), line=line, **kw)


def _per_term(view: RunView, values: np.ndarray, key: str, symbol: str, legend: bool) -> list[dict]:
    out = []
    for j, term in enumerate(view.terms):
        y = values[:, j] if len(values) else []
        out.append(_line(view, f"{key}:{term}", view.steps, y, f"{symbol}_{term} ({term_role(term, view.coords)})",
                         view.color(term), legendgroup=f"term-{term}", showlegend=legend,
                         hovertemplate=f"{symbol}_{term} %{{y:.3g}} @ %{{x}}<extra></extra>"))
    return out


def losses(view: RunView) -> list[dict]:
    """Unweighted loss L_i per term, and the relative L2 error at the evaluations."""
    out = _per_term(view, view.losses, "loss", "L", legend=not view.label or view.dash == "solid")
    out.append(_line(view, "rel_l2", view.eval_steps, view.rel_l2, "relative L2 error", NEUTRAL, width=1.5,
                     mode="lines+markers", marker=dict(size=4), legendgroup="rel_l2"))
    if view.linear is not None:  # the linearised twin (the lab rebuilds its figure when it is switched)
        lin = view.linear
        out.append(_line(view, "rel_l2-lin", lin["steps"], lin["rel_l2"], "relative L2 error, linearised network",
                         NEUTRAL, width=1.5, dash="dot", mode="lines+markers", marker=dict(size=4, symbol="diamond"),
                         legendgroup="linear"))
    return out


def weights(view: RunView) -> list[dict]:
    """The weight lambda_i of each term per step."""
    return _per_term(view, view.weights, "weight", "λ", legend=False)


def shares(view: RunView) -> list[dict]:
    """Weighted trace shares (solid; equal to 1/m under Algorithm 1) and raw shares Tr K_ii / Tr K (faint)."""
    weighted = trace_shares(view.traces, view.weights) if len(view.traces) else np.zeros((0, len(view.terms)))
    raw = trace_shares(view.traces, 1.0) if len(view.traces) else weighted
    out = []
    for j, term in enumerate(view.terms):
        color, y = view.color(term), (lambda a: a[:, j] if len(a) else [])
        label = block_name(term)
        out.append(_line(view, f"share:{term}", view.steps, y(weighted), f"λ Tr {label} share", color,
                         meta=f"share:{term}", legendgroup=f"term-{term}", showlegend=False,
                         hovertemplate=f"λ_{term} Tr {label} / Σ λ Tr K: %{{y:.3g}} @ %{{x}}<extra></extra>"))
        out.append(_line(view, f"raw-share:{term}", view.steps, y(raw), f"raw Tr {label} share", color,
                         meta=f"raw-share:{term}", opacity=FAINT, width=1.2, legendgroup=f"term-{term}",
                         showlegend=False, hovertemplate=f"Tr {label} / Tr K (raw): %{{y:.3g}}<extra></extra>"))
    return out


def spectra(view: RunView) -> list[dict]:
    """Eigenvalues of each weighted block lambda_i K_ii (solid; the paper's Fig. 8b), of the raw block (faint),
    and of the whole K now (black) and at step 0 (grey)."""
    now, first = view.spectra or {}, view.spectra0 or {}
    w = np.ones(len(view.terms)) if view.weights_now is None else np.asarray(view.weights_now, np.float64)
    legend = not view.label or view.dash == "solid"
    out = [_line(view, "eig:K", *positive_spectrum(now.get("K", [])), "K (all terms)", KERNEL_COLOR, width=1.5,
                 legendgroup="K", showlegend=legend),
           _line(view, "eig0:K", *positive_spectrum(first.get("K", [])), "K at step 0", NEUTRAL, width=1.2,
                 dash="dot", opacity=0.6, legendgroup="K0", showlegend=legend, hoverinfo="skip")]
    for j, term in enumerate(view.terms):
        lam = np.asarray(now.get(f"K_{term}", []), np.float64)
        label, color = block_label(term, view.coords), view.color(term)
        out.append(_line(view, f"eig-w:{term}", *positive_spectrum(w[j] * lam), f"λ·{label}", color,
                         legendgroup=f"eig-{term}", showlegend=legend))
        out.append(_line(view, f"eig:{term}", *positive_spectrum(lam), f"{label}, raw", color, opacity=FAINT,
                         width=1.2, dash="dot", legendgroup=f"eig-{term}", showlegend=False, hoverinfo="skip"))
    return out


def prediction(view: RunView) -> list[dict]:
    """Prediction against the exact solution: lines in 1D, a heat map with exact contours in 2D."""
    pred = np.full_like(view.exact, np.nan) if view.prediction is None else view.prediction
    if not view.two_d:
        x = view.grid[:, 0]
        out = [_line(view, "exact", x, view.exact, "exact u", EXACT_COLOR, width=3, dash="solid"),
               _line(view, "pred", x, pred, "prediction û", PREDICTION_COLOR)]
        if view.linear is not None:  # the linearised network beside the real one: same colour, dotted
            lin = view.linear["prediction"]
            out.append(_line(view, "lin", x if lin is not None else [], lin if lin is not None else [],
                             "linearised network f_lin", PREDICTION_COLOR, dash="dot", legendgroup="linear"))
        return out
    t, xs = view.axes2d()
    return [dict(type="heatmap", key="pred", x=t, y=xs, z=view.grid2d(pred), coloraxis="coloraxis",
                 name=view.name("prediction û")),
            dict(type="contour", key="exact", x=t, y=xs, z=view.grid2d(view.exact), contours_coloring="lines",
                 colorscale=[[0, "black"], [1, "black"]], line=dict(width=1), showscale=False, ncontours=10,
                 name="exact u (contours)", hoverinfo="skip", showlegend=True)]


def error(view: RunView) -> list[dict]:
    """The signed error û - u; in 1D with its best line alpha + beta x (the unlearned boundary values)."""
    pred = np.full_like(view.exact, np.nan) if view.prediction is None else view.prediction
    err = np.asarray(pred, np.float64) - view.exact
    if view.two_d:
        t, xs = view.axes2d()
        return [dict(type="heatmap", key="err", x=t, y=xs, z=view.grid2d(err), coloraxis="coloraxis2",
                     name=view.name("û − u"))]
    x = view.grid[:, 0]
    alpha, beta = best_line(x, err)
    return [_line(view, "err", x, err, "error û − u", PREDICTION_COLOR, showlegend=False),
            _line(view, "err-line", x, alpha + beta * x, "best line α + βx", NEUTRAL, width=1.5, dash="dash",
                  showlegend=False, hovertemplate=f"α + βx: α = {alpha:.3g}, β = {beta:.3g}<extra></extra>")]


MODE_SLOTS = 5  # traces per run in the modes panel (stable keys: empty where N has fewer modes)


def mode_decay(view: RunView) -> list[dict]:
    """|c_k(t)| of the residual on a few eigenvectors of K-tilde at step 0 (markers: measured at the
    keyframes; dashed: gradient descent's linearised prediction ``(1 - eta lambda_k)^t |c_k(0)|``, where
    it applies; see :mod:`pinnlab.lab.decay`). Series colours: the modes are not terms."""
    m = view.modes or {}
    out = []
    for j in range(MODE_SLOTS):
        has = "index" in m and j < len(m["index"])
        color = series_color(j, MODE_SLOTS)
        if has:
            k, lam = int(m["index"][j]), float(m["values"][j])
            learn = m.get("steps_to_learn")
            name = f"mode {k}: λ = {lam:.2g}" + ("" if learn is None else f", ~{float(learn[j]):.2g} steps")
        else:
            name = f"mode slot {j + 1}" if j or "note" not in m else m["note"]
        x, y = (m["steps"], m["coeffs"][:, j]) if has else ([], [])
        out.append(_line(view, f"mode:{j}", x, y, name, color, mode="lines+markers", marker=dict(size=5),
                         legendgroup=f"mode-{j}", showlegend=has or j == 0,
                         hovertemplate=f"|c| %{{y:.3g}} @ %{{x}}<extra>{name}</extra>"))
        px, py = (m["predicted"][0], m["predicted"][1][:, j]) if has and m.get("predicted") is not None else ([], [])
        out.append(_line(view, f"mode-gd:{j}", px, py, f"GD linearised, mode {j + 1}", color, dash="dash",
                         width=1.5, legendgroup=f"mode-{j}", showlegend=False, hoverinfo="skip"))
    return out


MODE_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x")


def _learn_text(steps: float | None) -> str:
    if steps is None:
        return ""
    return ", GD: ∞ steps to learn" if not np.isfinite(steps) else f", GD: ~{steps:.2g} steps to learn"


def eigenmode(view: RunView) -> list[dict]:
    """The clicked eigenvector over the probe points (scaled to a largest value of 1): a line per term in 1D,
    points coloured by value over (t, x) in 2D. One trace per term, empty where the mode has no rows."""
    mode = view.eigenmode
    out = []
    for j, term in enumerate(view.terms):
        x = np.zeros((0, len(view.coords)), np.float32) if mode is None else mode.points[j]
        v = np.zeros(0, np.float32) if mode is None else mode.vectors[j]
        name = block_label(term, view.coords)
        if mode is not None and len(v):
            lam = f"λ = {mode.value:.3g}" + (_learn_text(mode.steps_to_learn) if mode.block != "K" else "")
            name = f"mode {mode.rank} of {'K' if mode.block == 'K' else 'λ·' + block_name(mode.block)} on " \
                   f"{term} points ({lam})"
        hover = f"v %{{y:.3g}} at {view.coords[0]} %{{x:.3g}}<extra>{name}</extra>"
        if not view.two_d:
            order = np.argsort(x[:, 0], kind="stable")
            out.append(_line(view, f"vec:{term}", x[order, 0], v[order], name, view.color(term),
                             # a boundary's points sit at a few places: a line between them would mean nothing
                             mode="lines+markers" if len(np.unique(x[:, 0])) > 2 else "markers", marker=dict(size=6),
                             legendgroup=f"term-{term}", showlegend=bool(len(v)), hovertemplate=hover))
            continue
        out.append(dict(type="scatter", mode="markers", key=f"vec:{term}", x=x[:, 0], y=x[:, 1],
                        name=view.name(name), showlegend=bool(len(v)), legendgroup=f"term-{term}",
                        marker=dict(color=v, colorscale="RdBu_r", cmin=-1, cmax=1, size=7,
                                    symbol=MODE_SYMBOLS[j % len(MODE_SYMBOLS)], line=dict(width=0.5, color="#444")),
                        hovertemplate=f"v %{{marker.color:.3g}} at (%{{x:.3g}}, %{{y:.3g}})<extra>{name}</extra>"))
    return out


def _step_axes(title: str) -> Callable[[RunView], tuple[dict, dict]]:
    return lambda view: (STEP_AXIS, dict(LOG_AXIS, title=title))


def _field_axes(y1d: str) -> Callable[[RunView], tuple[dict, dict]]:
    return lambda v: (dict(title=v.coords[0]), dict(LINEAR_AXIS, title=v.coords[1] if v.two_d else y1d))


LOSSES = Panel("loss L_i per term", losses, _step_axes("loss"), per_step=True)
WEIGHTS = Panel("weight λ_i per term", weights, _step_axes("λ"), per_step=True)
SHARES = Panel("trace share λ_i Tr K_ii / Σ λ_j Tr K_jj (faint: raw)", shares, _step_axes("share"), per_step=True)
SPECTRA = Panel("eigenvalues of λ_i K_ii (faint: raw K_ii)", spectra,
                lambda v: (INDEX_AXIS, dict(LOG_AXIS, title="eigenvalue")), per_step=False)
PREDICTION = Panel("prediction û vs exact u", prediction, _field_axes("u"), per_step=False)
ERROR = Panel("error û − u", error, _field_axes("û − u"), per_step=False)
MODES = Panel("residual on K̃₀'s modes |c_k| (dashed: GD linearised)", mode_decay, _step_axes("|c_k|"),
              per_step=False)
EIGENMODE = Panel("eigenvector of the clicked eigenvalue (click it again to hide)", eigenmode,
                  lambda v: (dict(title=v.coords[0]), dict(LINEAR_AXIS, title=v.coords[1] if v.two_d else "v_k")),
                  per_step=False)
# The dashboard's grid, row by row: adding a panel is one function above and one name here.
DASHBOARD = ((LOSSES, WEIGHTS, SHARES), (SPECTRA, PREDICTION, ERROR))
# The lab's "modes" view: the per-mode decay in place of the prediction (the error panel keeps the fit).
DASHBOARD_MODES = ((LOSSES, WEIGHTS, SHARES), (SPECTRA, MODES, ERROR))
