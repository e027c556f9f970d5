"""The optimiser registry: a name, read by ``TrainConfig``, the CLI and the lab, for an optax factory.

A factory takes the learning rate (a float or an optax schedule) and returns an
``optax.GradientTransformation``; :func:`register` adds one (e.g. ``register("lion", optax.lion)``), and
``--optimizer`` and the lab's dropdown offer it at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import optax

Factory = Callable[[optax.ScalarOrSchedule], optax.GradientTransformation]

OPTIMIZERS: dict[str, Factory] = {"sgd": optax.sgd, "adam": optax.adam}


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
