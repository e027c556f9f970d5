"""PDE problems by name. Add a PDE: write one file like ``heat.py`` that ends by registering it.

Every module of this package is imported here, so a new file registers itself: the CLI and the lab read
:data:`ENTRIES` (see :mod:`pinnlab.problems.registry`) and need no edit.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from pinnlab import checks
from pinnlab.problems.base import Problem, Term
from pinnlab.problems.heat import Heat1D
from pinnlab.problems.poisson import Poisson1D
from pinnlab.problems.registry import ENTRIES, Entry
from pinnlab.problems.wave import Wave1D

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
# Listings show the paper's problems first, then the others by name.
_FIRST = ("poisson", "wave", "heat")
for _name in [*_FIRST, *sorted(set(ENTRIES) - set(_FIRST))]:
    ENTRIES[_name] = ENTRIES.pop(_name)

PROBLEMS = {name: entry.factory for name, entry in ENTRIES.items()}


def make_problem(name: str, **kwargs) -> Problem:
    """The problem registered as ``name``, built with its keyword parameters (e.g. ``a=4``).

    Each keyword is checked against the type of its default: counts (``n_*``) are integers in
    1..:data:`~pinnlab.checks.MAX_POINTS`, parameters finite numbers; a problem whose exact solution is
    not finite on its grid (e.g. ``a=1e300``) is refused.
    """
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; choose one of {', '.join(PROBLEMS)}")
    kwargs = _checked(name, kwargs)
    key = (name, tuple(sorted(kwargs.items())))
    if key not in _CACHE:  # problems are immutable: sharing one lets runs share compiled code
        try:
            problem = PROBLEMS[name](**kwargs)
        except (OverflowError, FloatingPointError, np.linalg.LinAlgError) as e:  # e.g. c**2 for c = 1e300
            raise ValueError(f"problem {name} with {kwargs} cannot be built ({type(e).__name__}: {e}); "
                             "choose smaller parameters") from None
        _check_float32(problem, kwargs)
        _CACHE[key] = problem
    return _CACHE[key]


def _check_float32(problem: Problem, kwargs: dict) -> None:
    """Refuse a problem that overflows float32 (the nets train in it) before any training: its exact solution on
    the grid, its terms' coefficients, and each term's loss at u = 0 (its forcing, squared) on grid points."""
    too_big = [t.name for t in problem.terms if t.operator and max(map(abs, t.operator.values())) > checks.FLOAT32_MAX]
    grid = jnp.asarray(problem.grid, jnp.float32)
    with warnings.catch_warnings():  # JAX warns when a constant overflows in its cast: the overflow is reported below
        warnings.simplefilter("ignore", RuntimeWarning)
        exact_finite, losses = _overflow_probe(problem, grid, grid[:: max(1, len(grid) // 64)])
    if not bool(exact_finite):
        raise ValueError(f"problem {problem.name} with {kwargs} has a non-finite exact solution on its grid; "
                         "choose smaller parameters")
    too_big += [t.name for t, loss in zip(problem.terms, np.asarray(losses)) if not np.isfinite(loss)]
    if too_big:
        raise ValueError(f"problem {problem.name} with {kwargs}: term {too_big[0]!r} overflows float32 (its "
                         "coefficients, or its loss at u = 0, pass 3.4e38); choose smaller parameters")


@functools.partial(jax.jit, static_argnums=0)  # one compile per problem: op by op, this cost 0.5-1.2 s
def _overflow_probe(problem: Problem, grid: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    zero = lambda p, y: 0.0 * y[0]  # noqa: E731
    return jnp.all(jnp.isfinite(problem.exact(grid))), jnp.stack([t.loss(zero, None, x) for t in problem.terms])


def _checked(name: str, kwargs: dict) -> dict:
    """Keywords of the problem function, each checked by the type of its default."""
    params = inspect.signature(PROBLEMS[name]).parameters
    out = {}
    for key, value in kwargs.items():
        if key not in params:
            raise ValueError(f"problem {name} has no parameter {key!r}; its parameters: {', '.join(params)}")
        if isinstance(params[key].default, int):
            out[key] = checks.integer(key, value, 1, checks.MAX_POINTS)
        else:
            out[key] = checks.float32_number(key, value)
    return out


_CACHE: dict = {}


__all__ = ["ENTRIES", "PROBLEMS", "Entry", "Heat1D", "Poisson1D", "Problem", "Term", "Wave1D", "make_problem"]
