"""The linearised PINN: the network's residuals replaced by their first-order Taylor expansion in the
parameters at ``theta_0``,

    r_lin(theta) = r(theta_0) + J(theta_0) (theta - theta_0),

trained like the real network (the same optimiser, weights and points). ``jax.linearize`` gives the
Jacobian-vector product once, so J is never formed, whatever the width. Under gradient descent on the
weighted mean-squared loss ``L = sum_i lambda_i s_i mean(r_i^2)`` the linearised residuals follow

    r_{t+1} = (I - eta K D) r_t,    K = J J^T,    D = diag(2 lambda_i s_i / n_i) per row,

exactly (:func:`gd_residuals`): ``K D`` is the paper's weighted kernel K-tilde in pinnlab's mean-loss
convention. The distance between the real and the linearised run is what the NTK theory says vanishes
as the width grows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pinnlab.problems.base import Term


def stacked_residuals(apply, terms: Sequence[Term], params, batches) -> jax.Array:
    """Every term's residuals at its batch, stacked in term order ``(N,)``."""
    return jnp.concatenate([t.residuals(apply, params, x) for t, x in zip(terms, batches, strict=True)])


def row_factors(terms: Sequence[Term], batches, weights) -> jax.Array:
    """``D``'s diagonal: ``2 lambda_i s_i / n_i`` for every row of term i (the loss's gradient is J^T D r)."""
    return jnp.concatenate([jnp.full(len(x), 2.0 * w * t.scale / len(x))
                            for t, x, w in zip(terms, batches, weights, strict=True)])


class Linearized(NamedTuple):
    """``residuals(theta)``: the linearised residuals (N,); ``r0``: those at ``theta_0``; ``params0``."""

    residuals: object
    r0: jax.Array
    params0: object


def linearize(apply, terms: Sequence[Term], params0, batches) -> Linearized:
    """The linearised residual map at ``params0`` (one forward pass, then one JVP per evaluation)."""
    batches = [jnp.asarray(x) for x in batches]
    r0, jvp = jax.linearize(lambda p: stacked_residuals(apply, terms, p, batches), params0)

    def residuals(params):
        return r0 + jvp(jax.tree.map(jnp.subtract, params, params0))

    return Linearized(jax.tree_util.Partial(residuals), r0, params0)


def loss(lin: Linearized, terms: Sequence[Term], batches, weights, params) -> jax.Array:
    """The weighted loss of the linearised residuals, ``sum_i lambda_i s_i mean(r_lin,i^2)``."""
    r = lin.residuals(params)
    ends = np.cumsum([0] + [len(x) for x in batches])
    return sum(w * t.scale * jnp.mean(r[a:b] ** 2)
               for t, w, a, b in zip(terms, weights, ends[:-1], ends[1:], strict=True))


def train(lin: Linearized, terms: Sequence[Term], batches, weights, optimizer: optax.GradientTransformation,
          steps: int) -> tuple[object, jax.Array]:
    """``steps`` optimiser steps on the linearised loss from ``params0``: the final parameters and the
    linearised residuals at every step, ``(steps + 1, N)`` (row 0: ``r0``)."""
    weights = jnp.asarray(weights)
    grad = jax.grad(lambda p: loss(lin, terms, batches, weights, p))

    def step(carry, _):
        params, state = carry
        updates, state = optimizer.update(grad(params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), lin.residuals(params)

    (params, _), rs = jax.lax.scan(step, (lin.params0, optimizer.init(lin.params0)), None, length=steps)
    return params, jnp.concatenate([lin.r0[None], rs])


def gd_residuals(kernel, factors, lr: float, r0, steps: int) -> np.ndarray:
    """The closed form of gradient descent on the linearised loss: ``r_t = (I - lr K D)^t r_0`` for
    t = 0..steps, ``(steps + 1, N)``, by repeated products in float64."""
    k, d, r = (np.asarray(a, np.float64) for a in (kernel, factors, r0))
    step = np.eye(len(r)) - lr * k * d[None, :]
    out = [r]
    for _ in range(steps):
        out.append(step @ out[-1])
    return np.stack(out)
