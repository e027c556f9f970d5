"""``pinnlab.Lab``: the live dashboard (controls, one figure, Run/Pause/Step/Reset, replay, export).

Training runs as one asyncio task on the kernel's event loop (never a thread): a chunk of ~30 ms,
then ``await asyncio.sleep(0)``, so button clicks and slider moves are handled between chunks and
live controls act at the next one. Frames are throttled (at most ~10 per second, and to ~5 % of the
time, whichever is rarer) and always show the newest data; keyframes (spectra on the trainer's probe
points, prediction, error) follow the NTK refresh period, at most ~5 per second and within a ~4 % time
budget; the counter shows the NTK method and its cost per keyframe. The task goes
through :mod:`pinnlab.lab.tasks`, so a kernel never trains two loops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import json
import logging
import time
import traceback
from collections import deque
from pathlib import Path

import ipywidgets as w
import numpy as np
import plotly.graph_objects as go

from pinnlab.history import History
from pinnlab.lab import cache, tasks
from pinnlab.lab.controls import Controls
from pinnlab.lab.figure import LabFigure
from pinnlab.lab.run import LiveRun
from pinnlab.lab.state import LIVE, PRESETS, LabState, preset, resolve

log = logging.getLogger("pinnlab.lab")

BACKENDS = ("widget", "static")
MIN_FRAME_SECONDS = 0.1  # at most ~10 frames per second
MIN_STATIC_SECONDS = 1.5  # the static backend re-renders its whole figure: rarer
FRAME_BUDGET = 0.05  # fraction of the time frames may take
# Spectra, prediction and error at most 5 times a second (every other frame) and in at most 4 % of the time:
# the budget is what limits a costly NTK (wave_paper); the floor, what limits a cheap one (the default lab).
MIN_KEYFRAME_SECONDS = 0.2
KEYFRAME_BUDGET = 0.04
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
      backend: ``"widget"`` (a plotly ``FigureWidget``, up to ~10 frames/s) or ``"static"`` (a plain figure
        re-rendered into an ``Output`` every ~1.5 s, for front ends where ``FigureWidget`` does not load;
        the counters and controls stay live).
      **overrides: any :class:`~pinnlab.lab.state.LabState` field, e.g. ``width=50, rule="ntk"``.

    Display it as the last expression of a cell. ``play()``/``pause()`` train in the background,
    ``run(steps)`` and ``await arun(steps)`` train to a step count, ``set(...)`` changes controls,
    ``reset(...)`` rebuilds, ``export()`` saves the run.
    """

    def __init__(self, config: str | LabState = "poisson", *, backend: str = "widget", **overrides):
        if isinstance(config, str) and "||" in config:
            states = [LabState.from_string(part) for part in config.split("||")]
            if len(states) != 2:
                raise ValueError("a compare config has exactly two states joined by ' || '")
            states = [s.replace(**overrides) for s in states]
            self._setup(states, ["A", "B"], backend)
        else:
            self._setup([resolve(config, **overrides)], [""], backend)

    @classmethod
    def compare(cls, config: str | LabState = "poisson", a: dict | None = None, b: dict | None = None, *,
                labels: tuple[str, str] = ("A", "B"), backend: str = "widget", **overrides) -> Lab:
        """Two runs of one problem side by side on shared axes, from the same seed and initial parameters.

        ``a`` and ``b`` override fields of ``config`` per run; by default A trains unweighted and B with
        the config's weighting rule (``ntk`` when the config has none). Run A is drawn solid, B dashed.
        Both start from run A's initial parameters whenever the architecture and seed agree.
        """
        base = resolve(config, **overrides)
        a = {"rule": "none"} if a is None else a
        b = {"rule": base.rule if base.rule != "none" else "ntk"} if b is None else b
        states = [base.replace(**a), base.replace(**b)]
        if states[0].problem != states[1].problem:
            raise ValueError("compared runs must solve the same problem (shared axes)")
        lab = cls.__new__(cls)
        lab._setup(states, list(labels), backend)
        return lab

    # -- construction ----------------------------------------------------------------------------------
    def _setup(self, states: list[LabState], labels: list[str], backend: str) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        cache.enable_compilation_cache()
        tasks.stop_all("a new Lab was created")  # the old dashboard's loop would train unseen
        self.backend, self.labels = backend, labels
        self._base = states[0]
        self._overrides = [_diff(s, states[0]) for s in states]
        self.error: BaseException | None = None
        self.frames_drawn, self.timings = 0, {}
        self._task: asyncio.Task | None = None
        self._task_error: BaseException | None = None
        self._pause_requested, self._stop_reason, self._revision = False, None, 0
        self._rate: deque[tuple[float, int]] = deque(maxlen=64)
        self._frame_cost, self._keyframe_cost, self._last_frame, self._last_keyframe = 0.0, None, -1e9, 0.0
        self._replay: int | None = None
        self._static_cost, self._last_static = 0.0, -1e9
        self._drawn_key = None
        self.controls = Controls(len(states))
        self.runs = self._build_runs(states)
        self.figure = self._new_figure()
        self._output = w.Output() if backend == "static" else None
        self.widget = self._layout()
        self._wire()
        self.controls.write(self.states)
        self._show_config()
        self._status("ready: press Run")
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

    def _new_figure(self):
        self._model = LabFigure(self.runs, self._title(), self._revision)
        fig = self._model.build()
        return go.FigureWidget(fig) if self.backend == "widget" else fig

    def _rebuild_figure(self) -> None:
        """Same FigureWidget (one per dashboard: its JS ships once), new traces and layout."""
        self._model = LabFigure(self.runs, self._title(), self._revision)
        fresh = self._model.build()
        if self.backend == "static":
            self.figure = fresh
            return
        with self.figure.batch_update():
            self.figure.data = []
            self.figure.layout = fresh.layout
            self.figure.add_traces(list(fresh.data))

    def _layout(self) -> w.Widget:
        c = self.controls
        view = self.figure if self.backend == "widget" else self._output
        return w.VBox([c.header(), c.live_box(), c.reset_box(), view, c.footer(), c.error],
                      layout=w.Layout(width="100%"))

    def _wire(self) -> None:
        c = self.controls
        c.run.on_click(lambda _: self._guard(self.toggle))
        c.step.on_click(lambda _: self._guard(self.step_once))
        c.reset_button.on_click(lambda _: self._guard(self.reset))
        c.export.on_click(lambda _: self._guard(self.export))
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
    def running(self) -> bool:
        """Whether this lab's training task is alive (and not being cancelled)."""
        t = self._task
        return t is not None and not t.done() and not t.cancelling()

    @property
    def steps_per_second(self) -> float:
        recent = [(t, s) for t, s in self._rate if t >= self._rate[-1][0] - 2.0] if self._rate else []
        if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return 0.0
        return (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])

    # -- actions ---------------------------------------------------------------------------------------------
    def play(self) -> None:
        """Train in the background until paused (needs a running event loop: a Jupyter kernel)."""
        if self.running:
            return
        self._begin()
        self._task = tasks.start(lambda: self._loop(None))
        self.controls.show_running(True)

    def pause(self) -> None:
        """Stop after the chunk in flight."""
        self._pause_requested = True

    def toggle(self) -> None:
        """The Run/Pause button."""
        self.pause() if self.running else self.play()

    def step_once(self) -> None:
        """Train one chunk (pausing a running loop) and draw."""
        self._pause_requested = True
        self._stop_reason = None
        self._round()
        self._settle()
        self._status(self._stop_reason or f"stepped to {self.step:,}")

    def run(self, steps: int) -> None:
        """Train at least ``steps`` more steps (whole chunks) in the foreground, drawing as it goes.

        For scripts, tests and notebooks under test: it blocks the caller, so widgets do not respond
        meanwhile. Errors are shown in the dashboard and raised.
        """
        if self._task is not None:
            self._task.cancel("lab.run() took over")
        tasks.stop_all("lab.run() took over")
        self._begin()
        target = self.step + int(steps)
        self._status("running (blocking)")
        try:
            while self.step < target and self._stop_reason is None:
                self._round()
                if time.perf_counter() - self._last_frame >= self._frame_interval():
                    self._draw()
        except Exception as e:
            self._fail(e)
            raise
        finally:
            self._settle()
        self._status(self._stop_reason or f"done: step {self.step:,}")

    async def arun(self, steps: int) -> None:
        """Train at least ``steps`` more steps as the background task and wait for it (errors are raised)."""
        self._begin()
        target = self.step + int(steps)
        self._task = tasks.start(lambda: self._loop(target))
        await asyncio.wait([self._task])
        if self._task_error is not None:
            raise self._task_error

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

        A running lab keeps running on the new runs. If the build fails, the old runs stay.
        """
        base = self.controls.read_reset(self._base).replace(**changes)
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
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "lab_config.txt").write_text(self.config + "\n")
        report = "" if all(notes) else " (no HTML report: pinnlab.report is not available)"
        self.controls.exported.value = f"saved to <code>{html.escape(str(directory))}</code>{report}"
        return directory

    # -- the training loop -------------------------------------------------------------------------------------
    def _begin(self) -> None:
        self._pause_requested, self._stop_reason, self._task_error = False, None, None
        self._rate.clear()
        self._last_frame = -1e9  # draw right after the first chunk
        self.timings = {"play": time.perf_counter(), "play_step": self.step}

    async def _loop(self, until: int | None) -> None:
        self.controls.show_running(True)
        compiled = all(run.compiled for run in self.runs)
        self._status("running" if compiled else "compiling the training step (once per configuration)…")
        reason: str | None = "paused"
        try:
            await asyncio.sleep(0)
            while not self._pause_requested:
                if until is not None and self.step >= until:
                    reason = f"done: step {self.step:,}"
                    break
                self._round()
                if self._stop_reason is not None:
                    reason = self._stop_reason
                    break
                if time.perf_counter() - self._last_frame >= self._frame_interval():
                    self._draw()
                    if not compiled:
                        compiled = True
                        if self.error is None:  # keep an error from a control callback on show
                            self._status("running")
                await asyncio.sleep(0)
        except asyncio.CancelledError as e:
            reason = f"stopped ({e.args[0]})" if e.args else "stopped"
            raise
        except Exception as e:  # shown in the dashboard, kept for arun(), never lost in the task
            reason = None
            self._task_error = e
            self._fail(e)
        finally:
            self.controls.show_running(False)
            if reason:
                self._status(reason)
            with contextlib.suppress(Exception):
                self._settle()

    def _round(self) -> None:
        """One chunk of every run, then a keyframe if due, then maybe a better chunk length."""
        for run in self.runs:
            snap = run.advance()
            if snap.diverged is not None:
                self._stop_reason = (f"diverged: {run.label + ' ' if run.label else ''}loss became non-finite at step "
                                     f"{snap.diverged:,}; lower lr × and press Run, or Reset")
        now = time.perf_counter()
        self._rate.append((now, self.step))
        if self._keyframe_due(now):
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

    def _settle(self) -> None:
        """When training stops: a keyframe at the last step (spectra, prediction, error) and a frame."""
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

    def _frame_interval(self) -> float:
        return max(MIN_FRAME_SECONDS, self._frame_cost / FRAME_BUDGET)

    # -- drawing ------------------------------------------------------------------------------------------------
    def _draw(self, full: bool = False) -> None:
        """One frame: curves always, keyframe panels when they changed, counters and replay slider."""
        t0 = time.perf_counter()
        updates = self._model.curve_updates()
        key = (self._replay, self._revision, tuple((len(r.keyframes), r.keyframes[-1].step) for r in self.runs))
        if full or key != self._drawn_key:
            updates += self._model.keyframe_updates(self._replay)
            replay_step = None if self._replay is None else self.runs[0].keyframes[self._replay].step
            shapes = self._model.marker_shapes(replay_step)
        else:
            shapes = None
        with self.figure.batch_update():
            for index, props in updates:
                self.figure.data[index].update(props)
            if shapes is not None:
                self.figure.layout.shapes = shapes
        self._drawn_key = key
        self._update_counters()
        if self.backend == "static" and (full or t0 - self._last_static >= self._static_interval()):
            self._render_static()
        now = time.perf_counter()
        self._frame_cost = 0.7 * self._frame_cost + 0.3 * (now - t0)
        self._last_frame = now
        self.frames_drawn += 1
        if "first_frame" not in self.timings and "play" in self.timings and self.step > self.timings["play_step"]:
            self.timings["first_frame"] = now

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
        c.counter.value = (f"<span style='font-size:1.3em;font-weight:600'>step {self.step:,}</span>"
                           f" &nbsp;·&nbsp; {self.steps_per_second:,.0f} steps/s &nbsp;·&nbsp; chunk {run.chunk}"
                           f" ({ms:.0f} ms) &nbsp;·&nbsp; <span title='{tip}'>NTK "
                           f"{run.ntk_method}{ntk_ms}</span> &nbsp;·&nbsp; rel. L2 {errors}")
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
        """Run a widget callback; show its error in the dashboard instead of losing it in the kernel log."""
        try:
            action(*args)
        except Exception as e:
            self._fail(e)

    # -- control callbacks --------------------------------------------------------------------------------------
    def _apply_live(self, fields: dict, runs) -> None:
        for i in runs:
            state = self.runs[i].state.replace(**fields)
            self.runs[i].set_live(state)
            self._overrides[i] = _diff(state, self._base) if i else {}
        if 0 in runs:
            self._base = self._base.replace(**fields)
            for i in range(1, len(self.runs)):
                self._overrides[i] = _diff(self.runs[i].state, self._base)
        self.controls.write(self._pending_states())
        self._show_config()
        if len(self.runs) > 1:  # the title names what differs between the runs
            self.figure.layout.title.text = self._title()

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
        self._draw()

    def _reset_to(self, base: LabState) -> None:
        was_running = self.running
        states = [base.replace(**o) for o in self._overrides]
        if self._task is not None:
            self._task.cancel("reset")
        self._status("rebuilding (compiles once)…")
        runs = self._build_runs(states)  # may raise: the old runs then stay as they were
        self.runs, self._base, self._revision = runs, base, self._revision + 1
        self._replay, self._drawn_key, self._keyframe_cost = None, None, None
        self._rebuild_figure()
        self.controls.write(self.states)
        self.controls.mark_pending(False)
        self.controls.error.value = ""
        self.error = None
        self._draw(full=True)
        self._show_config()
        self._status("reset: press Run")
        if was_running:
            self.play()

    def _show_config(self) -> None:
        with self.controls.quiet():
            self.controls.config.value = self.config


def static_bundle(fig: go.Figure) -> dict:
    """A display bundle of ``fig``: plotly's JSON mimetype (JupyterLab, VS Code) and HTML that loads
    plotly.js from its CDN (Colab and other front ends without the plotly renderer)."""
    import plotly.io as pio

    return {"application/vnd.plotly.v1+json": json.loads(pio.to_json(fig, validate=False)),
            "text/html": pio.to_html(fig, include_plotlyjs="cdn", full_html=False, validate=False),
            "text/plain": f"<pinnlab.Lab figure: {len(fig.data)} traces>"}


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
