"""Per-mode decay, live: the residual on the probe points along the eigenvectors of K-tilde at step 0.

With ``K_0`` the NTK on the probe points at step 0 and ``D`` the loss's row factors ``2 lambda_i s_i / n_i``
(the run's starting weights), :func:`pinnlab.modes.decompose` gives the modes of ``K_0 D``. At each
keyframe the lab projects the probe residuals on them, ``c = V^T D^1/2 r``, and keeps :data:`SHOWN`
coefficients, log-spaced by rank from the largest eigenvalue to the smallest one above the float32 noise
floor (:data:`pinnlab.panels.NOISE_FLOOR`: the modes below it are rounding, not kernel).

For gradient descent on the linearised network trained on the probe points themselves,
``c_k(t) = (1 - eta lambda_k)^t c_k(0)`` (:func:`pinnlab.modes.gd_prediction`). The panel draws that
prediction only while it applies: plain gradient descent at a constant rate, training points equal to
the probe points (Poisson: the paper computes its NTK on the training points), the starting weights
and an lr scale of 1. It stops at the first change of rule or lr scale
(:attr:`pinnlab.lab.run.LiveRun.gd_until`); under Adam there is none (the measured coefficients still
show which modes were learned).

Cost per keyframe: one residual evaluation on the probe points and an ``N x 5`` product; the basis (one
``eigh`` of the N x N kernel) once per build. No modes above :data:`pinnlab.training.DENSE_SPECTRA_MAX`
probe points (K is then never formed).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pinnlab import linearized, modes, residuals
from pinnlab.panels import NOISE_FLOOR

SHOWN = 5  # modes drawn: log-spaced from mode 1 (the largest eigenvalue) to the last one above the noise floor


class ModeDecay:
    """The modes of ``K_0 D`` of one trainer and the residual's coefficients on the :data:`SHOWN` ones."""

    def __init__(self, trainer):
        t = self.trainer = trainer
        self.note = ""
        if t.k0 is None:
            self.basis = None
            self.note = "no modes: too many probe points to form K"
            return
        terms, probe = t.problem.terms, t.probe
        factors = np.asarray(linearized.row_factors(terms, probe, jnp.asarray(t.fixed_weights)), np.float64)
        self.basis = modes.decompose(t.k0, factors)
        values = self.basis.values
        meaningful = max(1, int(np.sum(values > NOISE_FLOOR * values[0]))) if values[0] > 0 else 1
        self.index = np.unique(np.round(np.geomspace(1, meaningful, SHOWN)).astype(int)) - 1
        self._residuals = jax.jit(lambda p: jnp.concatenate(residuals.residuals(t.apply, terms, p, probe)))
        self.c0 = self.coefficients(t.params0)
        self.lr = self._gd_rate()

    def _gd_rate(self) -> float | None:
        """The constant gradient-descent rate the prediction needs, or None (and a note) when it does not apply."""
        t = self.trainer
        c = t.config
        same = lambda a, b: np.shape(a) == np.shape(b) and np.array_equal(np.asarray(a), np.asarray(b))  # noqa: E731
        same_points = not t.problem.resample and all(same(a, b) for a, b in zip(t.data, t.probe))
        if c.optimizer != "sgd":
            self.note = f"no GD prediction under {c.optimizer}"
        elif c.decay_steps is not None and c.decay_rate != 1.0:
            self.note = "no GD prediction with a decaying rate"
        elif not same_points:
            self.note = "no GD prediction: the training points are not the probe points"
        else:
            return float(c.lr)
        return None

    def coefficients(self, params) -> np.ndarray | None:
        """``|c_k|`` of the shown modes for ``params`` (None without a basis)."""
        if self.basis is None:
            return None
        r = np.asarray(self._residuals(params), np.float64)
        return np.abs(self.basis.project(r)[self.index])

    def view(self, steps: np.ndarray, coeffs: list, until: int | None = None) -> dict:
        """What the panel draws for keyframe ``steps`` and their coefficients (None entries skipped); the GD
        prediction stops at step ``until`` (the first change of the weights or the rate), if given."""
        if self.basis is None:
            return {"note": self.note}
        keep = [i for i, c in enumerate(coeffs) if c is not None]
        out = {"index": self.index + 1, "values": self.basis.values[self.index], "steps": np.asarray(steps)[keep],
               "coeffs": np.asarray([coeffs[i] for i in keep]).reshape(len(keep), len(self.index)),
               "lr": self.lr, "note": self.note, "predicted": None}
        if self.lr is not None and len(keep):
            end = max(int(out["steps"][-1]), 1)
            end = end if until is None else min(end, until)
            grid = np.unique(np.linspace(0, end, 200).astype(np.int64))
            chosen = modes.Modes(self.basis.values[self.index], None, None, None)
            out["predicted"] = (grid, np.abs(modes.gd_prediction(chosen, self.c0, self.lr, grid)))
            out["steps_to_learn"] = modes.steps_to_learn(chosen, self.lr)
        return out
