"""Viscous Burgers u_t + u u_x = nu u_xx: a nonlinear PDE, whose NTK moves during training.

Its residual is not linear in the network, so the term states a residual only and its NTK block takes
the Jacobian path (:mod:`pinnlab.ntk`); the linear terms (initial and boundary values) keep their
operator. The exact solution is the viscous shock travelling at speed c,

    u(t, x) = c - a tanh(a (x - c t) / (2 nu)),

from u = c + a on the left to c - a on the right over a front of width ~ 2 nu / a. This file is the whole
problem: its registration makes it reachable from ``pinnlab train --problem burgers`` and the lab.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from pinnlab.derivatives import d1, d2
from pinnlab.problems.base import Linear, Problem, Term, linear, mesh, stacked, uniform
from pinnlab.problems.registry import Entry, Recipe, register

T, X = 0, 1
AMPLITUDE, SPEED = 1.0, 0.5


def Burgers1D(nu: float = 0.05, n_u: int = 200, n_r: int = 300, n_ntk: int = 100, n_eval: int = 100) -> Problem:
    """u_t + u u_x = nu u_xx on (t, x) in [0, 1] x [-1, 1]; the initial and boundary values of the
    travelling shock above (a = 1, c = 0.5). Terms: ``u`` (t = 0 and x = +-1), ``r`` (the PDE)."""
    nu = float(nu)
    if not (np.isfinite(nu) and nu > 0):
        raise ValueError(f"nu must be a positive number, got {nu!r}")

    def exact(p):
        return SPEED - AMPLITUDE * jnp.tanh(AMPLITUDE * (p[..., X] - SPEED * p[..., T]) / (2.0 * nu))

    def residual(u, x):
        return d1(u, T)(x) + u(x) * d1(u, X)(x) - nu * d2(u, X)(x)

    boundary = stacked((uniform([0.0, -1.0], [0.0, 1.0]), 1 / 2), (uniform([0.0, -1.0], [1.0, -1.0]), 1 / 4),
                       (uniform([0.0, 1.0], [1.0, 1.0]), 1 / 4))
    terms = (
        linear("u", Linear(u=1.0), exact, boundary, n_u, n_ntk),
        Term("r", residual, uniform([0.0, -1.0], [1.0, 1.0]), n_r, n_ntk),
    )
    return Problem(
        name="burgers", coords=("t", "x"), terms=terms, exact=exact,
        grid=mesh(np.linspace(0.0, 1.0, n_eval), np.linspace(-1.0, 1.0, n_eval)), grid_shape=(n_eval, n_eval),
        mean=np.asarray([0.5, 0.0]), std=np.asarray([1.0, 2.0]) / np.sqrt(12.0), resample=True,
        default_init="glorot_normal",
        params={"nu": nu, "n_u": n_u, "n_r": n_r, "n_ntk": n_ntk},
    )


register(Entry(
    name="burgers", factory=Burgers1D,
    summary="viscous Burgers u_t + u u_x = nu u_xx, nu=0.05, a travelling shock (nonlinear: its NTK moves, "
            "the Jacobian path); 3x50 tanh, adam 1e-3 decaying 0.9 per 1000 steps, 2000 steps, Algorithm 1 every "
            "100 steps",
    params_help={"nu": "burgers: viscosity (default 0.05; the front is ~2 nu wide)"},
    param="nu",
    recipe=Recipe(width=50, depth=3, optimizer="adam", lr=1e-3, decay_steps=1000, decay_rate=0.9, steps=2000,
                  weighting="ntk", update_every=100, chunk=100),
    cli={},
    lab=dict(n_b=200, n_r=300, n_ntk=100, budget=0),  # no paper budget: it trains until paused
    lab_caption="Burgers u_t + u u_x = 0.05 u_xx, a travelling shock (nonlinear: watch the NTK move), 3×50 tanh, "
                "Adam 1e-3",
    lab_points=lambda n_b, n_r, n_ntk: dict(n_u=n_b, n_r=n_r, n_ntk=n_ntk, n_eval=101),
))
