"""PDE problems by name. Add a PDE: write one file like ``heat.py`` and register it here."""

from __future__ import annotations

from pinnlab.problems.base import Problem, Term
from pinnlab.problems.heat import Heat1D
from pinnlab.problems.poisson import Poisson1D
from pinnlab.problems.wave import Wave1D

PROBLEMS = {"poisson": Poisson1D, "wave": Wave1D, "heat": Heat1D}


def make_problem(name: str, **kwargs) -> Problem:
    """The problem registered as ``name``, built with its keyword parameters (e.g. ``a=4``)."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; choose one of {', '.join(PROBLEMS)}")
    key = (name, tuple(sorted(kwargs.items())))
    if key not in _CACHE:  # problems are immutable: sharing one lets runs share compiled code
        _CACHE[key] = PROBLEMS[name](**kwargs)
    return _CACHE[key]


_CACHE: dict = {}


__all__ = ["PROBLEMS", "Heat1D", "Poisson1D", "Problem", "Term", "Wave1D", "make_problem"]
