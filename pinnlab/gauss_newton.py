"""The kernel solve: damped Gauss-Newton (Levenberg-Marquardt) steps in residual space.

The weighted loss ``L = sum_i lambda_i s_i mean(r_i^2)`` is ``||b||^2`` with ``b = W r``, ``W`` the
diagonal row scaling ``sqrt(lambda_i s_i / n_i)``. The Levenberg-Marquardt step

    delta = -(J~^T J~ + mu I)^(-1) J~^T b = -J~^T (A + mu I)^(-1) b,    J~ = W J,    A = W K W,

(the two forms agree by Woodbury) needs only the PINN's NTK ``K = J J^T``: one N x N kernel, one
Cholesky solve and one vector-Jacobian product per step, whatever the number of parameters. Gradient
descent decays each eigenmode of ``A`` at a rate proportional to its eigenvalue; this step decays mode k
by ``mu / (a_k + mu)``: every mode at once, as long as ``mu`` is small against ``a_k``.

``mu`` is adapted by the gain ratio ``rho`` = actual / predicted decrease of ``L`` (Nielsen's rule,
1999): a step with ``rho > 0`` is accepted and ``mu`` shrinks (up to 3x), a rejected step leaves the
parameters as they were and ``mu`` grows (2x, 4x, 8x... in a row). ``mu`` is stored relative to the
mean eigenvalue ``Tr A / N``, so a weight refresh that rescales ``A`` (Algorithm 1) does not reset it.

K comes from the stream factors of :mod:`pinnlab.ntk_structured` on a pinnlab MLP with declared operators,
and from the formed Jacobian otherwise (the nonlinear Burgers residual). The dense solve bounds N to a
few thousand rows (``N^2`` memory, ``N^3 / 3`` flops per step); there is no matrix-free variant. With more
rows than parameters K is singular, and the residual-space solve loses about ``log10(1 / mu)`` digits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pinnlab import linearized, ntk, ntk_structured, residuals
from pinnlab.problems.base import Term

MU_MAX = 1e10  # relative damping above which the step is ~ a tiny gradient step: stop growing


class LMState(NamedTuple):
    """``mu``: damping relative to ``Tr A / N``; ``nu``: its growth factor after a rejection; ``rho``: the
    last gain ratio; ``accepted`` / ``rejected``: step counts."""

    mu: jax.Array
    nu: jax.Array
    rho: jax.Array
    accepted: jax.Array
    rejected: jax.Array


class LevenbergMarquardt(NamedTuple):
    """The ``"lm"`` optimiser of :mod:`pinnlab.optimizers`: not an optax transformation (it needs the
    residuals, not a gradient), so :func:`pinnlab.training.make_step` calls :func:`step` for it.

    ``lr`` scales the step (1: the full Gauss-Newton step), a number or an optax schedule of the step;
    ``mu0`` is the starting relative damping.
    """

    lr: float | Callable[[jax.Array], jax.Array] = 1.0
    mu0: float = 1e-2

    def scale(self, step: jax.Array) -> jax.Array:
        """The step scale at ``step``."""
        return self.lr(step) if callable(self.lr) else jnp.asarray(self.lr)

    def init(self, params) -> LMState:
        dtype = jax.tree.leaves(params)[0].dtype
        f = lambda v: jnp.asarray(v, dtype)  # noqa: E731
        return LMState(f(self.mu0), f(2.0), f(0.0), jnp.asarray(0, jnp.int32), jnp.asarray(0, jnp.int32))


def row_scaling(terms: Sequence[Term], batches, weights) -> jax.Array:
    """``W``'s diagonal: ``sqrt(lambda_i s_i / n_i)`` on every row of term i, so that ``L = ||W r||^2``
    (the loss gradient's row factors are ``D = 2 W^2``)."""
    return jnp.sqrt(linearized.row_factors(terms, batches, weights) / 2.0)


def kernel(apply, terms: Sequence[Term], params, batches) -> jax.Array:
    """The full K of the training rows (term order): stream factors where they apply, else ``J J^T``.
    Traceable."""
    if all(ntk_structured.reason_not_structured(apply, t) is None for t in terms):
        return ntk_structured.kernel(apply, params, terms, batches)
    j = jnp.concatenate([ntk.flat_jacobian(apply, params, t, jnp.asarray(x)) for t, x in zip(terms, batches)])
    return j @ j.T


def _stacked(apply, terms, params, batches) -> jax.Array:
    return jnp.concatenate(residuals.residuals(apply, terms, params, batches))


def solve(a: jax.Array, b: jax.Array, mu: jax.Array) -> jax.Array:
    """``(A + mu I)^(-1) b`` by Cholesky (NaN where ``A + mu I`` is not numerically positive definite)."""
    chol = jax.scipy.linalg.cho_factor(a + mu * jnp.eye(len(b), dtype=a.dtype), lower=True)
    return jax.scipy.linalg.cho_solve(chol, b)


def damping(rho: jax.Array, state: LMState) -> tuple[jax.Array, jax.Array]:
    """Nielsen's update of ``(mu, nu)`` from the gain ratio of the step just tried."""
    good = rho > 0
    eps = jnp.finfo(state.mu.dtype).eps
    shrink = jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * jnp.where(good, rho, 0.0) - 1.0) ** 3)
    mu = jnp.where(good, state.mu * shrink, state.mu * state.nu)
    nu = jnp.where(good, 2.0, 2.0 * state.nu)
    return jnp.clip(mu, 10 * eps, MU_MAX), jnp.minimum(nu, 2.0**30)


def step(apply, terms: Sequence[Term], params, state: LMState, batches, weights, lr=1.0):
    """One damped Gauss-Newton step on the weighted loss: ``(params, state, losses)`` with the per-term
    unweighted losses ``L_i`` at the parameters the step started from. Traceable.

    A step whose gain ratio is not positive (or whose solve failed) returns ``params`` unchanged.
    """
    r, vjp = jax.vjp(lambda p: _stacked(apply, terms, p, batches), params)
    w = row_scaling(terms, batches, weights).astype(r.dtype)
    b = w * r
    a_mat = w[:, None] * kernel(apply, terms, params, batches).astype(r.dtype) * w[None, :]
    mu_abs = state.mu * jnp.trace(a_mat) / len(b)
    coef = solve(a_mat, b, mu_abs)
    (delta,) = vjp(-lr * w * coef)
    trial = jax.tree.map(jnp.add, params, delta)
    # the linearised residual after the step: b - lr A coef = (1 - lr) b + lr mu coef
    predicted = jnp.sum(b**2) - jnp.sum(((1.0 - lr) * b + lr * mu_abs * coef) ** 2)
    actual = jnp.sum(b**2) - jnp.sum((w * _stacked(apply, terms, trial, batches)) ** 2)
    rho = jnp.where(jnp.isfinite(actual) & jnp.isfinite(predicted) & (predicted > 0), actual / predicted, -1.0)
    accept = rho > 0
    mu, nu = damping(rho, state)
    new_params = jax.tree.map(lambda t, p: jnp.where(accept, t, p), trial, params)
    new_state = LMState(mu, nu, rho.astype(state.rho.dtype), state.accepted + accept, state.rejected + ~accept)
    return new_params, new_state, _term_losses(terms, batches, r)


def _term_losses(terms, batches, r) -> jax.Array:
    """``L_i = s_i mean(r_i^2)`` per term from the stacked residuals."""
    ends = np.cumsum([0] + [len(x) for x in batches])
    return jnp.stack([t.scale * jnp.mean(r[a:b] ** 2) for t, a, b in zip(terms, ends[:-1], ends[1:])])
