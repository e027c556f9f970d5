"""1D heat equation u_t = k u_xx on (x, t) in (0, 1)^2: a PDE beyond the paper, with a 2D domain.

It shows what adding a PDE takes: an exact solution, a few samplers, one linear operator per term (from
which its residual and its structured NTK follow) and its registration (CLI and lab settings) at the end.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from pinnlab.problems.base import Linear, Problem, linear, space_time, stacked, uniform
from pinnlab.problems.registry import Entry, Recipe, register

T, X = 0, 1


def Heat1D(k: float = 0.1, n_u: int = 150, n_r: int = 300, n_ntk: int = 150, n_eval: int = 100) -> Problem:
    """u_t = k u_xx, u(0,t) = u(1,t) = 0, u(x,0) = sin(pi x) + 0.5 sin(3 pi x).

    Exact: sum over the two modes of exp(-k (n pi)^2 t) sin(n pi x).
    """
    k = float(k)
    if not (np.isfinite(k) and k > 0):
        raise ValueError(f"k must be a positive number, got {k!r}")

    def exact(p):
        t, x = p[..., T], p[..., X]
        mode = lambda n, amp: amp * jnp.exp(-k * (n * jnp.pi) ** 2 * t) * jnp.sin(n * jnp.pi * x)  # noqa: E731
        return mode(1, 1.0) + mode(3, 0.5)

    boundary = stacked(
        (uniform([0.0, 0.0], [0.0, 1.0]), 1 / 3),
        (uniform([0.0, 0.0], [1.0, 0.0]), 1 / 3),
        (uniform([0.0, 1.0], [1.0, 1.0]), 1 / 3),
    )
    terms = (
        linear("u", Linear(u=1.0), exact, boundary, n_u, n_ntk),
        linear("r", Linear(d={T: 1.0}, dd={X: -k}), None, uniform([0.0, 0.0], [1.0, 1.0]), n_r, n_ntk),
    )
    return Problem(
        name="heat",
        terms=terms,
        exact=exact,
        **space_time(n_eval),
        default_init="glorot_normal",
        params={"k": k, "n_u": n_u, "n_r": n_r, "n_ntk": n_ntk},
    )


register(Entry(
    name="heat", factory=Heat1D,
    summary="u_t = k u_xx, k=0.1; 3x50 tanh, adam 1e-3 decaying 0.9 per 1000 steps, 2000 steps, Algorithm 1 "
            "every 100 steps",
    params_help={"k": "heat: diffusivity (default 0.1)"},
    param="k",
    recipe=Recipe(width=50, depth=3, optimizer="adam", lr=1e-3, decay_steps=1000, decay_rate=0.9, steps=2000,
                  weighting="ntk", update_every=100, chunk=100),
    cli={},
    lab=dict(decay=1.0, n_b=150, n_r=300, n_ntk=100, budget=0),  # no paper budget: it trains until paused
    lab_caption="Heat u_t = 0.1 u_xx (beyond the paper), 3×50 tanh, Adam 1e-3",
    lab_points=lambda n_b, n_r, n_ntk: dict(n_u=n_b, n_r=n_r, n_ntk=n_ntk, n_eval=101),
))
