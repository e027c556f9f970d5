"""The optimiser registry: a name, read by ``TrainConfig``, the CLI and the lab, for an optax factory.

A factory takes the learning rate (a float or an optax schedule) and returns an
``optax.GradientTransformation``; :func:`register` adds one (e.g. ``register("lion", optax.lion)``), and
``--optimizer`` and the lab's dropdown offer it at once. ``"lm"`` is the one that is not a gradient
transformation: the kernel solve of :mod:`pinnlab.gauss_newton`, which steps on residuals and K.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import optax

from pinnlab.gauss_newton import LevenbergMarquardt

Factory = Callable[[optax.ScalarOrSchedule], optax.GradientTransformation | LevenbergMarquardt]


def lm(lr: optax.ScalarOrSchedule) -> LevenbergMarquardt:
    """The kernel solve (:mod:`pinnlab.gauss_newton`); ``lr`` scales its step (1: the Gauss-Newton step), a
    constant or a schedule of the step (a decaying scale averages over resampled batches)."""
    return LevenbergMarquardt(lr if callable(lr) else float(lr))


def lm_cg(lr: optax.ScalarOrSchedule) -> LevenbergMarquardt:
    """The kernel solve without forming K: conjugate gradients on K v products (for N beyond a dense solve)."""
    return lm(lr)._replace(solver="cg")


OPTIMIZERS: dict[str, Factory] = {"sgd": optax.sgd, "adam": optax.adam, "lm": lm, "lm_cg": lm_cg}

# What an optimiser changes in a problem's recipe where the user did not say (the CLI reads it): the
# kernel solve takes whole steps, each worth many gradient steps, so fewer of them and shorter chunks.
_SOLVE = dict(lr=1.0, decay_steps=None, decay_rate=1.0, steps=1000, chunk=10)
PRESETS: dict[str, dict] = {"lm": _SOLVE, "lm_cg": _SOLVE}


def register(name: str, factory: Factory) -> None:
    """Make ``factory`` the optimiser called ``name``."""
    if not isinstance(name, str) or not name or not callable(factory):
        raise ValueError(f"register needs a non-empty name and a callable factory, got {name!r}, {factory!r}")
    OPTIMIZERS[name] = factory
    make.cache_clear()


@functools.lru_cache(maxsize=32)  # one transformation per setting: its jitted chunks are shared
def make(name: str, lr: float, decay_steps: int | None, decay_rate: float) -> optax.GradientTransformation:
    """The optimiser ``name`` with a constant ``lr``, or ``lr * decay_rate ** (step / decay_steps)``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    schedule = optax.exponential_decay(lr, decay_steps, decay_rate) if decay_steps is not None else lr
    return OPTIMIZERS[name](schedule)
