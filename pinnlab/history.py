"""The record of a run, and its safe on-disk form (``history.json`` + ``history.npz``, no pickle)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

FORMAT = "pinnlab-history/1"


@dataclasses.dataclass
class Snapshot:
    """What one call of :meth:`Trainer.advance` produced.

    ``steps`` are the optimiser steps (0-based) at which each row's ``losses``, ``weights`` and
    ``traces`` were used; those have one row per step and one column per term. ``rel_l2``,
    ``param_drift``, ``spectra`` and ``ntk_drift`` are filled when measured at the end of the
    snapshot. ``diverged`` is the first step whose loss was non-finite, if any.
    """

    steps: np.ndarray
    losses: np.ndarray
    weights: np.ndarray
    traces: np.ndarray
    diverged: int | None = None
    rel_l2: float | None = None
    param_drift: float | None = None
    spectra: dict | None = None
    ntk_drift: float | None = None

    @property
    def step(self) -> int:
        return int(self.steps[-1]) if len(self.steps) else 0


@dataclasses.dataclass
class History:
    """All of a run: per-step curves, evaluations, spectra, the final prediction and the config."""

    config: dict
    terms: tuple[str, ...]
    coords: tuple[str, ...]
    grid: np.ndarray
    grid_shape: tuple[int, ...]
    exact: np.ndarray
    steps: list = dataclasses.field(default_factory=list)
    losses: list = dataclasses.field(default_factory=list)
    weights: list = dataclasses.field(default_factory=list)
    traces: list = dataclasses.field(default_factory=list)
    eval_step: list = dataclasses.field(default_factory=list)
    rel_l2: list = dataclasses.field(default_factory=list)
    param_drift: list = dataclasses.field(default_factory=list)
    spectra_step: list = dataclasses.field(default_factory=list)
    spectra: list = dataclasses.field(default_factory=list)
    ntk_drift: list = dataclasses.field(default_factory=list)
    events: list = dataclasses.field(default_factory=list)
    prediction: np.ndarray | None = None
    seconds: float = 0.0
    status: str = "running"
    message: str = ""

    @classmethod
    def empty(cls, problem, net_config, train_config, num_params: int) -> History:
        import jax.numpy as jnp

        config = {
            "problem": problem.name, "problem_params": problem.params,
            "net": dataclasses.asdict(net_config), "train": dataclasses.asdict(train_config),
            "num_params": num_params,
        }
        return cls(config=json.loads(json.dumps(config)), terms=problem.term_names, coords=problem.coords,
                   grid=np.asarray(problem.grid), grid_shape=tuple(problem.grid_shape),
                   exact=np.asarray(problem.exact(jnp.asarray(problem.grid))))

    # -- recording ----------------------------------------------------------------------------
    def append(self, snap: Snapshot) -> None:
        if len(snap.steps):
            self.steps.append(snap.steps)
            self.losses.append(snap.losses)
            self.weights.append(snap.weights)
            self.traces.append(snap.traces)

    def add_event(self, step: int, field: str, value) -> None:
        """A live control changed at ``step`` (``field`` e.g. ``"rule"``), kept in order for the report."""
        self.events.append({"step": int(step), "field": str(field), "value": value})

    def truncate(self, step: int) -> None:
        """Forget everything after ``step``: per-step rows from ``step`` on, evaluations and spectra past it
        (a rewind after divergence; training from ``step`` records them again)."""
        if self.steps:
            keep = np.concatenate(self.steps) < step
            for name in ("steps", "losses", "weights", "traces"):
                full = np.concatenate(getattr(self, name))[keep]
                setattr(self, name, [full] if len(full) else [])
        for names in (("eval_step", "rel_l2", "param_drift"), ("spectra_step", "spectra", "ntk_drift")):
            kept = [i for i, s in enumerate(getattr(self, names[0])) if s <= step]
            for name in names:
                values = getattr(self, name)
                setattr(self, name, [values[i] for i in kept])

    def rows(self) -> int:
        """How many per-step rows are recorded."""
        return sum(len(part) for part in self.steps)

    def thin_rows(self) -> None:
        """Keep every other per-step row and the newest (bounds the memory of a run that goes on for hours)."""
        for name in ("steps", "losses", "weights", "traces"):
            if getattr(self, name):
                full = np.concatenate(getattr(self, name))
                keep = np.zeros(len(full), bool)
                keep[::2] = keep[-1] = True
                setattr(self, name, [full[keep]])

    def thin_records(self, limit: int) -> list[str]:
        """Halve the spectra and the evaluations (the first and newest kept) wherever more than ``limit``
        are held; returns the groups thinned (``"spectra"``, ``"evaluations"``)."""
        thinned = []
        for group, names in (("spectra", ("spectra_step", "spectra", "ntk_drift")),
                             ("evaluations", ("eval_step", "rel_l2", "param_drift"))):
            n = len(getattr(self, names[0]))
            if n > limit:
                keep = [0, *range(2, n - 1, 2), n - 1]
                for name in names:
                    values = getattr(self, name)
                    setattr(self, name, [values[i] for i in keep])
                thinned.append(group)
        return thinned

    def add_eval(self, step: int, rel_l2: float, drift: float) -> None:
        self.eval_step.append(step)
        self.rel_l2.append(rel_l2)
        self.param_drift.append(drift)

    def add_spectra(self, step: int, eigenvalues: dict, drift: float) -> None:
        self.spectra_step.append(step)
        self.spectra.append(eigenvalues)
        self.ntk_drift.append(drift)

    def finish(self, prediction, seconds: float, status: str, message: str) -> None:
        self.prediction, self.seconds, self.status, self.message = prediction, seconds, status, message

    # -- views --------------------------------------------------------------------------------
    def curve(self, name: str) -> np.ndarray:
        """Per-step array ``steps`` (n,) or ``losses``/``weights``/``traces`` (n, m)."""
        parts = getattr(self, name)
        if not parts:
            return np.zeros((0,) if name == "steps" else (0, len(self.terms)))
        return np.concatenate(parts)

    @property
    def final(self) -> dict:
        """The numbers a summary needs: steps taken, error, last weights and traces per term."""
        steps, weights, traces = self.curve("steps"), self.curve("weights"), self.curve("traces")
        last = lambda a: {t: float(v) for t, v in zip(self.terms, a[-1])} if len(a) else {}  # noqa: E731
        return {
            "steps": int(steps[-1]) + 1 if len(steps) else 0,  # steps taken: rows are 0-based step indices
            "rel_l2": self.rel_l2[-1] if self.rel_l2 else None,
            "weights": last(weights), "traces": last(traces),
            "losses": last(self.curve("losses")),
            "seconds": self.seconds, "status": self.status, "message": self.message,
        }

    # -- files --------------------------------------------------------------------------------
    def save(self, directory) -> Path:
        """Write ``history.json`` and ``history.npz`` into ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {name: self.curve(name) for name in ("steps", "losses", "weights", "traces")}
        arrays.update(grid=self.grid, exact=self.exact, eval_step=np.asarray(self.eval_step, np.int64),
                      rel_l2=np.asarray(self.rel_l2, np.float64), param_drift=np.asarray(self.param_drift),
                      spectra_step=np.asarray(self.spectra_step, np.int64),
                      ntk_drift=np.asarray(self.ntk_drift, np.float64))
        if self.prediction is not None:
            arrays["prediction"] = np.asarray(self.prediction)
        blocks = sorted(self.spectra[0]) if self.spectra else []
        for name in blocks:
            arrays[f"spectra/{name}"] = np.stack([s[name] for s in self.spectra])
        meta = {"format": FORMAT, "config": self.config, "terms": list(self.terms), "coords": list(self.coords),
                "grid_shape": list(self.grid_shape), "seconds": self.seconds, "status": self.status,
                "message": self.message, "spectra_blocks": blocks, "events": self.events}
        _atomic_write(directory / "history.npz", lambda f: np.savez_compressed(f, **arrays))
        _atomic_write(directory / "history.json", lambda f: f.write(json.dumps(meta, indent=2).encode()))
        return directory

    @classmethod
    def load(cls, directory) -> History:
        directory = Path(directory)
        meta = json.loads((directory / "history.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{directory}: not a pinnlab history (format {meta.get('format')!r}, expected {FORMAT!r})")
        with np.load(directory / "history.npz", allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        spectra = [{name: a[f"spectra/{name}"][i] for name in meta["spectra_blocks"]}
                   for i in range(len(a["spectra_step"]))]
        one = lambda name: [a[name]] if len(a[name]) else []  # noqa: E731
        return cls(config=meta["config"], terms=tuple(meta["terms"]), coords=tuple(meta["coords"]),
                   grid=a["grid"], grid_shape=tuple(meta["grid_shape"]), exact=a["exact"],
                   steps=one("steps"), losses=one("losses"), weights=one("weights"), traces=one("traces"),
                   eval_step=a["eval_step"].tolist(), rel_l2=a["rel_l2"].tolist(),
                   param_drift=a["param_drift"].tolist(), spectra_step=a["spectra_step"].tolist(),
                   spectra=spectra, ntk_drift=a["ntk_drift"].tolist(), prediction=a.get("prediction"),
                   seconds=meta["seconds"], status=meta["status"], message=meta["message"],
                   events=list(meta.get("events", [])))


def _atomic_write(path: Path, write) -> None:
    """Write to a temporary file and rename, so a crash never leaves a half-written history."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)
