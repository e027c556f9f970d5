"""1D convection u_t + beta u_x = 0 with periodic boundaries: a failure that loss weights do not fix.

Krishnapriyan et al. (NeurIPS 2021, "Characterizing possible failure modes in physics-informed neural
networks") show that a PINN learns this equation for small beta and fails for beta = 30 and above, where
the loss landscape, not the balance between terms, is the obstacle. This file is the whole problem: its
registration below makes it reachable from ``pinnlab train --problem convection`` and the lab.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from pinnlab.problems.base import Linear, Problem, Term, linear, mesh, uniform
from pinnlab.problems.registry import Entry, Recipe, register

T, X = 0, 1
PERIOD = 2 * math.pi


def Convection1D(beta: float = 30.0, n_u: int = 200, n_p: int = 100, n_r: int = 300, n_ntk: int = 100,
                 n_eval: int = 100) -> Problem:
    """u_t + beta u_x = 0 on (t, x) in [0, 1] x [0, 2 pi], u(0, x) = sin x, u(t, 0) = u(t, 2 pi).

    Exact: u = sin(x - beta t). Terms: ``u`` the initial condition, ``p`` the periodic boundary (u at
    x = 0 minus u at x = 2 pi: two points per residual, so its NTK block takes the Jacobian path), ``r``
    the PDE. Fresh uniform batches every step; inputs standardised with the exact uniform statistics.
    """
    beta = float(beta)

    def exact(p):
        return jnp.sin(p[..., X] - beta * p[..., T])

    terms = (
        linear("u", Linear(u=1.0), exact, uniform([0.0, 0.0], [0.0, PERIOD]), n_u, n_ntk),
        Term("p", lambda u, p: u(p) - u(p.at[X].add(PERIOD)), uniform([0.0, 0.0], [1.0, 0.0]), n_p, n_ntk),
        linear("r", Linear(d={T: 1.0, X: beta}), None, uniform([0.0, 0.0], [1.0, PERIOD]), n_r, n_ntk),
    )
    return Problem(
        name="convection", coords=("t", "x"), terms=terms, exact=exact,
        grid=mesh(np.linspace(0.0, 1.0, n_eval), np.linspace(0.0, PERIOD, n_eval)), grid_shape=(n_eval, n_eval),
        mean=np.asarray([0.5, PERIOD / 2]), std=np.asarray([1.0, PERIOD]) / np.sqrt(12.0), resample=True,
        default_init="glorot_normal",
        params={"beta": beta, "n_u": n_u, "n_p": n_p, "n_r": n_r, "n_ntk": n_ntk},
    )


register(Entry(
    name="convection", factory=Convection1D,
    summary="u_t + beta u_x = 0, periodic, beta=30 (Krishnapriyan et al. 2021: fails at beta >= 30, "
            "weights or not); 3x50 tanh, adam 1e-3 decaying 0.9 per 1000 steps, 2000 steps, Algorithm 1 every 100 "
            "steps",
    params_help={"beta": "convection: wave speed beta of u_t + beta u_x = 0 (default 30)"},
    param="beta",
    recipe=Recipe(width=50, depth=3, optimizer="adam", lr=1e-3, decay_steps=1000, decay_rate=0.9, steps=2000,
                  weighting="ntk", update_every=100, chunk=100),
    cli={},
    lab=dict(n_b=200, n_r=300, n_ntk=100, budget=0),  # no paper budget: it trains until paused
    lab_caption="Convection u_t + 30 u_x = 0, periodic (Krishnapriyan et al. 2021): try beta = 1, then 30, "
                "with and without the weighting",
    # the lab's 101 x 101 evaluation grid keeps a live prediction cheap; the periodic term gets half of n_b
    lab_points=lambda n_b, n_r, n_ntk: dict(n_u=n_b, n_p=max(1, n_b // 2), n_r=n_r, n_ntk=n_ntk, n_eval=101),
))
