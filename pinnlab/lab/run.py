"""One training run as the dashboard drives it: whole chunks, thinned curves, keyframes for replay.

No widgets and no plotly here: a :class:`LiveRun` owns a :class:`~pinnlab.training.Trainer` and turns
its snapshots into what the dashboard draws. Curves keep at most ~2,000 rows (every k-th step, k
doubling as the run grows), so a frame costs the same at step 100 and at step 10^7. A
:class:`Keyframe` (prediction, error and, at the NTK period, the spectra on the trainer's fixed probe
points) is what the replay slider scrubs through. The spectra take the NTK path ``ntk.kernel`` picks for
the lab's net and terms (``"structured"`` for every lab preset: see :attr:`LiveRun.ntk_method`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import threading
import time
from collections import deque

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from pinnlab import ntk
from pinnlab.history import Snapshot
from pinnlab.lab import cache
from pinnlab.lab.decay import ModeDecay
from pinnlab.lab.eigenmode import Eigenmode
from pinnlab.lab.linear import LinearTwin
from pinnlab.lab.state import LabState, build
from pinnlab.lab.threads import one_blas_thread
from pinnlab.panels import RunView
from pinnlab.training import Trainer

MAX_ROWS = 800  # curve rows kept for drawing (a panel is ~350 px wide: more points cost the browser, not detail)
MAX_KEYFRAMES = 240  # replay positions kept (thinned by halves, the first always kept)
MAX_RECORDS = 2000  # spectra and evaluations the trainer's History may hold before they are thinned by half
HISTORY_ROWS = 1_000_000  # per-step rows the trainer's History may hold before it is thinned by half
CHUNK_RANGE = (0.018, 0.06)  # seconds per chunk outside which an auto chunk is re-picked (once per build)


@dataclasses.dataclass
class Keyframe:
    """What the slow panels show at one step: prediction on the grid, error, and maybe the spectra."""

    step: int
    prediction: np.ndarray
    rel_l2: float
    weights: np.ndarray
    spectra: dict[str, np.ndarray] | None = None
    modes: np.ndarray | None = None  # |c_k| of the shown modes (pinnlab.lab.decay), while they are tracked
    linear: np.ndarray | None = None  # the linearised twin's prediction (pinnlab.lab.linear), while it trains
    linear_rel_l2: float | None = None  # and its relative L2 error


class Curves:
    """Per-step losses, weights and traces, every ``stride``-th step, at most :data:`MAX_ROWS` rows.

    When full, every other row is dropped and the stride doubles, so the kept steps stay evenly spread
    over the whole run. The newest row is always kept apart, so the curves reach the current step.
    """

    def __init__(self, terms: int, max_rows: int = MAX_ROWS):
        self.max_rows, self.stride = max_rows, 1
        self.steps = np.zeros(0, np.int64)
        self.values = np.zeros((0, 3, terms), np.float32)  # (row, losses|weights|traces, term)
        self.last: tuple[int, np.ndarray] | None = None

    def extend(self, snap: Snapshot) -> None:
        if not len(snap.steps):
            return
        rows = np.stack([snap.losses, snap.weights, snap.traces], axis=1).astype(np.float32)
        keep = snap.steps % self.stride == 0
        self.steps = np.concatenate([self.steps, snap.steps[keep]])
        self.values = np.concatenate([self.values, rows[keep]])
        self.last = (int(snap.steps[-1]), rows[-1])
        while len(self.steps) > self.max_rows:
            self.stride *= 2
            keep = self.steps % self.stride == 0
            self.steps, self.values = self.steps[keep], self.values[keep]

    def truncate(self, step: int) -> None:
        """Forget the rows from ``step`` on (the trainer rewound there after a divergence)."""
        keep = self.steps < step
        self.steps, self.values = self.steps[keep], self.values[keep]
        if self.last is not None and self.last[0] >= step:
            self.last = (int(self.steps[-1]), self.values[-1]) if len(self.steps) else None

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        """``steps (n,)`` and ``values (n, 3, m)``, the newest step included."""
        if self.last is None or (len(self.steps) and self.steps[-1] == self.last[0]):
            return self.steps, self.values
        return np.append(self.steps, self.last[0]), np.concatenate([self.values, self.last[1][None]])


class LiveRun:
    """A trainer plus what the dashboard needs from it.

    Args:
      state: the run's settings.
      label: shown in compare mode (``"A"``, ``"B"``).
      params: initial parameters to start from (compare mode shares run A's), default the seed's.
      chunk: steps per jitted call; default the state's, else remembered for this shape, else estimated.
    """

    def __init__(self, state: LabState, label: str = "", params=None, chunk: int | None = None):
        self.state, self.label = state, label
        self.memo_key = _memo_key(state)
        self.auto_chunk = state.chunk == 0 and chunk is None
        problem, net, train = build(state, chunk=1)
        chunk = chunk or state.chunk or cache.remembered_chunk(self.memo_key) or _estimate(state, problem)
        self.trainer = Trainer(problem, net, dataclasses.replace(train, chunk=chunk), params=params)
        self.problem = problem
        self.terms = problem.term_names
        self.exact = np.asarray(self.trainer.history.exact, np.float32)
        self.curves = Curves(len(self.terms))
        self.keyframes: list[Keyframe] = []
        self.chunk_seconds: deque[float] = deque(maxlen=6)
        self.compiled = False  # the first chunk compiles (or loads from the persistent cache)
        self.warming: threading.Thread | None = None  # compiles what the first click on the rule toggle computes
        self.thinned = 1  # factor by which the History's per-step rows were thinned
        self.diverged_at: int | None = None
        self._checkpoint = None  # the trainer's state before the last live-control change
        self._history_rows = 0
        self.records_thinned = {"spectra": 1, "evaluations": 1}  # factors the History's records were thinned by
        t = self.trainer
        # The NTK path of the spectra and traces below (both ask ntk for method "auto").
        self.ntk_method = ntk.resolve_method(t.apply, problem.terms)
        self.spectra_seconds: float | None = None  # smoothed seconds of K and its spectra per keyframe
        grid = jnp.asarray(problem.grid)
        flat0 = jax.flatten_util.ravel_pytree(t.params0)[0]
        self._predict = jax.jit(lambda p: t.apply(p, grid))
        self._drift = jax.jit(lambda p: jnp.linalg.norm(jax.flatten_util.ravel_pytree(p)[0] - flat0)
                              / jnp.linalg.norm(flat0))
        self._step = t.step
        self.decay: ModeDecay | None = None  # built when the modes panel is first shown (track_modes)
        self.eigenmode: Eigenmode | None = None  # the clicked eigenvector on show (Lab.show_mode)
        self.twin: LinearTwin | None = None  # the linearised network beside this one (track_linear)
        self._scales = [(0, state.lr_scale)]  # (step, lr scale from then on): the twin's replay needs them
        # the first step from which the GD prediction of the modes no longer holds (a rule or lr-scale change)
        self.gd_until: int | None = None if state.rule == "none" and state.lr_scale == 1.0 else 0
        self.keyframe(spectra=True)  # step 0: the faint reference spectra and the untrained prediction

    # -- training ---------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """The trainer's step, read once per chunk (each read of the device scalar costs a transfer)."""
        return self._step

    @property
    def chunk(self) -> int:
        return self.trainer.config.chunk

    def advance(self, limit: int | None = None) -> Snapshot:
        """One chunk (at most ``limit`` steps); the curves and timing are updated, the History kept within
        :data:`HISTORY_ROWS`."""
        t0, scale = time.perf_counter(), self.trainer.lr_scale
        snap = self.trainer.advance(self.chunk if limit is None else max(1, min(self.chunk, int(limit))))
        self._advance_twin(snap, scale)
        if self.compiled:
            self.chunk_seconds.append(time.perf_counter() - t0)
        else:  # the step is compiled: compile the first rule switch's work too, off the event loop
            self.warming = _warm_in_background(self.trainer)
        self.compiled = True
        self._step = self.trainer.step
        if snap.diverged is not None:
            self.diverged_at = snap.diverged
            self.curves.extend(snap)
            self._restore_checkpoint()
            return snap
        self.curves.extend(snap)
        self._bound_history(len(snap.steps))
        return snap

    def _advance_twin(self, snap: Snapshot, scale: float) -> None:
        if self.twin is None or self.twin.note:
            return
        if snap.diverged is not None:
            self.twin.stop(f"the linearised twin stopped where the run diverged (step {snap.diverged})")
        else:
            self.twin.advance(snap.weights, scale)

    def track_linear(self, on: bool = True) -> None:
        """Train the linearised network beside this one (:mod:`pinnlab.lab.linear`), or stop it. Switched
        on after step 0 it first replays the recorded steps: their weights, and the lr scales in force."""
        if not on:
            self.twin = None
            return
        if self.twin is not None:
            return
        twin = LinearTwin(self.trainer)
        if not twin.note and self._step:
            h = self.trainer.history
            steps, weights = h.curve("steps"), h.curve("weights")
            if self.thinned > 1 or len(steps) != self._step or self.diverged_at is not None:
                twin.stop("no linearised twin: the per-step record it would replay is thinned or rewound")
            else:
                starts = np.asarray([s for s, _ in self._scales])
                scales = np.asarray([v for _, v in self._scales])[np.searchsorted(starts, steps, side="right") - 1]
                for a in range(0, len(steps), self.chunk):  # the live chunk's length: one compile for both
                    twin.advance(weights[a: a + self.chunk], scales[a: a + self.chunk])
        self.twin = twin
        if self.keyframes and not twin.note:
            if self.keyframes[-1].step == self._step:
                self._twin_frame(self.keyframes[-1], twin.prediction())
            self._twin_frame(self.keyframes[0], self.keyframes[0].prediction)  # f_lin(theta_0) = f(theta_0)

    def _twin_frame(self, frame: Keyframe, prediction: np.ndarray) -> None:
        """Put the twin's prediction and its error on ``frame``."""
        frame.linear = prediction
        frame.linear_rel_l2 = float(np.linalg.norm(prediction.astype(np.float64) - self.exact)
                                    / np.linalg.norm(self.exact))

    def _restore_checkpoint(self) -> None:
        """After a divergence, go back to the state before the last live-control change when there was
        one (the trainer alone rewinds to the last finite step, whose parameters may be huge already)."""
        t = self.trainer
        if self._checkpoint is not None and int(self._checkpoint.step) < self.diverged_at:
            t.restore(self._checkpoint)
        self._step = t.step
        self.curves.truncate(self._step)
        self.keyframes = [k for k in self.keyframes if k.step <= self._step] or self.keyframes[:1]

    def set_chunk(self, chunk: int) -> None:
        """Use ``chunk`` steps per call from now on (one compile of the new length)."""
        if chunk != self.chunk:
            self.trainer.set_chunk(int(chunk))
            self.chunk_seconds.clear()
            self.compiled = False

    def suggest_chunk(self) -> int | None:
        """A better auto chunk if the measured chunks fall outside :data:`CHUNK_RANGE`, else None.

        Decided once per build, after the first few timed chunks (later chunks keep their length).
        """
        if not self.auto_chunk or len(self.chunk_seconds) < self.chunk_seconds.maxlen:
            return None
        self.auto_chunk = False
        seconds = statistics.median(self.chunk_seconds)
        if CHUNK_RANGE[0] <= seconds <= CHUNK_RANGE[1]:
            return None
        better = cache.pow2_chunk(seconds / self.chunk)
        return better if better != self.chunk else None

    def _bound_history(self, new_rows: int) -> None:
        """Thin the History's per-step rows by half when they pass :data:`HISTORY_ROWS` (a lab runs for hours)."""
        self._history_rows += new_rows
        if self._history_rows > HISTORY_ROWS:
            self.trainer.history.thin_rows()
            self._history_rows = self.trainer.history.rows()
            self.thinned *= 2

    # -- live controls ---------------------------------------------------------------------------
    def set_live(self, state: LabState, budget: int | None = None) -> None:
        """Apply the live fields of ``state`` to the trainer (read at its next chunk, never recompiles).

        The rule acts at once (:meth:`~pinnlab.training.Trainer.set_rule`); weights never refresh at or
        past ``budget``.
        """
        t = self.trainer
        self._checkpoint = t.state  # jax arrays are immutable: keeping the state costs no copy
        if self.gd_until is None and (state.rule != "none" or state.lr_scale != 1.0):
            self.gd_until = self._step
        t.set_rule(state.rule)
        if state.lr_scale != t.lr_scale:
            self._scales.append((self._step, state.lr_scale))
        t.update_every, t.ntk_every, t.lr_scale, t.refresh_until = (state.update_every, state.ntk_every,
                                                                    state.lr_scale, budget)
        self.state = state

    # -- keyframes ---------------------------------------------------------------------------------
    def keyframe(self, spectra: bool) -> Keyframe:
        """Prediction and relative L2 error now (recorded in the History), and the NTK spectra if asked.

        Spectra are skipped (None) while the parameters are not finite; the panels then keep the last ones.
        """
        t = self.trainer
        pred = np.asarray(self._predict(t.state.params), np.float32)
        err = float(np.linalg.norm(pred.astype(np.float64) - self.exact) / np.linalg.norm(self.exact))
        t.history.add_eval(self._step, err, float(self._drift(t.state.params)))
        eig = self._spectra() if spectra and np.isfinite(err) else None
        self._bound_records()
        coeffs = self.decay.coefficients(t.state.params) if self.decay is not None and np.isfinite(err) else None
        frame = Keyframe(self._step, pred, err, np.asarray(t.state.weights, np.float64), eig, coeffs)
        if self.twin is not None and not self.twin.note:
            self._twin_frame(frame, self.twin.prediction())
        if self.keyframes and self.keyframes[-1].step == frame.step:
            self.keyframes[-1] = frame
        else:
            self.keyframes.append(frame)
        if len(self.keyframes) > MAX_KEYFRAMES:  # halve, keeping the step-0 reference and the newest
            self.keyframes = self.keyframes[:1] + self.keyframes[2:-1:2] + self.keyframes[-1:]
        return frame

    def _spectra(self) -> dict[str, np.ndarray] | None:
        """Eigenvalues of K and its blocks, timed; None if the kernel is not finite (no LAPACK call then)."""
        t0 = time.perf_counter()
        try:
            with one_blas_thread():  # see pinnlab.lab.threads: many BLAS threads thrash on shared CPUs
                eig = {name: np.asarray(v, np.float32) for name, v in self.trainer.spectra().items()}
        except (np.linalg.LinAlgError, FloatingPointError):
            return None
        if not all(np.isfinite(v).all() for v in eig.values()):
            return None
        cost = time.perf_counter() - t0
        if self.keyframes:  # the first one compiles the kernel: not its cost per frame
            self.spectra_seconds = cost if self.spectra_seconds is None else 0.7 * self.spectra_seconds + 0.3 * cost
        return eig

    def _bound_records(self) -> None:
        """Halve the History's spectra and evaluations (first and newest kept) past :data:`MAX_RECORDS` each."""
        for group in self.trainer.history.thin_records(MAX_RECORDS):
            self.records_thinned[group] *= 2

    def track_modes(self) -> None:
        """Start recording the per-mode coefficients at every keyframe (:mod:`pinnlab.lab.decay`): the
        basis once, then one residual evaluation per keyframe. Step 0's coefficients come from the
        initial parameters; keyframes between step 0 and now have none."""
        if self.decay is None:
            self.decay = ModeDecay(self.trainer)
            self.keyframes[0].modes = self.decay.c0
            if self.keyframes[-1].step == self._step and len(self.keyframes) > 1:
                self.keyframes[-1].modes = self.decay.coefficients(self.trainer.state.params)

    def spectra_at(self, index: int) -> Keyframe | None:
        """The newest keyframe with spectra at or before ``index``."""
        for frame in reversed(self.keyframes[: index + 1]):
            if frame.spectra is not None:
                return frame
        return None

    def view(self, index: int | None = None, label: str = "", dash: str = "solid") -> RunView:
        """What the panels draw: the curves up to now and keyframe ``index`` (None: the newest)."""
        steps, values = self._curves_now()
        i = len(self.keyframes) - 1 if index is None else min(index, len(self.keyframes) - 1)
        frame, with_spectra = self.keyframes[i], self.spectra_at(i)
        p = self.problem
        return RunView(terms=tuple(self.terms), coords=tuple(p.coords), grid=np.asarray(p.grid),
                       grid_shape=tuple(p.grid_shape), exact=self.exact, steps=steps, losses=values[:, 0],
                       weights=values[:, 1], traces=values[:, 2],
                       eval_steps=np.asarray([k.step for k in self.keyframes]),
                       rel_l2=np.asarray([k.rel_l2 for k in self.keyframes]), prediction=frame.prediction,
                       spectra=None if with_spectra is None else with_spectra.spectra,
                       spectra0=self.keyframes[0].spectra,
                       weights_now=None if with_spectra is None else with_spectra.weights, label=label, dash=dash,
                       modes=None if self.decay is None else self.decay.view(
                           [k.step for k in self.keyframes[: i + 1]], [k.modes for k in self.keyframes[: i + 1]],
                           self.gd_until), eigenmode=self.eigenmode, linear=self._linear_view(i))

    def _linear_view(self, index: int) -> dict | None:
        """The twin's prediction at keyframe ``index`` and its relative L2 error at every keyframe it has."""
        if self.twin is None:
            return None
        frames = [k for k in self.keyframes[: index + 1] if k.linear is not None]
        return {"prediction": self.keyframes[index].linear, "steps": np.asarray([k.step for k in frames]),
                "rel_l2": np.asarray([k.linear_rel_l2 for k in frames]), "note": self.twin.note}

    def _curves_now(self) -> tuple[np.ndarray, np.ndarray]:
        """The curves plus a row at the current step with the weights and traces in force now, so a
        switch of the rule shows at once, before the next chunk records it."""
        steps, values = self.curves.view()
        if not len(steps):
            return steps, values
        state = self.trainer.state
        now = np.stack([values[-1, 0], np.asarray(state.weights, np.float32), np.asarray(state.traces, np.float32)])
        if not np.any(now[2] > 0):  # no traces computed yet (unweighted, NTK off): keep the recorded ones
            now[2] = values[-1, 2]
        if np.array_equal(now[1:], values[-1, 1:]):
            return steps, values
        return np.append(steps, self._step), np.concatenate([values, now[None]])

    def finish_history(self, message: str = ""):
        """Mark the History with the current prediction and status so it can be saved or reported."""
        t = self.trainer
        status = "completed" if self.diverged_at is None else "diverged"
        if self.diverged_at is not None:
            message = f"loss became non-finite at step {self.diverged_at}; " + message
        factors = {"per-step curves": self.thinned, **self.records_thinned}
        thinned = [f"{what} thinned {factor}x" for what, factor in factors.items() if factor > 1]
        note = f" ({', '.join(thinned)} to bound memory)" if thinned else ""
        t.history.finish(np.asarray(self._predict(t.state.params)), t.seconds, status, message + note)
        return t.history


def _warm_in_background(trainer: Trainer) -> threading.Thread:
    """Start :meth:`Trainer.warm_rule_switch` on a thread. Otherwise the first click on the rule toggle
    traces and compiles the probe traces on the event loop while the room waits (0.1 s for Poisson,
    0.3 s for wave on a quiet 2-core VM, 0.4-0.7 s under load); later clicks take ~2 ms."""
    def warm():
        with contextlib.suppress(Exception):  # only a warm-up: the switch itself reports any error
            trainer.warm_rule_switch()
    # Not a daemon: the interpreter joins it at exit. A daemon thread still compiling when Python exits
    # (a script that ends right after its first chunk) aborted the process from inside XLA.
    thread = threading.Thread(target=warm, name="pinnlab-warm-rule-switch")
    thread.start()
    return thread


def _estimate(state: LabState, problem) -> int:
    """The cost model's chunk for this network size and point count."""
    width, depth, d = state.width, state.depth, problem.dim
    params = (d + 1) * width + (depth - 1) * (width + 1) * width + width + 1
    return cache.estimate_chunk(params, sum(term.n for term in problem.terms))


def _memo_key(state: LabState) -> str:
    """What the cost of a step depends on (not the seed, the PDE parameter or the live controls)."""
    s = state
    return (f"{jax.default_backend()}:{s.problem}:{s.width}x{s.depth}:{s.convention}:{s.optimizer}:"
            f"{s.n_b}/{s.n_r}/{s.n_ntk}")
