"""pinnlab: why physics-informed neural networks fail to train, seen through the neural tangent kernel.

The core (problems, nets, ntk, weighting, training, history) needs only jax, flax, optax and numpy.
Plots, reports and widgets are imported lazily, on first use.
"""

from pinnlab import derivatives, ensemble, ntk, spectrum, weighting
from pinnlab.history import History, Snapshot
from pinnlab.nets import MLP, Net, NetConfig, convention, make_net
from pinnlab.problems import PROBLEMS, Heat1D, Poisson1D, Problem, Term, Wave1D, make_problem
from pinnlab.training import TrainConfig, Trainer, ntk_weights_at_init

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Lab":  # the dashboard (ipywidgets, plotly) is imported on first use only
        from pinnlab.lab import Lab

        return Lab
    raise AttributeError(f"module 'pinnlab' has no attribute {name!r}")

__all__ = [
    "MLP", "PROBLEMS", "Heat1D", "History", "Net", "NetConfig", "Poisson1D", "Problem", "Snapshot",
    "Term", "TrainConfig", "Trainer", "Wave1D", "convention", "derivatives", "make_net", "make_problem",
    "ensemble", "ntk", "ntk_weights_at_init", "spectrum", "weighting",
]
