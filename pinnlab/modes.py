"""The eigenmodes of the weighted kernel K-tilde = K D and the residual's coefficient on each.

Gradient descent on the linearised PINN maps residuals by ``r -> (I - eta K D) r``
(:mod:`pinnlab.linearized`). ``K D`` is not symmetric when the rows' factors ``D`` differ (the loss
weights lambda_i, term scales and point counts), but it is similar to the symmetric
``S = D^1/2 K D^1/2 = V diag(lambda) V^T``:

    K D = D^-1/2 V diag(lambda) V^T D^1/2,

so its eigenvalues are lambda_k (real, >= 0) and the coefficients ``c = V^T D^1/2 r`` evolve one by one,

    c_k(t) = (1 - eta lambda_k)^t c_k(0):

a mode with small lambda_k needs ~1 / (eta lambda_k) steps, which is why the boundary terms, whose modes
have K_uu's small eigenvalues, barely train. Under Adam the update is not ``eta K D r`` and this
prediction does not hold; the measured coefficients still show which modes were learned.

Gradient descent is stable for ``eta < 2 / lambda_max`` (:func:`stable_lr`). Since the weights are
positive, K-tilde is similar to a symmetric PSD matrix whatever lambda_b: its eigenvalues cannot be
complex (the paper attributes Fig. 5's spread at large lambda_b to complex eigenvalues of an
"indefinite" K-tilde; a general eigensolver on the non-symmetric K D shows imaginary parts only at the
rounding level, ``tests/test_linearized.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Modes(NamedTuple):
    """``values`` (descending), ``vectors`` (columns: K D's right eigenvectors over the residual rows,
    ``D^-1/2 v_k``) and ``project`` (``r -> c``, the coefficients ``V^T D^1/2 r``)."""

    values: np.ndarray
    vectors: np.ndarray
    sqrt_d: np.ndarray
    basis: np.ndarray

    def project(self, residuals) -> np.ndarray:
        """The coefficients of residual vectors ``(..., N)`` on the modes, ``(..., N)``."""
        return (np.asarray(residuals, np.float64) * self.sqrt_d) @ self.basis


def decompose(kernel, factors) -> Modes:
    """The modes of ``K D`` for a symmetric PSD ``kernel`` (N, N) and positive row ``factors`` (N,), float64."""
    k, d = np.asarray(kernel, np.float64), np.asarray(factors, np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or d.shape != (k.shape[0],):
        raise ValueError(f"need a square kernel and one factor per row, got {k.shape} and {d.shape}")
    if not np.all(np.isfinite(k)) or not np.all(np.isfinite(d) & (d > 0)):
        raise ValueError("the kernel must be finite and the row factors positive and finite")
    root = np.sqrt(d)
    values, basis = np.linalg.eigh(root[:, None] * k * root[None, :])
    order = np.argsort(values)[::-1]
    values, basis = np.clip(values[order], 0.0, None), basis[:, order]
    return Modes(values, basis / root[:, None], root, basis)


def gd_prediction(modes: Modes, c0, lr: float, steps) -> np.ndarray:
    """``c_k(t) = (1 - lr lambda_k)^t c_k(0)`` at each t in ``steps``, ``(len(steps), N)``."""
    t = np.asarray(steps, np.float64)[:, None]
    return np.asarray(c0, np.float64)[None, :] * (1.0 - lr * modes.values[None, :]) ** t


def steps_to_learn(modes: Modes, lr: float) -> np.ndarray:
    """~1 / (lr lambda_k): the steps over which gradient descent shrinks mode k by a factor e (inf for 0)."""
    with np.errstate(divide="ignore"):
        return 1.0 / (lr * modes.values)


def stable_lr(modes: Modes) -> float:
    """``2 / lambda_max(K D)``: gradient descent on the (linearised) weighted loss diverges above it."""
    return float(2.0 / modes.values[0])
