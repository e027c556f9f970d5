"""The host loop shared by Trainer and Ensemble (pinnlab.driver), on a run with no JAX in it."""

from types import SimpleNamespace

import pytest

from pinnlab import driver


class FakeRun:
    """Records what the driver asks of it; diverges or stalls at chosen steps."""

    def __init__(self, steps=20, chunk=5, eval_every=0, spectra_at=(), diverge_at=None, stall_at=None):
        self.config = SimpleNamespace(steps=steps, chunk=chunk, eval_every=eval_every, spectra_at=spectra_at)
        self.step, self.diverge_at, self.stall_at = 0, diverge_at, stall_at
        self.advanced, self.evaluated, self.spectra_steps, self.finished = [], [], [], []

    def started(self):
        return bool(self.evaluated)

    def advance(self, n):
        self.advanced.append((self.step, n))
        self.step += n
        return SimpleNamespace(end=self.step)

    def evaluate(self, snap=None):
        self.evaluated.append(self.step)

    def spectra(self, snap=None):
        self.spectra_steps.append(self.step)

    def halt(self, snap):
        if self.diverge_at is not None and self.step >= self.diverge_at:
            return driver.Halt("diverged", "boom", evaluate=False)
        if self.stall_at is not None and self.step >= self.stall_at:
            return driver.Halt("completed", "stalled", evaluate=True)
        return None

    def finish(self, halt):
        self.finished.append((self.step, halt))


def test_measurements_fall_exactly_on_their_steps():
    run = FakeRun(steps=20, chunk=5, eval_every=10, spectra_at=(0, 7, 15, 99))
    snaps = list(driver.drive(run))
    assert run.evaluated == [0, 10, 20]
    assert run.spectra_steps == [0, 7, 15]  # 99 is past the end
    assert [s.end for s in snaps] == [5, 7, 10, 15, 20]  # chunks cut at 7 (spectra), never longer than 5
    assert run.finished == [(20, None)]


def test_default_cadence_is_about_fifty_evaluations_in_whole_chunks():
    assert driver.eval_every(SimpleNamespace(chunk=10, eval_every=0), 10_000) == 200
    assert driver.eval_every(SimpleNamespace(chunk=100, eval_every=0), 1_000) == 100  # never under a chunk
    assert driver.eval_every(SimpleNamespace(chunk=10, eval_every=30), 10_000) == 30


def test_a_halt_stops_after_its_chunk_and_finishes_before_the_last_snapshot():
    run = FakeRun(steps=50, chunk=5, diverge_at=12)
    gen = driver.drive(run)
    ends = []
    for snap in gen:
        ends.append(snap.end)
        if snap.end == 15:
            assert run.finished and run.finished[0][1].status == "diverged"  # finished before it is yielded
    assert ends == [5, 10, 15]
    assert 15 not in run.evaluated  # a diverged run's kept state is not measured


def test_a_stall_is_measured_where_it_stops():
    run = FakeRun(steps=50, chunk=5, eval_every=20, stall_at=7)
    list(driver.drive(run))
    assert run.evaluated == [0, 10] and run.finished[0][0] == 10


@pytest.mark.parametrize("steps", [0, None])
def test_a_second_call_continues_without_measuring_step_zero_again(steps):
    run = FakeRun(steps=10, chunk=5, eval_every=5)
    list(driver.drive(run))
    list(driver.drive(run, steps))
    assert run.evaluated == ([0, 5, 10] if steps == 0 else [0, 5, 10, 15, 20])
    assert len(run.finished) == 2
