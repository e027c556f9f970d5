"""1D Poisson equation u_xx = f on [0, 1] (paper Model Problems 7.1 and 7.2)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from pinnlab.derivatives import d2
from pinnlab.problems.base import Problem, Term, fixed


def Poisson1D(a: float = 4.0, n_b: int = 100, n_r: int = 100, n_eval: int = 1000) -> Problem:
    """u_xx = f on [0, 1] with exact solution u = sin(a pi x) and u = g on {0, 1}.

    As in the released code: ``n_r`` equispaced collocation points (endpoints included), the
    boundary term on ``n_b // 2`` copies of x = 0 and the rest at x = 1, fixed full batches, inputs
    standardised with the mean and population std of the collocation points, LeCun-normal weights.
    a = 1 is Model Problem 7.1 (Figs. 1-3), a = 4 is Model Problem 7.2 (Figs. 4-5).
    """
    a = float(a)
    if not np.isfinite(a):
        raise ValueError(f"a must be a finite number, got {a!r}")
    for name, n in (("n_b", n_b), ("n_r", n_r), ("n_eval", n_eval)):
        if n < 2:
            raise ValueError(f"{name} must be at least 2, got {n!r}")

    def exact(x):
        return jnp.sin(a * jnp.pi * x[..., 0])

    def forcing(x):
        return -((a * jnp.pi) ** 2) * jnp.sin(a * jnp.pi * x[..., 0])

    x_b = np.concatenate([np.zeros(n_b // 2), np.ones(n_b - n_b // 2)])[:, None]
    x_r = np.linspace(0.0, 1.0, n_r)[:, None]
    terms = (
        Term("u", lambda u, x: u(x) - exact(x), fixed(x_b), n_b, n_b, operator={"u": 1.0}),
        Term("r", lambda u, x: d2(u, 0)(x) - forcing(x), fixed(x_r), n_r, n_r, operator={"dd0": 1.0}),
    )
    return Problem(
        name="poisson",
        coords=("x",),
        terms=terms,
        exact=exact,
        grid=np.linspace(0.0, 1.0, n_eval, dtype=np.float32)[:, None],
        grid_shape=(n_eval,),
        mean=x_r.mean(0),
        std=x_r.std(0),
        resample=False,
        default_init="lecun_normal",
        params={"a": a, "n_b": n_b, "n_r": n_r},
    )
