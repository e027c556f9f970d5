"""``pinnlab.Lab``: the facade users call. It wires the controls (:mod:`~pinnlab.lab.controls`), the runs
(:mod:`~pinnlab.lab.run`), the figure (:mod:`~pinnlab.lab.view`) and the training loop
(:mod:`~pinnlab.lab.scheduler`).

Frames follow what the front end can draw: a new frame is sent only when the browser has drawn the
previous one (plotly's widget acknowledges each edit, see :mod:`pinnlab.lab.widget`), at most ~10 per
second and within ~5 % of the kernel's time, and always with the newest data, so a slow browser gets
fewer frames, never a queue of stale ones, and clicks reach the kernel between chunks. After a click
the loop trains nothing until the browser has drawn the click's frame (:meth:`Lab.hold`): on a busy
machine the training would take the CPU the browser needs to show it. Keyframes
(spectra on the trainer's probe points, prediction, error) follow the NTK refresh period, at most ~5 per
second and within a ~4 % time budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import json
import logging
import threading
import time
import traceback
from collections import deque
from pathlib import Path

import ipywidgets as w
import numpy as np

from pinnlab import panels
from pinnlab.files import write_file
from pinnlab.history import History
from pinnlab.lab import cache, eigenmode, tasks
from pinnlab.lab.controls import PRESENTATION_CLASS, Controls
from pinnlab.lab.run import LiveRun
from pinnlab.lab.scheduler import Outcome, Scheduler
from pinnlab.lab.state import LIVE, PRESETS, LabState, changed, optimizer_fields, preset, resolve
from pinnlab.lab.view import DASHES, View
from pinnlab.lab.widget import figure_widget  # first: it imports plotly's renderers without nbformat

log = logging.getLogger("pinnlab.lab")

BACKENDS = ("widget", "static")
LAYOUTS = ("notebook", "presentation")
MIN_FRAME_SECONDS = 0.1  # at most ~10 frames per second
MIN_STATIC_SECONDS = 1.5  # the static backend re-renders its whole figure: rarer
FRAME_BUDGET = 0.05  # fraction of the time frames may take
# A frame the front end has not acknowledged holds the next one back for at most this long (no front
# end attached, or a lost message): a page that never answers gets one frame per this interval.
ACK_TIMEOUT = 1.5
HOLD_POLL = 0.005  # how often a held loop looks for the front end's acknowledgement (it arrives between polls)
MIN_KEYFRAME_SECONDS = 0.2
KEYFRAME_BUDGET = 0.04
DEMO_STEPS = 20_000  # the demo's first leg when the preset has no step budget
NTK_HELP = {  # the counter's tooltip on how the spectra were computed (and their cost per keyframe)
    "structured": "K = J J^T from each layer's Taylor-stream factors, J never formed (pinnlab.ntk_structured)",
    "jacobian": "K = J J^T from per-point parameter gradients (pinnlab.ntk)",
}
REPORT_SPECTRA = 6  # spectra steps drawn in the exported report (the .npz keeps all)


class Lab:
    """A live dashboard of one PINN run (or two, side by side, with :meth:`compare`).

    Args:
      config: a preset name (``"poisson"``, ``"wave"``, ``"heat"``, ``"fig1"``-``"fig4"``,
        ``"wave_paper"``; see :data:`pinnlab.lab.state.PRESETS`), a config string
        (``"problem=wave&width=64&..."``, two joined by ``" || "`` for a comparison), or a
        :class:`~pinnlab.lab.state.LabState`.
      backend: ``"widget"`` (a plotly ``FigureWidget``) or ``"static"`` (a plain figure re-rendered into an
        ``Output`` every ~1.5 s, for front ends where ``FigureWidget`` does not load).
      layout: ``"notebook"`` (every control on show) or ``"presentation"`` (one row of big controls above
        the figure, the rest folded away, inside 1280 x 720); the "presentation" toggle switches live.
      modes: show the per-mode decay (:mod:`pinnlab.lab.decay`) in place of the prediction; the "modes"
        toggle switches live. Off by default: it adds a residual evaluation to every keyframe.
      linear: train the linearised network beside each run (:mod:`pinnlab.lab.linear`), its prediction
        dotted over the real one's (1D) and its error in the loss panel; the "linearised" toggle switches
        live. Off by default: it about doubles the cost of a step.
      **overrides: any :class:`~pinnlab.lab.state.LabState` field, e.g. ``width=50, rule="ntk"``.

    Display it as the last expression of a cell. ``play()``/``pause()`` train in the background and
    stop at the step budget; ``run(steps)`` and ``await arun(steps)`` train to a step count; ``demo()``
    plays the paper's failure and fix; ``set(...)`` changes controls, ``reset(...)`` rebuilds,
    ``export()`` saves the run. Clicking an eigenvalue in the spectra panel (or ``show_mode(block, k)``)
    draws its eigenvector over the probe points with its steps to learn.
    """

    def __init__(self, config: str | LabState = "poisson", *, backend: str = "widget", layout: str = "notebook",
                 modes: bool = False, linear: bool = False, **overrides):
        if isinstance(config, str) and "||" in config:
            states = [LabState.from_string(part) for part in config.split("||")]
            if len(states) != 2:
                raise ValueError("a compare config has exactly two states joined by ' || '")
            states = [changed(s, **overrides) for s in states]
            self._setup(states, ["A", "B"], backend, layout, modes, linear)
        else:
            self._setup([resolve(config, **overrides)], [""], backend, layout, modes, linear)

    @classmethod
    def compare(cls, config: str | LabState = "poisson", a: dict | None = None, b: dict | None = None, *,
                labels: tuple[str, str] = ("A", "B"), backend: str = "widget", layout: str = "notebook",
                modes: bool = False, linear: bool = False, **overrides) -> Lab:
        """Two runs of one problem side by side on shared axes, from the same seed and initial parameters.

        ``a`` and ``b`` override fields of ``config`` per run; by default A trains unweighted and B with
        the config's weighting rule (``ntk`` when the config has none). Run A is drawn solid, B dashed.
        Both start from run A's initial parameters whenever the architecture and seed agree.
        """
        base = resolve(config, **overrides)
        a = {"rule": "none"} if a is None else a
        b = {"rule": base.rule if base.rule != "none" else "ntk"} if b is None else b
        states = [changed(base, **a), changed(base, **b)]
        if states[0].problem != states[1].problem:
            raise ValueError("compared runs must solve the same problem (shared axes)")
        lab = cls.__new__(cls)
        lab._setup(states, list(labels), backend, layout, modes, linear)
        return lab

    # -- construction ----------------------------------------------------------------------------------
    def _setup(self, states: list[LabState], labels: list[str], backend: str, layout: str, modes: bool,
               linear: bool) -> None:
        for name, value in (("modes", modes), ("linear", linear)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        cache.enable_compilation_cache()
        tasks.stop_all("a new Lab was created")  # the old dashboard's loop would train unseen
        self.backend, self.labels, self._layout_name = backend, labels, layout
        self._base = states[0]
        self._overrides = [_diff(s, states[0]) for s in states]
        self.error: BaseException | None = None
        self.frames_drawn, self.timings = 0, {}
        self.events: list[dict] = []  # every live control change: wall time, step, field, value, runs
        self.scheduler = Scheduler(self)
        self._revision, self._rate = 0, deque(maxlen=64)
        self._frame_cost, self._keyframe_cost, self._last_frame, self._last_keyframe = 0.0, None, -1e9, 0.0
        self._urgent = False  # a live change waits for its first frame: the rate limits do not hold it back
        self._held = False  # a live change while running: train nothing until its frame is drawn (hold)
        self._replay: int | None = None
        self._static_cost, self._last_static = 0.0, -1e9
        self._drawn_key, self._demo, self._demo_plain_error = None, None, float("nan")
        self.status = ""
        try:  # the kernel's loop and thread: widget callbacks from other threads hop onto them (see _guard)
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._thread = threading.get_ident()
        self.controls = Controls(len(states))
        self._modes, self._linear, self._mode_choice = modes, linear, None
        self.runs = self._build_runs(states)
        self._apply_budget()
        self.figure = self._new_figure()
        self._output = w.Output() if backend == "static" else None
        self.widget = w.VBox(layout=w.Layout(width="100%"))
        self.widget.add_class("pinnlab-lab")
        self._arrange()
        with self.controls.quiet():
            self.controls.modes.value, self.controls.linear.value = modes, linear
        self._wire()
        self.controls.write(self.states)
        self._show_config()
        self._status("ready: press Run (or Demo)")
        self._draw(full=True)

    def _build_runs(self, states: list[LabState]) -> list[LiveRun]:
        first = LiveRun(states[0], self.labels[0])
        runs = [first]
        for state, label in zip(states[1:], self.labels[1:]):
            shared = _same_architecture(states[0], state)
            runs.append(LiveRun(state, label, params=first.trainer.params0 if shared else None, chunk=first.chunk))
        return runs

    def _title(self) -> str:
        s = self._base
        net = f"{s.depth}×{s.width} tanh ({s.convention})"
        opt = f"{s.optimizer} lr {s.lr:g}" + (f" ×{s.decay:g}/1000 steps" if s.decay != 1 else "")
        title = f"<b>{s.problem}</b> ({s.param_name} = {s.param:g}) · {net} · {opt} · seed {s.seed}"
        if len(self.runs) > 1:
            states = [dataclasses.asdict(run.state) for run in self.runs]
            differ = [k for k in states[0] if states[0][k] != states[1][k]] or ["seed"]
            parts = [f"{run.label} ({style}): " + ", ".join(f"{k}={st[k]}" for k in differ)
                     for run, st, style in zip(self.runs, states, ("solid", "dashed"))]
            title += "<br>" + " · ".join(parts)
        return title

    def _views(self, index: int | None = None) -> list:
        return [run.view(index, run.label, DASHES[r]) for r, run in enumerate(self.runs)]

    def _new_model(self):
        """A fresh :class:`View` of the runs (the modes view starts their mode tracking first, so that their
        views carry it); returns its figure."""
        for run in self.runs:
            if self._modes:
                run.track_modes()
            if self._linear:
                run.track_linear()
        grid = panels.DASHBOARD_MODES if self._modes else panels.DASHBOARD
        if self._mode_choice is not None:  # a clicked eigenvector takes the middle of the second row
            grid = (grid[0], (grid[1][0], panels.EIGENMODE, grid[1][2]))
        self._model = View(self._views(), self._title(), self._layout_name, self._revision, grid)
        return self._model.figure

    def _new_figure(self):
        fig = self._new_model()
        if self.backend == "static":
            return fig
        widget = figure_widget(fig)
        self._listen_to_spectra(widget)
        if hasattr(widget, "on_drawn"):  # not plotly's stock widget (PINNLAB_PLAIN_FIGUREWIDGET)
            widget.on_drawn(lambda: self._guard(self._drawn))
        return widget

    def _drawn(self) -> None:
        """The front end drew the last frame: a click's frame waiting for that goes out now, not after the
        next chunk."""
        if self._urgent and self.running and self._edits_in_flight() == 0:
            self._draw()

    def _listen_to_spectra(self, widget) -> None:
        """Clicking an eigenvalue of a block (or of K) in the spectra panel shows its eigenvector."""
        for (_, run, key), index in self._model.index.items():
            if run == 0 and (key.startswith("eig-w:") or key == "eig:K"):
                block = eigenmode.WHOLE if key == "eig:K" else key.split(":", 1)[1]
                widget.data[index].on_click(
                    lambda trace, points, state, block=block: self._guard(self._spectrum_clicked, block, points))

    def _spectrum_clicked(self, block: str, points) -> None:
        if not points.point_inds:  # plotly calls every listening trace; only the clicked one has points
            return
        rank = int(round(float(points.xs[0])))
        self.show_mode(None if self._mode_choice == (block, rank) else block, rank)

    def _rebuild_figure(self) -> None:
        """Same FigureWidget (one per dashboard: its JS ships once), new traces and layout."""
        fresh = self._new_model()
        if self.backend == "static":
            self.figure = fresh
            return
        with self.figure.batch_update():
            self.figure.data = []
            self.figure.layout = fresh.layout
            self.figure.add_traces(list(fresh.data))
        self._listen_to_spectra(self.figure)

    def _arrange(self) -> None:
        """Put the widgets in the current layout (notebook or presentation)."""
        view = self.figure if self.backend == "widget" else self._output
        c = self.controls
        presenting = self._layout_name == "presentation"
        self.widget.children = c.presentation(view) if presenting else c.notebook(view)
        (self.widget.add_class if presenting else self.widget.remove_class)(PRESENTATION_CLASS)
        with c.quiet():
            c.presenting.value = presenting

    @property
    def layout(self) -> str:
        """``"notebook"`` or ``"presentation"``; setting it rearranges the dashboard and resizes the figure."""
        return self._layout_name

    @layout.setter
    def layout(self, name: str) -> None:
        if name not in LAYOUTS:
            raise ValueError(f"unknown layout {name!r}; choose one of {', '.join(LAYOUTS)}")
        self._layout_name = self._model.layout = name
        self.figure.update_layout(self._model.size_layout(name))
        self._arrange()
        self._update_counters()

    @property
    def modes(self) -> bool:
        """Whether the figure shows the per-mode decay in place of the prediction; setting it redraws."""
        return self._modes

    @modes.setter
    def modes(self, on: bool) -> None:
        self._switch("modes", on)

    @property
    def linear(self) -> bool:
        """Whether the linearised network trains beside each run (:mod:`pinnlab.lab.linear`; 1D problems draw
        its prediction dotted, every problem its error in the loss panel); setting it redraws."""
        return self._linear

    @linear.setter
    def linear(self, on: bool) -> None:
        if on is False:  # dropped before the redraw, which then draws no twin
            for run in self.runs:
                run.track_linear(False)
        self._switch("linear", on)
        if on:
            notes = {run.twin.note for run in self.runs if run.twin is not None and run.twin.note}
            self._caption(html.escape("; ".join(sorted(notes))))

    def _switch(self, name: str, on: bool) -> None:
        """Turn a view option (``modes``, ``linear``) on or off: a rebuilt figure, and its toggle set to match."""
        if not isinstance(on, bool):
            raise ValueError(f"{name} must be True or False, got {on!r}")
        if on != getattr(self, f"_{name}"):
            setattr(self, f"_{name}", on)
            self._rebuild_figure()
            self._drawn_key = None
            self._draw(full=True)
        with self.controls.quiet():
            getattr(self.controls, name).value = on

    def show_mode(self, block: str | None, rank: int = 1) -> None:
        """Draw eigenvector ``rank`` (1: the largest eigenvalue) of ``block`` over the probe points, in place
        of the prediction (the modes panel in the modes view); ``block``: a term name (``"u"``, ``"r"``,
        ``"ut"``: the block lambda_i K_ii of the spectra panel) or ``"K"``; ``None`` hides it. Clicking an
        eigenvalue in the spectra panel does the same; clicking it again hides it. Computed at the current
        step with the current weights (:mod:`pinnlab.lab.eigenmode`); a reset hides it.
        """
        shown = self._mode_choice is not None
        if block is None:
            if not shown:
                return
            self._mode_choice = None
            for run in self.runs:
                run.eigenmode = None
        else:
            found = [eigenmode.eigenmode(run.trainer, block, rank) for run in self.runs]  # may raise: nothing changed
            for run, mode in zip(self.runs, found):
                run.eigenmode = mode
            self._mode_choice = (block, int(rank))
        if shown and block is not None and self.backend == "widget":  # same grid: only the panel's traces change
            with self.figure.batch_update():
                for index, props in self._model.restyle(self._views(self._replay), panels.EIGENMODE):
                    self.figure.data[index].update(props)
        else:  # the panel comes or goes: a new grid
            self._rebuild_figure()
            self._drawn_key = None
            self._draw(full=True)
        self._caption("" if block is None else html.escape(self._mode_caption(self.runs[0].eigenmode)))

    def _mode_caption(self, m: eigenmode.Eigenmode) -> str:
        coords = self.runs[0].problem.coords
        what = "K" if m.block == eigenmode.WHOLE else f"λ·{panels.block_label(m.block, coords)}"
        learn = "" if m.steps_to_learn is None else (f"; gradient descent at lr {m.lr:g} needs ~{m.steps_to_learn:.2g}"
                                                     " steps to learn it")
        return f"mode {m.rank} of {m.count} of {what} at step {m.step:,}: eigenvalue {m.value:.3g}{learn}. " \
               "Click it again to hide."

    @property
    def shown_mode(self) -> tuple[str, int] | None:
        """``(block, rank)`` of the eigenvector on show (:meth:`show_mode`), or None."""
        return self._mode_choice

    def _wire(self) -> None:
        c = self.controls
        c.run.on_click(lambda _: self._guard(self.toggle))
        c.step.on_click(lambda _: self._guard(self.step_once))
        c.reset_button.on_click(lambda _: self._guard(self.reset))
        c.export.on_click(lambda _: self._guard(self.export))
        c.demo.on_click(lambda _: self._guard(self.demo))
        c.observe(c.presenting, lambda value: self._guard(setattr, self, "layout", LAYOUTS[int(bool(value))]))
        c.observe(c.modes, lambda value: self._guard(setattr, self, "modes", bool(value)))
        c.observe(c.linear, lambda value: self._guard(setattr, self, "linear", bool(value)))
        for name, widget in c.live.items():
            c.observe(widget, lambda value, name=name: self._guard(self._live_changed, name, value))
        for name, widget in c.reset.items():
            c.observe(widget, lambda value, name=name: self._guard(self._reset_changed, name, value))
        c.observe(c.preset, lambda value: self._guard(self._preset_chosen, value))
        c.observe(c.replay, lambda value: self._guard(self._replay_moved, value))
        c.observe(c.config, lambda value: self._guard(self._config_entered, value))

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # -- read-only views ----------------------------------------------------------------------------------
    @property
    def states(self) -> list[LabState]:
        """The applied state of every run (reset fields as built, live fields as now)."""
        return [run.state for run in self.runs]

    @property
    def state(self) -> LabState:
        """The applied state of run A."""
        return self.runs[0].state

    @property
    def config(self) -> str:
        """The shareable config string (``Lab(lab.config)`` rebuilds this dashboard)."""
        return " || ".join(s.to_string() for s in self.states)

    @property
    def trainer(self):
        return self.runs[0].trainer

    @property
    def history(self) -> History:
        return self.runs[0].trainer.history

    @property
    def histories(self) -> dict[str, History]:
        return {run.label or "run": run.trainer.history for run in self.runs}

    @property
    def step(self) -> int:
        return min(run.step for run in self.runs)

    @property
    def budget(self) -> int | None:
        """The step the lab pauses at (None: no budget); the paper's step count in its presets."""
        return self.scheduler.budget

    @property
    def running(self) -> bool:
        """Whether this lab will train another chunk (its task is alive and no pause is pending)."""
        return self.scheduler.alive

    @property
    def steps_per_second(self) -> float:
        recent = [(t, s) for t, s in self._rate if t >= self._rate[-1][0] - 2.0] if self._rate else []
        if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return 0.0
        return (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])

    # -- actions ---------------------------------------------------------------------------------------------
    def play(self) -> None:
        """Train in the background until paused or the step budget (needs a running event loop: a kernel)."""
        self.scheduler.play()
        self.controls.show_running(True)

    def pause(self) -> None:
        """Stop after the chunk in flight."""
        self.scheduler.pause()
        self.controls.show_running(False)

    def toggle(self) -> None:
        """The Run/Pause button: acts on what was last asked for, so Pause then Run is Run."""
        self.pause() if self.running else self.play()

    def step_once(self) -> None:
        """Train one chunk (pausing a running loop) and draw."""
        self.pause()
        self._begin()
        message = self.train_round(None)
        self._settle()
        self._status(message or f"stepped to {self.step:,}")

    def run(self, steps: int) -> Outcome:
        """Train at least ``steps`` more steps (whole chunks) in the foreground, drawing as it goes.

        For scripts, tests and notebooks under test: it blocks the caller, so widgets do not respond
        meanwhile, and it does not stop at the step budget. Errors are shown in the dashboard and raised.
        """
        self.scheduler.stop("lab.run() took over")
        tasks.stop_all("lab.run() took over")
        self._begin()
        target = self.step + _count(steps)
        self._status("running (blocking)")
        outcome = Outcome("done", target)
        try:
            while self.step < target:
                message = self.train_round(None)
                if message:
                    outcome = Outcome("diverged", self.step, message)
                    break
                if self.frame_due():
                    self._draw()
        except Exception as e:
            self._fail(e)
            raise
        finally:
            self._settle()
        outcome = dataclasses.replace(outcome, step=self.step)
        self._status(outcome.message or f"done: step {self.step:,}")
        return outcome

    async def arun(self, steps: int) -> Outcome:
        """Train at least ``steps`` more steps in the background task and wait for them.

        Calls made while one is in flight share the one training loop, each waiting for its own target
        (two ``arun(1000)`` from step 0 end at steps >= 1000 and >= 2000). Returns an
        :class:`~pinnlab.lab.scheduler.Outcome`: ``"done"``, or why training stopped first (``"paused"``,
        ``"budget"``, ``"diverged"``, ``"reset"``, ``"stopped"``). Errors are raised.
        """
        target = max([self.step, *self.scheduler.targets()]) + _count(steps)
        return await self.scheduler.run_to(target)

    def demo(self) -> None:
        """The paper's story in two clicks (the Demo button).

        First click: from step 0 (rebuilding if needed), train unweighted to the step budget and pause with
        a caption of what to look at. Second click: switch Algorithm 1 on and train as long again, then
        compare the errors. A click while a leg runs moves on to the next leg at once.
        """
        budget = self._base.budget or DEMO_STEPS
        if self._demo in (None, "done"):
            if self.step > 0 or any(run.state.rule != "none" for run in self.runs):
                self._reset_to(self._base.replace(rule="none"), keep_running=False)
            self._apply_live({"rule": "none", "budget": budget}, runs=range(len(self.runs)))
            self._demo = "plain"
            self._caption(f"<b>1/2</b> The plain PINN for {budget:,} steps (the paper's budget). Watch the "
                          f"<b>trace share</b>: the boundary block holds ~1 % of Tr K, so L_u barely moves.")
            self.play()
        elif self._demo == "plain":
            self._demo = "weighted"
            self._demo_plain_error = self.runs[0].keyframes[-1].rel_l2
            self._apply_live({"rule": "ntk", "budget": max(self.step, budget) + budget}, runs=range(len(self.runs)))
            self._caption("<b>2/2</b> Algorithm 1 on: λ_i = Σ_j Tr K_jj / Tr K_ii. The weighted shares snap to "
                          "equal, λ_u jumps, and the error's straight line α + βx (the missed boundary values) "
                          "flattens.")
            self.play()
        else:
            self._demo = "done"
            self.pause()

    def _demo_paused(self, outcome: Outcome) -> None:
        """The demo's captions at the end of each leg (the predict-then-reveal pause)."""
        if outcome.reason != "budget" or self._demo not in ("plain", "weighted"):
            return
        err = self.runs[0].keyframes[-1].rel_l2
        if self._demo == "plain":
            self._caption(f"<b>Paused at the paper's budget</b>: rel. L2 error {err:.2e}. The residual's kernel "
                          f"dwarfs the boundary's. <i>Predict:</i> what happens if every term gets the same share of "
                          f"Tr K? Press <b>Demo</b> to switch Algorithm 1 on.")
        else:
            self._demo = "done"
            self._caption(f"<b>Done</b>: rel. L2 error {self._demo_plain_error:.2e} unweighted → <b>{err:.2e}</b> "
                          f"with Algorithm 1 (the weights balance the block traces; each block keeps its own "
                          f"spectral decay).")

    def set(self, **fields) -> None:
        """Change controls. Live fields act at the next chunk; reset fields wait for :meth:`reset`.

        In compare mode ``rule_a=``/``rule_b=`` set one run's rule; unsuffixed live fields set both.
        """
        per_run = {k: v for k, v in fields.items() if k[-2:] in ("_a", "_b") and k[:-2] in LIVE and len(self.runs) > 1}
        rest = {k: v for k, v in fields.items() if k not in per_run}
        live = {k: v for k, v in rest.items() if k in LIVE}
        reset = {k: v for k, v in rest.items() if k not in LIVE}
        self._base.replace(**rest)  # validate everything before changing anything
        for key, value in per_run.items():
            self._apply_live({key[:-2]: value}, runs=[{"_a": 0, "_b": 1}[key[-2:]]])
        if live:
            self._apply_live(live, runs=range(len(self.runs)))
        if reset:
            with self.controls.quiet():
                for name, value in reset.items():
                    self.controls.reset[name].value = value
            self._reset_changed(None, None)

    def reset(self, **changes) -> None:
        """Rebuild every run from the reset controls (and ``changes``): new trainer, one compile.

        A playing lab (Run) keeps playing on the new runs; callers of :meth:`arun` get ``"reset"``. If the
        build fails, the old runs stay.
        """
        base = changed(self.controls.read_reset(self._base), **changes)
        self._reset_to(base)

    def export(self, directory: str | Path | None = None) -> Path:
        """Save each run's History (``history.json`` + ``.npz``) and a self-contained ``report.html``.

        Default directory: ``pinnlab-runs/<problem>-<date-time>`` under the working directory; in compare
        mode one sub-directory per run. Returns the directory.
        """
        stamp = time.strftime("%Y%m%d-%H%M%S")
        directory = Path(directory) if directory is not None else Path("pinnlab-runs") / f"{self._base.problem}-{stamp}"
        notes = []
        for run in self.runs:
            target = directory if len(self.runs) == 1 else directory / run.label
            live = ", ".join(f"{k}={getattr(run.state, k)}" for k in LIVE)
            history = run.finish_history(f"exported from pinnlab.Lab at step {run.step:,}; live controls then: {live}")
            history.save(target)
            notes.append(_write_report(history, target))
        write_file(directory / "lab_config.txt", self.config + "\n")
        report = "" if all(notes) else " (no HTML report: pinnlab.report is not available)"
        self.controls.exported.value = f"saved to <code>{html.escape(str(directory))}</code>{report}"
        return directory

    # -- the training loop (the scheduler's host) -----------------------------------------------------------
    def _begin(self) -> None:
        self._rate.clear()
        self._last_frame = -1e9  # draw right after the first chunk
        self.timings = {"play": time.perf_counter(), "play_step": self.step}

    def started(self) -> None:
        """The scheduler's loop starts (or resumes)."""
        self._begin()
        self.controls.show_running(True)
        compiled = all(run.compiled for run in self.runs)
        self._status("running" if compiled else "compiling the training step (once per configuration)…")

    def stopped(self, outcome: Outcome) -> None:
        """The scheduler's loop ended: show why, draw the last keyframe, show an error."""
        replaced = self.scheduler.task is not asyncio.current_task()  # a Reset already started the next loop
        self.controls.show_running(replaced and self.scheduler.alive)
        if outcome is not None and outcome.reason == "error" and self.scheduler.error is not None:
            self._fail(self.scheduler.error)
        elif outcome is not None and outcome.reason not in ("reset", "stopped"):
            texts = {"budget": f"paused at the step budget ({outcome.step:,}); Run trains on with the weights frozen",
                     "done": f"done: step {outcome.step:,}", "paused": f"paused at step {outcome.step:,}"}
            self._status(outcome.message or texts.get(outcome.reason, outcome.reason))
            self._demo_paused(outcome)
        elif outcome is not None and outcome.reason == "stopped":
            self._status(f"stopped ({outcome.message})")
        if outcome is None or outcome.reason != "reset":
            with contextlib.suppress(Exception):
                self._settle()

    def stalled(self) -> str | None:
        """The scheduler's stop when every run's kernel solve is stuck at rounding (gradient runs never are)."""
        why = [run.trainer.stalled() for run in self.runs]
        return f"paused at step {self.step:,}: {why[0]}" if all(why) else None

    def train_round(self, limit: int | None) -> str | None:
        """One chunk of every run (at most ``limit`` steps), then a keyframe if due, then maybe a better
        chunk length. Returns the divergence message if a run's loss became non-finite."""
        message = None
        for run in self.runs:
            snap = run.advance(limit)
            if snap.diverged is not None:
                message = (f"diverged: {run.label + ' ' if run.label else ''}loss became non-finite at step "
                           f"{snap.diverged:,}; back at step {run.step:,}. Lower lr × and press Run, or Reset")
        now = time.perf_counter()
        self._rate.append((now, self.step))
        if self.status.startswith("compiling") and self.error is None:
            self._status("running")
        if self._keyframe_due(now) or message:
            for run in self.runs:
                run.keyframe(spectra=True)
            cost = time.perf_counter() - now
            self._keyframe_cost = cost if self._keyframe_cost is None else 0.7 * self._keyframe_cost + 0.3 * cost
            self._last_keyframe = time.perf_counter()
        better = self.runs[0].suggest_chunk()
        if better is not None:
            for run in self.runs:
                run.set_chunk(better)
            cache.remember_chunk(self.runs[0].memo_key, better)
        return message

    def _settle(self) -> None:
        """When training stops: a keyframe at the last step (spectra, prediction, error) and a full frame."""
        if any(run.keyframes[-1].step != run.step for run in self.runs):
            for run in self.runs:
                run.keyframe(spectra=True)
        self._draw(full=True)

    def _keyframe_due(self, now: float) -> bool:
        run = self.runs[0]
        t = run.trainer
        period = max(1, int(t.ntk_every) or int(t.update_every))
        interval = max(MIN_KEYFRAME_SECONDS, (self._keyframe_cost or 0.0) / KEYFRAME_BUDGET)
        return run.step - run.keyframes[-1].step >= period and now - self._last_keyframe >= interval

    def frame_due(self) -> bool:
        """Whether to draw now: the front end has drawn the last frame (or timed out), and the rate and
        time budgets allow it."""
        since = time.perf_counter() - self._last_frame
        drawn = self._edits_in_flight() == 0
        if self._urgent and drawn:  # a click's frame held back by one in flight: show it now, never a queue
            return True
        if since < max(MIN_FRAME_SECONDS, self._frame_cost / FRAME_BUDGET):
            return False
        return drawn or since >= ACK_TIMEOUT

    def _has_front_end(self) -> bool:
        """Whether a browser has acknowledged a frame (without one, nothing would end a hold but its timeout)."""
        return bool(getattr(self.figure, "acknowledged", False))

    async def hold(self) -> None:
        """The scheduler's wait between chunks: after a click, until the front end has drawn its frame.

        The frame in flight is drawn first (then the click's frame goes out, :meth:`_drawn`), then the
        click's own; at most :data:`ACK_TIMEOUT` in all, and no longer than the loop stays alive (Pause,
        Reset). Returns at once when no click is waiting.
        """
        deadline = time.perf_counter() + ACK_TIMEOUT
        while self._held and self.running and time.perf_counter() < deadline:
            if self._edits_in_flight() == 0:
                if not self._urgent:
                    break
                self._draw()  # nothing in flight and the click's frame not sent: no acknowledgement is coming
            await asyncio.sleep(HOLD_POLL)
        self._held = False

    def _edits_in_flight(self) -> int:
        """Frames sent and not yet drawn by the front end (0 without that bookkeeping: the static backend)."""
        in_flight = getattr(self.figure, "edits_in_flight", None)
        return 0 if in_flight is None else in_flight()

    # -- drawing ------------------------------------------------------------------------------------------------
    def draw(self) -> None:
        """The scheduler's frame: the newest data."""
        self._draw()

    def _draw(self, full: bool = False) -> None:
        """One frame: per-step panels always, keyframe panels when they changed, counters and replay slider."""
        t0 = time.perf_counter()
        key = (self._replay, self._revision, tuple((len(r.keyframes), r.keyframes[-1].step) for r in self.runs))
        keyframe = full or key != self._drawn_key
        updates = self._model.updates(self._views(self._replay), keyframe)
        with self.figure.batch_update():
            for index, props in updates:
                self.figure.data[index].update(props)
            if keyframe:
                self.figure.layout.shapes = self._model.shapes(self._budgets(), self._replay_step())
        self._drawn_key, self._urgent = key, False
        self._update_counters()
        if self.backend == "static" and (full or t0 - self._last_static >= self._static_interval()):
            self._render_static()
        now = time.perf_counter()
        self._frame_cost = 0.7 * self._frame_cost + 0.3 * (now - t0)
        self._last_frame = now
        self.frames_drawn += 1
        if "first_frame" not in self.timings and "play" in self.timings and self.step > self.timings["play_step"]:
            self.timings["first_frame"] = now

    def _budgets(self) -> list[int]:
        """The step budgets drawn as lines: the preset's and, in the demo's second leg, its end."""
        marks = {b for b in (self._base.budget, self.scheduler.budget) if b}
        return sorted(marks)

    def _replay_step(self) -> int | None:
        return None if self._replay is None else self.runs[0].keyframes[self._replay].step

    def _render_static(self) -> None:
        """Replace the Output's content by the figure as a display bundle.

        Setting ``Output.outputs`` (a synced trait) rather than ``with output: display(...)`` works from
        the background task too: JupyterLab drops display messages whose parent request is finished.
        """
        t0 = time.perf_counter()
        self._output.outputs = ({"output_type": "display_data", "data": static_bundle(self.figure),
                                 "metadata": {}},)
        self._static_cost = 0.7 * self._static_cost + 0.3 * (time.perf_counter() - t0)
        self._last_static = time.perf_counter()

    def _static_interval(self) -> float:
        return max(MIN_STATIC_SECONDS, self._static_cost / FRAME_BUDGET)

    def _update_counters(self) -> None:
        c, run = self.controls, self.runs[0]
        errors = " / ".join(f"{r.keyframes[-1].rel_l2:.2e}" for r in self.runs)
        ms = np.median(run.chunk_seconds) * 1e3 if run.chunk_seconds else float("nan")
        ntk_ms = "" if run.spectra_seconds is None else f" {run.spectra_seconds * 1e3:.0f} ms"
        tip = html.escape(NTK_HELP.get(run.ntk_method, ""))  # escapes the quote of "layer's" too
        budget = f" / {self.scheduler.budget:,}" if self.scheduler.budget else ""
        ntk = ("" if self._layout_name == "presentation" else  # one line on a projector: the essentials only
               f" &nbsp;·&nbsp; <span title='chunk of {run.chunk} steps, {ms:.0f} ms; {tip}'>NTK "
               f"{run.ntk_method}{ntk_ms}</span>")
        solver = run.trainer.solver_state()  # the kernel solve's damping and gain ratio, live
        lm = "" if solver is None else (f" &nbsp;·&nbsp; <span title='damping mu (relative to Tr A / N) and gain "
                                        f"ratio rho of the kernel solve'>μ {solver['mu']:.1e} ρ "
                                        f"{solver['rho']:.2f}</span>")
        c.counter.value = (f"<span style='font-size:1.3em;font-weight:600'>step {self.step:,}{budget}</span>"
                           f" &nbsp;·&nbsp; {self.steps_per_second:,.0f} steps/s &nbsp;·&nbsp; rel. L2 {errors}"
                           f"{lm}{ntk}")
        frames = len(run.keyframes)
        with c.quiet():
            c.replay.max = frames - 1
            if self._replay is None:
                c.replay.value = frames - 1
            elif self._replay > frames - 1:
                self._replay = None
                c.replay.value = frames - 1
        shown = run.keyframes[-1 if self._replay is None else self._replay].step
        mode = "(live)" if self._replay is None else "(replay: drag right for live)"
        c.replay_label.value = f"step {shown:,} {mode}"

    def _status(self, text: str) -> None:
        color = {"r": "#2e7d32", "c": "#ef6c00", "d": "#c62828" if text.startswith("diverged") else "#555"}
        self.status = text
        self.controls.status.value = (f"<span style='color:{color.get(text[:1], '#555')}'>{html.escape(text)}</span>")
        if text.startswith("diverged"):  # the caption line is on screen in every layout
            self._caption(f"<span style='color:#c62828'>{html.escape(text)}</span>")

    def _caption(self, text: str) -> None:
        self.controls.caption.value = text

    def _fail(self, error: BaseException) -> None:
        self.error = error
        log.error("pinnlab.Lab: %s: %s", type(error).__name__, error)
        tb = html.escape("".join(traceback.format_exception(error)))
        self.controls.error.value = (
            f"<div style='color:#b00020;border:1px solid #b00020;padding:4px 8px;border-radius:4px'>"
            f"<b>{html.escape(type(error).__name__)}</b>: {html.escape(str(error))}"
            f"<details><summary>traceback</summary><pre style='font-size:0.8em'>{tb}</pre></details></div>")
        self._status("error (details below)")

    def _guard(self, action, *args) -> None:
        """Run a widget callback on the kernel's event loop, between chunks; show its error in the dashboard
        instead of losing it in the kernel log.

        Why the hop: JupyterLab 4.6 with ipykernel 7 can deliver widget messages on a kernel subshell, i.e.
        on another thread while a chunk trains. A rule switch written there was overwritten by the chunk
        in flight (the weights stayed at Algorithm 1's values after "off"; benchmarks/bench_click.py).
        """
        loop = self._loop
        if loop is not None and threading.get_ident() != self._thread and loop.is_running():
            loop.call_soon_threadsafe(self._guarded, action, *args)
        else:
            self._guarded(action, *args)

    def _guarded(self, action, *args) -> None:
        try:
            action(*args)
        except Exception as e:
            self._fail(e)

    # -- control callbacks --------------------------------------------------------------------------------------
    def _apply_budget(self) -> None:
        """The scheduler's budget and every trainer's weight-refresh limit from the base state's ``budget``."""
        budget = self._base.budget or None
        self.scheduler.budget = budget
        for run in self.runs:
            run.trainer.refresh_until = budget

    def _apply_live(self, fields: dict, runs) -> None:
        for i in runs:
            state = self.runs[i].state.replace(**fields)
            self.runs[i].set_live(state, state.budget or None)
            self._overrides[i] = _diff(state, self._base) if i else {}
        if 0 in runs:
            self._base = self._base.replace(**fields)
            for i in range(1, len(self.runs)):
                self._overrides[i] = _diff(self.runs[i].state, self._base)
        self.scheduler.budget = self._base.budget or None
        for name, value in fields.items():
            self.events.append({"time": time.time(), "step": self.step, "field": name, "value": value,
                                "runs": [self.runs[i].label for i in runs]})
        self.controls.write(self._pending_states())
        self._show_config()
        if len(self.runs) > 1:  # the title names what differs between the runs
            self.figure.layout.title.text = self._title()
        if not self.running:  # paused: show the effect (weights, shares, budget line) at once
            self._draw(full=True)
            return
        self._held = self._has_front_end()
        if self._edits_in_flight() == 0:  # between chunks (callbacks run on the loop): show it now too
            self._draw(full="budget" in fields)
        else:  # as soon as the front end has drawn the frame in flight (_drawn), never behind it
            self._urgent = True

    def _live_changed(self, name: str, value) -> None:
        if name.startswith("rule") and len(self.runs) > 1:
            self._apply_live({"rule": value}, runs=[self.controls.suffixes.index(name[4:])])
        else:
            self._apply_live({name: value}, runs=range(len(self.runs)))

    def _pending_states(self) -> list[LabState]:
        """The applied states with the reset widgets' pending values kept (so writing never loses edits)."""
        try:
            pending = self.controls.read_reset(self._base)
        except ValueError:
            pending = self._base
        return [pending.replace(**run.state.live_fields()) for run in self.runs]

    def _reset_changed(self, name: str | None, value) -> None:
        c = self.controls
        if name == "problem":  # a new PDE: fill in its defaults, as choosing a dataset does in TF Playground
            defaults = preset(value).reset_fields()
            with c.quiet():
                for field, widget in c.reset.items():
                    widget.value = defaults[field]
            c.label_param(value)
        if name == "optimizer":  # the kernel solve takes a step scale of 1, not a learning rate
            fields = optimizer_fields(c.reset["problem"].value, value)
            with c.quiet():
                for field, v in fields.items():
                    c.reset[field].value = v
        try:
            pending = c.read_reset(self._base)
        except ValueError as e:
            self._status(f"invalid: {e}")
            return
        changed = pending.reset_fields() != self._base.reset_fields()
        c.mark_pending(changed)
        self._status("reset controls changed: press Reset" if changed else self.status)

    def _preset_chosen(self, name: str) -> None:
        if not name:
            return
        self.controls.preset_help.value = f"<span style='color:#666'>{html.escape(PRESETS[name][0])}</span>"
        self._reset_to(preset(name))

    def _config_entered(self, text: str) -> None:
        if text.strip() == self.config:
            return
        parts = [LabState.from_string(p) for p in text.split("||")]
        if len(parts) != len(self.runs):
            raise ValueError(f"this lab shows {len(self.runs)} run(s); open a {len(parts)}-run config with "
                             f"pinnlab.Lab(config)")
        self._overrides = [_diff(s, parts[0]) for s in parts]
        self._reset_to(parts[0])

    def _replay_moved(self, index: int) -> None:
        last = len(self.runs[0].keyframes) - 1
        self._replay = None if index >= last else int(index)
        self._draw(full=True)

    def _reset_to(self, base: LabState, keep_running: bool | None = None) -> None:
        """Rebuild the runs from ``base``; a playing lab keeps playing unless ``keep_running`` is False."""
        playing = self.scheduler.playing if keep_running is None else keep_running
        states = [base.replace(**o) for o in self._overrides]
        self._status("rebuilding (compiles once)…")
        runs = self._build_runs(states)  # may raise: the old runs then stay as they were
        self.scheduler.stop("reset")
        self.runs, self._base, self._revision = runs, base, self._revision + 1
        self._apply_budget()
        self._replay, self._drawn_key, self._keyframe_cost, self._demo = None, None, None, None
        self._mode_choice = None  # the new runs have no eigenvector computed
        with self.controls.quiet():
            self.controls.replay.max, self.controls.replay.value = 0, 0
        self._caption("")
        self._rebuild_figure()
        self.controls.write(self.states)
        self.controls.mark_pending(False)
        self.controls.error.value = ""
        self.error = None
        self._draw(full=True)
        self._show_config()
        self._status("reset: press Run")
        if playing:
            self.play()

    def _show_config(self) -> None:
        with self.controls.quiet():
            self.controls.config.value = self.config


def static_bundle(fig) -> dict:
    """A display bundle of ``fig``: plotly's JSON mimetype (JupyterLab, VS Code) and HTML that loads
    plotly.js from its CDN (Colab and other front ends without the plotly renderer)."""
    import plotly.io as pio

    return {"application/vnd.plotly.v1+json": json.loads(pio.to_json(fig, validate=False)),
            "text/html": pio.to_html(fig, include_plotlyjs="cdn", full_html=False, validate=False),
            "text/plain": f"<pinnlab.Lab figure: {len(fig.data)} traces>"}


def _count(steps) -> int:
    """A step count from the user: a non-negative integer (``True``, ``2.5`` and ``-1`` are refused)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    return int(steps)


def _diff(state: LabState, base: LabState) -> dict:
    a, b = dataclasses.asdict(state), dataclasses.asdict(base)
    return {k: v for k, v in a.items() if b[k] != v}


def _same_architecture(a: LabState, b: LabState) -> bool:
    """Same parameter shapes and seed: run B can start from run A's exact initial parameters."""
    keys = ("problem", "width", "depth", "convention", "seed")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def _write_report(history: History, target: Path) -> bool:
    """``report.html`` next to the History, if :mod:`pinnlab.report` exists (spectra thinned for size)."""
    try:
        from pinnlab.report import write_report
    except ImportError:
        return False
    n = len(history.spectra)
    keep = sorted(set(np.linspace(0, n - 1, min(n, REPORT_SPECTRA)).round().astype(int).tolist())) if n else []
    light = dataclasses.replace(history, spectra=[history.spectra[i] for i in keep],
                                spectra_step=[history.spectra_step[i] for i in keep],
                                ntk_drift=[history.ntk_drift[i] for i in keep])
    write_report(light, target / "report.html")
    return True
