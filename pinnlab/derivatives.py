"""Input derivatives of a scalar point function ``u: R^d -> R``, for writing PDE residuals.

Each helper returns a new point function, so residuals read like the PDE: ``d2(u, 0)(x)`` is
u_xx at x. Input standardisation lives inside the network, so the chain-rule factors (1/sigma,
1/sigma^2) of the released code come out of autodiff automatically.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

PointFn = Callable[[jax.Array], jax.Array]


def d1(u: PointFn, i: int) -> PointFn:
    """x -> du/dx_i (x)."""

    def du(x):
        e = jnp.zeros_like(x).at[i].set(1.0)
        return jax.jvp(u, (x,), (e,))[1]

    return du


def d2(u: PointFn, i: int) -> PointFn:
    """x -> d^2u/dx_i^2 (x), as a forward derivative of a forward derivative."""
    return d1(d1(u, i), i)


def laplacian(u: PointFn, dims) -> PointFn:
    """x -> sum_i d^2u/dx_i^2 (x) over the coordinates in ``dims``."""
    parts = [d2(u, i) for i in dims]
    return lambda x: sum(p(x) for p in parts)
