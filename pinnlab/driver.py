"""The host loop of a training run: which steps a chunk ends on, when the run is measured, when it stops.

:class:`~pinnlab.training.Trainer` and :class:`~pinnlab.ensemble.Ensemble` both train through
:func:`drive`, so a lone run and every member of an ensemble are measured on the same steps: the
relative L2 error at step 0, every :func:`eval_every` steps and at the end; the NTK spectra exactly on
``config.spectra_at``. Inside a chunk both run one jitted body and one divergence policy
(:mod:`pinnlab.divergence`); the lab drives ``Trainer.advance`` itself, by its own time budgets.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Protocol

from pinnlab import checks


class Halt(NamedTuple):
    """Why a run stops before its end: the History's ``status`` and ``message``, and whether the state it
    stops at is measured (a diverged run's kept state is not: its rows end there)."""

    status: str
    message: str
    evaluate: bool


class Driven(Protocol):
    """What :func:`drive` needs of a run."""

    config: object  # a TrainConfig: steps, chunk, eval_every, spectra_at

    @property
    def step(self) -> int: ...

    def started(self) -> bool:
        """Whether step 0 has been measured already."""

    def advance(self, n: int): ...

    def evaluate(self, snap=None): ...

    def spectra(self, snap=None): ...

    def halt(self, snap) -> Halt | None:
        """Why the run must stop after ``snap`` (``None``: go on)."""

    def finish(self, halt: Halt | None) -> None:
        """Close the run's record (``halt``: why it stopped early, ``None``: it reached its end)."""


def eval_every(config, steps: int) -> int:
    """Steps between evaluations: ``config.eval_every``, or ~50 evaluations over ``steps``, whole chunks."""
    chunk = config.chunk
    return config.eval_every or max(chunk, chunk * round(steps / 50 / chunk))


def drive(run: Driven, steps: int | None = None) -> Iterator:
    """Train ``run`` for ``steps`` (default: its config's) and yield its snapshot after every chunk.

    A chunk ends early on the next evaluation step and the next ``spectra_at`` step, so measurements fall
    exactly on them. The run is finished (``run.finish``) before its last snapshot is yielded.
    """
    if steps is not None:  # 2.5 would never be reached; a bool is not a count
        steps = checks.integer("steps", steps, 0, checks.MAX_STEPS - run.step)
    end = run.step + (run.config.steps if steps is None else steps)
    every = eval_every(run.config, end - run.step)
    spectra_at = sorted(s for s in set(run.config.spectra_at) if run.step <= s <= end)
    if run.step == 0 and not run.started():
        run.evaluate()
        if spectra_at and spectra_at[0] == 0:
            run.spectra()
    while run.step < end:
        stops = [end, run.step + run.config.chunk, (run.step // every + 1) * every]
        stops += [s for s in spectra_at if s > run.step]
        snap = run.advance(min(stops) - run.step)
        halt = run.halt(snap)
        measure = halt is None or halt.evaluate
        if measure and (run.step % every == 0 or run.step == end or halt is not None):
            run.evaluate(snap)
        if measure and run.step in spectra_at:
            run.spectra(snap)
        if halt is not None or run.step >= end:
            run.finish(halt)
            yield snap
            return
        yield snap
    run.finish(None)  # nothing to train (steps=0, or already at the end)
