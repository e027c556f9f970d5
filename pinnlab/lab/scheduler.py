"""The lab's training loop: one asyncio task on the kernel's event loop, its stopping rules and its callers.

Training runs chunk by chunk with ``await asyncio.sleep(0)`` between chunks, so widget messages
(clicks, slider moves, the front end's frame acknowledgements) are handled between chunks and live
controls act at the next one. The loop stops when it is paused, reaches the step budget (the paper's
step count: it stops exactly there, once), diverges, is cancelled (Reset, another lab, ``lab.run``), or,
when it was started by :meth:`Scheduler.run_to` only, when every caller's target is reached. Each
caller of :meth:`run_to` gets an :class:`Outcome` saying which. The task goes through
:mod:`pinnlab.lab.tasks`, so a kernel never trains two loops at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Protocol

from pinnlab.lab import tasks


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Why training stopped, at which step.

    ``reason``: ``"done"`` (the caller's step count was reached), ``"paused"``, ``"budget"`` (the
    step budget was reached and the lab paused there), ``"diverged"``, ``"stalled"`` (the kernel solve can
    move no further: :meth:`pinnlab.training.Trainer.stalled`), ``"reset"`` (the runs were rebuilt),
    ``"stopped"`` (cancelled by another lab or ``lab.run``) or ``"error"``.
    """

    reason: str
    step: int
    message: str = ""


class Host(Protocol):
    """What the scheduler drives (the :class:`~pinnlab.lab.dashboard.Lab`)."""

    @property
    def step(self) -> int: ...

    def train_round(self, limit: int | None) -> str | None:
        """One chunk of every run (at most ``limit`` steps); a message if a run diverged."""

    def stalled(self) -> str | None:
        """Why no run can move any more (every step a rejected kernel solve), else None."""

    def frame_due(self) -> bool: ...

    def draw(self) -> None: ...

    async def hold(self) -> None:
        """Wait, between chunks, for what must not share the CPU with training (a click's frame)."""

    def started(self) -> None: ...

    def stopped(self, outcome: Outcome) -> None: ...


class Scheduler:
    """Starts, pauses and stops the training task of one lab; ``budget`` is the step to pause at (or None)."""

    def __init__(self, host: Host):
        self.host = host
        self.budget: int | None = None
        self.task: asyncio.Task | None = None
        self.error: BaseException | None = None
        self.last: Outcome | None = None
        self._pause = False
        self._play = False  # train until paused (Run), rather than to the callers' targets
        self._waiters: list[tuple[int, asyncio.Future]] = []

    @property
    def alive(self) -> bool:
        """Whether the task will train another chunk (alive, not being cancelled, no pause pending)."""
        t = self.task
        return t is not None and not t.done() and not t.cancelling() and not self._pause

    @property
    def playing(self) -> bool:
        """Whether the loop trains until paused (Run), rather than to the callers' step targets."""
        return self.alive and self._play

    def targets(self) -> list[int]:
        """The step targets of the callers of :meth:`run_to` still waiting."""
        return [target for target, _ in self._waiters]

    def _task_alive(self) -> bool:
        t = self.task
        return t is not None and not t.done() and not t.cancelling()

    # -- requests -----------------------------------------------------------------------------------------
    def play(self) -> None:
        """Train until paused; a pause still pending is taken back (Pause then Run acts as Run)."""
        self._play, self._pause = True, False
        if not self._task_alive():
            self._start()

    def pause(self) -> None:
        """Stop after the chunk in flight; callers of :meth:`run_to` get ``"paused"``."""
        if self._task_alive():
            self._pause = True

    def toggle(self) -> None:
        """The Run/Pause button, judged by what was last asked for, not by whether a chunk is in flight."""
        self.pause() if self.alive else self.play()

    async def run_to(self, target: int) -> Outcome:
        """Train until step ``target`` (whole chunks) or until something else stops the loop."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((int(target), future))
        self._pause = False
        if not self._task_alive():
            self._play = False
            self._start()
        return await future

    def stop(self, reason: str) -> None:
        """Cancel the task (``reason`` "reset" for a rebuild); it ends at its next await."""
        if self._task_alive():
            self.task.cancel(reason)

    # -- the loop ---------------------------------------------------------------------------------------------
    def _start(self) -> None:
        self._pause, self.error = False, None
        self.task = tasks.start(self._loop)

    def _stop_reason(self, armed: bool) -> Outcome | None:
        step = self.host.step
        if self._pause:
            return Outcome("paused", step)
        if armed and self.budget is not None and step >= self.budget:  # the budget may change while running
            return Outcome("budget", step)
        if not self._play and not self._waiters:
            return Outcome("done", step)
        return None

    async def _loop(self) -> None:
        self.host.started()
        # The budget stops the loop only if this run crosses it: Run after the budget pause trains on.
        armed = self.budget is not None and self.host.step < self.budget
        outcome = None
        try:
            await asyncio.sleep(0)
            while (outcome := self._stop_reason(armed)) is None:
                limit = self.budget - self.host.step if armed and self.budget is not None else None
                diverged = self.host.train_round(limit)
                self._release(lambda target: self.host.step >= target, Outcome("done", self.host.step))
                if diverged is not None:
                    outcome = Outcome("diverged", self.host.step, diverged)
                    break
                if (stalled := self.host.stalled()) is not None:
                    outcome = Outcome("stalled", self.host.step, stalled)
                    break
                if self.host.frame_due():
                    self.host.draw()
                await asyncio.sleep(0)  # clicks and acknowledgements are handled here
                await self.host.hold()
        except asyncio.CancelledError as e:
            reason = e.args[0] if e.args else "stopped"
            outcome = Outcome("reset" if reason == "reset" else "stopped", self.host.step, reason)
            raise
        except Exception as e:  # shown by the host, raised to the callers of run_to, never lost in the task
            self.error = e
            outcome = Outcome("error", self.host.step, f"{type(e).__name__}: {e}")
        finally:
            self._pause = False
            self.last = outcome
            self._release(lambda target: True, outcome)
            self.host.stopped(outcome)

    def _release(self, reached, outcome: Outcome) -> None:
        """Answer the callers whose target is ``reached`` with ``outcome`` (errors are raised to them)."""
        keep = []
        for target, future in self._waiters:
            if not reached(target):
                keep.append((target, future))
            elif not future.done():
                if outcome.reason == "error" and self.error is not None:
                    future.set_exception(self.error)
                else:
                    future.set_result(outcome)
        self._waiters = keep
