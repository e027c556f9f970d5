"""The lab's ipywidgets: one widget per :class:`~pinnlab.lab.state.LabState` field, plus the buttons.

Live widgets act at the next chunk; reset widgets only mark the Reset button until it is pressed
(a rebuild recompiles once, so several changes are batched into one). :class:`Controls` reads the
widgets into a state and writes a state into the widgets; it holds no training logic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import ipywidgets as w

from pinnlab.lab.state import LIVE, PRESETS, RANGES, LabState
from pinnlab.nets import CONVENTIONS
from pinnlab.problems import ENTRIES, PROBLEMS
from pinnlab.training import OPTIMIZERS
from pinnlab.weighting import RULES

RULE_OPTIONS = [(rule.label or name, name) for name, rule in RULES.items() if rule.lab]
_STYLE = {"description_width": "initial"}
# Fonts a room can read (16-18 px) for the presentation layout, scoped to its container's class.
PRESENTATION_CLASS = "pinnlab-presentation"
PRESENTATION_CSS = f"""<style>
.{PRESENTATION_CLASS} .widget-button, .{PRESENTATION_CLASS} .widget-toggle-button,
.{PRESENTATION_CLASS} .widget-toggle-buttons button {{ font-size: 17px; height: 38px; }}
.{PRESENTATION_CLASS} .widget-html-content, .{PRESENTATION_CLASS} .widget-label {{ font-size: 17px; }}
.{PRESENTATION_CLASS} .pinnlab-caption .widget-html-content {{ font-size: 18px; line-height: 1.3; }}
.{PRESENTATION_CLASS} .widget-toggle-buttons > .widget-label {{ display: none; }}
.{PRESENTATION_CLASS} .widget-toggle-buttons button {{ width: auto !important; padding: 0 12px; }}
</style>"""


def _int(description: str, low: int, high: int, tooltip: str, width: str = "150px") -> w.BoundedIntText:
    return w.BoundedIntText(min=low, max=high, description=description, tooltip=tooltip, style=_STYLE,
                            layout=w.Layout(width=width))


def _float(description: str, tooltip: str, width: str = "150px") -> w.FloatText:
    return w.FloatText(description=description, tooltip=tooltip, style=_STYLE, layout=w.Layout(width=width))


def _dropdown(description: str, options, tooltip: str, width: str = "190px") -> w.Dropdown:
    return w.Dropdown(options=options, description=description, tooltip=tooltip, style=_STYLE,
                      layout=w.Layout(width=width))


def live_widgets(suffixes: tuple[str, ...] = ("",)) -> dict[str, w.Widget]:
    """The live controls; with several suffixes (compare mode) the rule gets one widget per run."""
    out: dict[str, w.Widget] = {}
    for suffix in suffixes:
        label = f"weighting {suffix.strip('_').upper()}".strip()
        out[f"rule{suffix}"] = w.ToggleButtons(
            options=RULE_OPTIONS, description=label, style={**_STYLE, "button_width": "132px"},
            tooltips=[RULES[name].tooltip for _, name in RULE_OPTIONS])
    out["update_every"] = _int("weights every", *RANGES["update_every"], "M: refresh the weights every M steps",
                               "170px")
    out["lr_scale"] = w.FloatLogSlider(base=10, min=-4, max=2, step=0.05, description="lr ×", readout_format=".3g",
                                       tooltip="multiplies every optimiser update (live)", style=_STYLE,
                                       layout=w.Layout(width="260px"))
    out["ntk_every"] = _int("NTK every", *RANGES["ntk_every"], "refresh the logged traces (and the spectra) every "
                            "n steps; 0 = only with the weights", "150px")
    out["budget"] = _int("budget", *RANGES["budget"], "pause at this step (the paper's step count); weights never "
                         "refresh past it; 0 = none", "170px")
    return out


def reset_widgets() -> dict[str, w.Widget]:
    """The reset controls (a rebuild and one compile when Reset is pressed)."""
    return {
        "problem": _dropdown("problem", list(PROBLEMS), "the PDE (fills in its defaults)", "170px"),
        "param": _float("a", "the PDE's parameter"),
        "width": _int("width", *RANGES["width"], "neurons per hidden layer", "130px"),
        "depth": _int("depth", *RANGES["depth"], "hidden layers", "110px"),
        "convention": _dropdown("convention", list(CONVENTIONS), "paper_code: standard parameterisation, code init, "
                                "z-scored inputs; paper_text: NTK parameterisation, N(0,1), raw inputs", "220px"),
        "optimizer": _dropdown("optimizer", list(OPTIMIZERS), "the optimiser (pinnlab.optimizers)", "150px"),
        "lr": _float("lr", "base learning rate", "140px"),
        "decay": _float("decay/1000", "learning-rate factor per 1000 steps (1 = constant)", "150px"),
        "n_b": _int("n_b", *RANGES["n_b"], "boundary / initial points (the wave's u_t term gets a third)", "130px"),
        "n_r": _int("n_r", *RANGES["n_r"], "residual (collocation) points", "130px"),
        "n_ntk": _int("n_ntk", *RANGES["n_ntk"], "NTK probe points per term (2D problems)", "130px"),
        "seed": _int("seed", *RANGES["seed"], "initialisation, points and probe points", "120px"),
        "chunk": _int("chunk", *RANGES["chunk"], "steps per jitted call; 0 = auto (~30 ms)", "120px"),
    }


class Controls:
    """Widgets bound to a state: ``read()`` and ``write()`` never trigger the callbacks of each other."""

    def __init__(self, runs: int = 1):
        self.suffixes = ("",) if runs == 1 else ("_a", "_b")
        self.live = live_widgets(self.suffixes)
        self.reset = reset_widgets()
        self.preset = _dropdown("preset", [("—", "")] + [(name, name) for name in PRESETS],
                                "load a preset (rebuilds at once)", "200px")
        self.preset_help = w.HTML()
        self.run = w.Button(description="Run", icon="play", button_style="success", tooltip="train live (Run/Pause)",
                            layout=w.Layout(width="96px"))
        self.step = w.Button(description="Step", icon="step-forward", tooltip="train one chunk",
                             layout=w.Layout(width="86px"))
        self.reset_button = w.Button(description="Reset", icon="refresh", tooltip="rebuild with the reset controls "
                                     "(recompiles once)", layout=w.Layout(width="90px"))
        self.export = w.Button(description="Export", icon="download", tooltip="save the History and an HTML report",
                               layout=w.Layout(width="96px"))
        self.demo = w.Button(description="Demo", icon="graduation-cap", tooltip="the paper's story in two clicks: "
                             "unweighted to the step budget, then Algorithm 1", layout=w.Layout(width="100px"))
        self.caption = w.HTML()
        self.caption.add_class("pinnlab-caption")
        self.style = w.HTML(PRESENTATION_CSS)
        self.presenting = w.ToggleButton(description="presentation", icon="desktop", value=False,
                                         tooltip="big fonts, one row of controls, everything in 1280 x 720",
                                         layout=w.Layout(width="130px"))
        self.modes = w.ToggleButton(description="modes", icon="wave-square", value=False,
                                    tooltip="per-mode decay: the residual on K̃'s eigenvectors at step 0, with "
                                            "gradient descent's linearised prediction (in place of the prediction)",
                                    layout=w.Layout(width="100px"))
        self.linear = w.ToggleButton(description="linearised", icon="ruler", value=False,
                                     tooltip="train the linearised network f(θ₀) + J(θ₀)(θ − θ₀) beside this one "
                                             "(same points, optimiser and weights): dotted",
                                     layout=w.Layout(width="110px"))
        self.counter = w.HTML(layout=w.Layout(min_width="380px"))
        self.status = w.HTML()
        self.error = w.HTML()
        self.replay = w.IntSlider(min=0, max=0, value=0, description="replay", continuous_update=True,
                                  readout=False, style=_STYLE, layout=w.Layout(width="420px"))
        self.replay_label = w.HTML()
        self.exported = w.HTML()
        self.config = w.Text(description="config", continuous_update=False, style=_STYLE,
                             tooltip="the whole state as one string: copy it to share, paste one to load it",
                             layout=w.Layout(width="100%"))
        self._quiet = False

    @contextlib.contextmanager
    def quiet(self):
        """Write widget values without firing the change callbacks."""
        self._quiet, before = True, self._quiet
        try:
            yield
        finally:
            self._quiet = before

    def observe(self, widget: w.Widget, callback: Callable[[object], None]) -> None:
        """Call ``callback(new_value)`` on user changes of ``widget`` (not on :meth:`write`)."""
        widget.observe(lambda change: None if self._quiet else callback(change["new"]), names="value")

    # -- state <-> widgets ------------------------------------------------------------------------
    def read_reset(self, base: LabState) -> LabState:
        """``base`` with the reset widgets' values (raises ValueError naming a bad field)."""
        return base.replace(**{name: widget.value for name, widget in self.reset.items()})

    def write(self, states: list[LabState]) -> None:
        """Show ``states`` (one per run; reset fields and shared live fields from the first)."""
        first = states[0]
        with self.quiet():
            for name, widget in self.reset.items():
                widget.value = getattr(first, name)
            for name in LIVE:
                if name == "rule":
                    for suffix, state in zip(self.suffixes, states):
                        self.live[f"rule{suffix}"].value = state.rule
                else:
                    self.live[name].value = getattr(first, name)
            self.label_param(first.problem)

    def label_param(self, problem: str) -> None:
        entry = ENTRIES[problem]
        self.reset["param"].description = entry.param
        self.reset["param"].tooltip = entry.params_help[entry.param]
        self.reset["n_ntk"].disabled = not entry.own_probe_points  # e.g. Poisson's NTK uses its training points

    def mark_pending(self, pending: bool) -> None:
        """Highlight Reset while the reset widgets differ from the running configuration."""
        self.reset_button.button_style = "warning" if pending else ""
        self.reset_button.tooltip = ("reset controls changed: press Reset to rebuild (recompiles once)" if pending
                                     else "rebuild with the reset controls (recompiles once)")

    def show_running(self, running: bool) -> None:
        self.run.description, self.run.icon = ("Pause", "pause") if running else ("Run", "play")
        self.run.button_style = "warning" if running else "success"

    # -- layout ------------------------------------------------------------------------------------------
    def live_box(self) -> w.Widget:
        rules = [self.live[f"rule{s}"] for s in self.suffixes]
        rest = [self.live[name] for name in ("update_every", "lr_scale", "ntk_every", "budget")]
        title = w.HTML("<b>live</b> <span style='color:#666'>(act at the next chunk)</span>")
        return w.VBox([title, *rules, w.HBox(rest, layout=w.Layout(flex_flow="row wrap"))])

    def reset_box(self) -> w.Widget:
        title = w.HTML("<b>reset</b> <span style='color:#666'>(press Reset to rebuild; recompiles once)</span>")
        rows = [["problem", "param", "width", "depth", "convention"], ["optimizer", "lr", "decay", "seed", "chunk"],
                ["n_b", "n_r", "n_ntk"]]
        boxes = [w.HBox([self.reset[name] for name in row], layout=w.Layout(flex_flow="row wrap")) for row in rows]
        boxes[-1].children += (self.preset, self.preset_help)
        return w.VBox([title, *boxes])

    def footer(self) -> w.Widget:
        return w.VBox([w.HBox([self.replay, self.replay_label, self.export, self.modes, self.linear, self.presenting,
                               self.exported], layout=w.Layout(align_items="center", flex_flow="row wrap")),
                       self.config])

    def notebook(self, figure: w.Widget) -> list[w.Widget]:
        """Every control on show: header, live and reset boxes, the figure, replay/export and the config."""
        # Two rows' height kept for the header: the counter's text grows while training (a digit more in the
        # step or the steps/s), and a wrap to a second row moved the weighting toggle under the pointer
        # (benchmarks/bench_click.py clicked "lr ×" instead).
        header = w.HBox([self.run, self.step, self.reset_button, self.demo, self.counter, self.status],
                        layout=w.Layout(align_items="center", align_content="flex-start", flex_flow="row wrap",
                                        min_height="70px"))
        return [header, self.caption, self.live_box(), self.reset_box(), figure, self.footer(), self.error]

    def presentation(self, figure: w.Widget) -> list[w.Widget]:
        """One row on top (Run/Pause, Step, the weighting, Demo, the counter), the caption, the figure; the
        rest folded into "settings" below it."""
        row = w.HBox([self.run, self.step, *[self.live[f"rule{s}"] for s in self.suffixes], self.demo, self.counter],
                     layout=w.Layout(align_items="center", flex_flow="row wrap"))
        settings = w.Accordion(children=[w.VBox([self.status, self.live_box(), self.reset_box(), self.footer()])],
                               titles=("settings",), selected_index=None)
        return [self.style, row, self.caption, figure, self.error, settings]
