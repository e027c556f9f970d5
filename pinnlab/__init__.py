"""pinnlab: why physics-informed neural networks fail to train, seen through the neural tangent kernel.

The core (problems, nets, ntk, weighting, training, history) needs only jax, flax, optax and numpy.
Every name here is imported on first use, so ``import pinnlab`` (and the ``pinnlab`` command before it
parses its arguments) costs nothing; plots, reports and widgets load only when asked for.
"""

import importlib

__version__ = "0.1.0"

_NAMES = {
    "History": "history", "Snapshot": "history",
    "MLP": "nets", "Net": "nets", "NetConfig": "nets", "convention": "nets", "make_net": "nets",
    "PROBLEMS": "problems", "Heat1D": "problems", "Poisson1D": "problems", "Problem": "problems",
    "Term": "problems", "Wave1D": "problems", "make_problem": "problems",
    "TrainConfig": "training", "Trainer": "training", "ntk_weights_at_init": "training",
    "Lab": "lab",  # the dashboard (ipywidgets, plotly)
}
_MODULES = ("derivatives", "ensemble", "ntk", "spectrum", "weighting")

__all__ = sorted([*_NAMES, *_MODULES])


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"pinnlab.{_NAMES[name]}"), name)
    if name in _MODULES:
        return importlib.import_module(f"pinnlab.{name}")
    raise AttributeError(f"module 'pinnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
