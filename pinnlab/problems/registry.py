"""The problem registry: each PDE file registers its factory with what the CLI and the lab need to know.

A problem's file calls :func:`register` once, at import; :mod:`pinnlab.problems` imports every module of
the package, so adding a PDE is one new file (plus its test) and the CLI (``--problem``, its parameter
options, ``--batch`` names, defaults and help) and the lab (its preset, parameter box and point counts)
derive the rest from the :class:`Entry`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from pinnlab.problems.base import Problem


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered problem.

    Attributes:
      name: the registry name (``--problem NAME``, ``problem=NAME`` in the lab).
      factory: ``factory(**parameters) -> Problem``; its float keywords are the PDE's parameters, its
        ``n_*`` keywords the point counts.
      summary: one line for ``pinnlab train --help``.
      params_help: what each float parameter means, e.g. ``{"a": "u = sin(a pi x)"}``.
      param: the one parameter the lab's box exposes.
      train: the CLI's defaults: width, depth, optimizer, lr, decay_steps, decay_rate, steps, chunk,
        weighting, update_every (``None``: once, at step 0).
      lab, lab_caption: the lab preset of the problem (:class:`pinnlab.lab.state.LabState` fields) and
        its one-line caption.
      lab_points: the factory's point-count keywords for the lab's ``(n_b, n_r, n_ntk)`` boxes.
      aliases: ``--batch`` names that are not ``n_<term>`` (e.g. Poisson's ``u`` -> ``n_b``).
    """

    name: str
    factory: Callable[..., Problem]
    summary: str
    params_help: dict[str, str]
    param: str
    train: dict[str, Any]
    lab: dict[str, Any]
    lab_caption: str
    lab_points: Callable[[int, int, int], dict[str, int]]
    aliases: dict[str, str] = dataclasses.field(default_factory=dict)

    def keywords(self) -> dict[str, inspect.Parameter]:
        return dict(inspect.signature(self.factory).parameters)

    @property
    def floats(self) -> tuple[str, ...]:
        """The factory's float parameters (its PDE parameters), in signature order."""
        return tuple(k for k, p in self.keywords().items() if isinstance(p.default, float))

    @property
    def own_probe_points(self) -> bool:
        """Whether the NTK uses its own probe points (``n_ntk``) rather than the training points."""
        return "n_ntk" in self.keywords()


ENTRIES: dict[str, Entry] = {}
TRAIN_KEYS = ("width", "depth", "optimizer", "lr", "decay_steps", "decay_rate", "steps", "chunk", "weighting",
              "update_every")


def register(entry: Entry) -> Entry:
    """Add ``entry`` to :data:`ENTRIES` (checked: its lab parameter and train defaults must be complete)."""
    if entry.param not in entry.floats:
        raise ValueError(f"problem {entry.name}: param {entry.param!r} is not a float keyword of its factory "
                         f"({', '.join(entry.floats)})")
    missing = set(TRAIN_KEYS) - set(entry.train)
    if missing:
        raise ValueError(f"problem {entry.name}: train defaults lack {sorted(missing)}")
    undocumented = set(entry.floats) - set(entry.params_help)
    if undocumented:
        raise ValueError(f"problem {entry.name}: params_help lacks {sorted(undocumented)}")
    ENTRIES[entry.name] = entry
    return entry
