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

Two solvers. ``"cholesky"`` forms K (the stream factors of :mod:`pinnlab.ntk_structured` on a pinnlab MLP
with declared operators, the formed Jacobian otherwise, e.g. the nonlinear Burgers residual) and solves
densely: ``N^2`` memory and ``N^3 / 3`` flops per step bound N to a few thousand rows. ``"cg"`` is
matrix-free: conjugate gradients on ``(A + mu I) x = b`` with ``A v = W J (J^T (W v))``, one
vector-Jacobian and one Jacobian-vector product per iteration (neither K nor J is formed: memory
O(N + P)), preconditioned by ``diag(A) + mu`` (the NTK diagonal, from the stream factors where they
apply), at most ``cg_iters`` iterations: an inexact solve, which the gain ratio judges like any other
step. With more rows than parameters K is singular, and the residual-space solve loses about
``log10(1 / mu)`` digits.
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
SOLVERS = ("cholesky", "cg")


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
    ``mu0`` is the starting relative damping; ``solver`` is ``"cholesky"`` (dense K) or ``"cg"``
    (matrix-free, at most ``cg_iters`` iterations to a relative residual of ``cg_tol``; see the module notes).
    """

    lr: float | Callable[[jax.Array], jax.Array] = 1.0
    mu0: float = 1e-2
    solver: str = "cholesky"
    cg_iters: int = 200
    cg_tol: float = 1e-6

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


class _System(NamedTuple):
    """The damped system of one step: ``A v``, ``Tr A`` and ``(A + mu I)^(-1) b``."""

    dot: Callable[[jax.Array], jax.Array]
    trace: jax.Array
    solve: Callable[[jax.Array, jax.Array], jax.Array]


def _dense(apply, terms, params, batches, w) -> _System:
    a = w[:, None] * kernel(apply, terms, params, batches).astype(w.dtype) * w[None, :]
    return _System(lambda v: a @ v, jnp.trace(a), lambda b, mu: solve(a, b, mu))


def _matrix_free(apply, terms, params, batches, w, vjp, iters: int, tol: float) -> _System:
    _, jvp = jax.linearize(lambda p: _stacked(apply, terms, p, batches), params)

    def dot(v):
        (g,) = vjp(w * v)
        return w * jvp(g)

    diag = w**2 * jnp.concatenate([ntk.diagonal(apply, params, t, x) for t, x in zip(terms, batches)]).astype(w.dtype)

    def solve_cg(b, mu):
        x, _ = jax.scipy.sparse.linalg.cg(lambda v: dot(v) + mu * v, b, tol=tol, maxiter=iters,
                                          M=lambda v: v / (diag + mu))
        return x

    return _System(dot, jnp.sum(diag), solve_cg)


def step(apply, terms: Sequence[Term], params, state: LMState, batches, weights, lr=1.0,
         optimizer: LevenbergMarquardt | None = None):
    """One damped Gauss-Newton step on the weighted loss: ``(params, state, losses)`` with the per-term
    unweighted losses ``L_i`` at the parameters the step started from. Traceable.

    ``optimizer`` chooses the solver (default: a dense Cholesky solve). A step whose gain ratio is not
    positive (or whose solve failed) returns ``params`` unchanged.
    """
    opt = optimizer or LevenbergMarquardt()
    if opt.solver not in SOLVERS:
        raise ValueError(f"unknown solver {opt.solver!r}; choose one of {', '.join(SOLVERS)}")
    r, vjp = jax.vjp(lambda p: _stacked(apply, terms, p, batches), params)
    w = row_scaling(terms, batches, weights).astype(r.dtype)
    b = w * r
    system = (_dense(apply, terms, params, batches, w) if opt.solver == "cholesky" else
              _matrix_free(apply, terms, params, batches, w, vjp, opt.cg_iters, opt.cg_tol))
    mu_abs = state.mu * system.trace / len(b)
    coef = system.solve(b, mu_abs)
    (delta,) = vjp(-lr * w * coef)
    trial = jax.tree.map(jnp.add, params, delta)
    # the linearised residual after the step, b - lr A coef; for the exact (dense) solve it is
    # (1 - lr) b + lr mu coef, which float32 resolves further than the difference (it stalled at 5.5e-6, not 2.3e-6)
    after = (1.0 - lr) * b + lr * mu_abs * coef if opt.solver == "cholesky" else b - lr * system.dot(coef)
    predicted = jnp.sum(b**2) - jnp.sum(after**2)
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
