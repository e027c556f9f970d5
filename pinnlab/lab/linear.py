"""The linearised network trained beside the real one, live: f_lin(theta) = f(theta_0) + J(theta_0)(theta - theta_0).

:class:`LinearTwin` trains the linearised residuals of :mod:`pinnlab.linearized` (``jax.linearize`` at
the run's initial parameters: J is never formed) on the run's own training points, with the run's own
optax optimiser, and, step by step, the run's own loss weights and lr scale: each chunk of the real
run hands its recorded per-step weights to the twin's scan. So the two differ only by the network's
nonlinearity, which NTK theory says vanishes as the width grows (notebook 05, ``benchmarks/bench_linearized.py``).
The twin's prediction on the problem's grid is ``f(theta_0) + J_grid (theta - theta_0)``, one JVP.

Where it does not apply (a note says why): problems that resample their points every step (the
linearisation is at fixed points) and the kernel solve (not an optax update). A twin switched on
mid-run first replays the run's recorded weights from step 0 (seconds: the twin steps at about the
real run's rate). After a divergence of the real run it stops (the rewind would leave it ahead).

Cost: about a second step per step (``benchmarks/bench_lab.py --only linear``), so it is off by default.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pinnlab import gauss_newton, linearized


def unavailable(trainer) -> str:
    """Why the twin cannot follow ``trainer`` ('' when it can)."""
    if trainer.problem.resample:
        return "no linearised twin: this problem draws new training points every step"
    if isinstance(trainer.optimizer, gauss_newton.LevenbergMarquardt):
        return "no linearised twin under the kernel solve (it is not an optax update)"
    return ""


class LinearTwin:
    """The linearised network of one trainer, advanced chunk by chunk with the trainer's weights."""

    def __init__(self, trainer):
        t = self.trainer = trainer
        self.note = unavailable(t)
        if self.note:
            return
        terms, data = t.problem.terms, tuple(jnp.asarray(x) for x in t.data)
        self.lin = linearized.linearize(t.apply, terms, t.params0, data)
        grid = jnp.asarray(t.problem.grid)
        f0, jvp = jax.linearize(lambda p: t.apply(p, grid), t.params0)
        p0 = t.params0
        self._predict = jax.jit(lambda p: f0 + jvp(jax.tree.map(jnp.subtract, p, p0)))
        optimizer = t.optimizer
        grad = jax.grad(lambda p, w: linearized.loss(self.lin, terms, data, w, p))

        def run(params, state, weights, scales):
            def step(carry, row):
                p, s = carry
                updates, s = optimizer.update(grad(p, row[0]), s, p)
                return (optax.apply_updates(p, jax.tree.map(lambda u: row[1] * u, updates)), s), None

            (params, state), _ = jax.lax.scan(step, (params, state), (weights, scales))
            return params, state

        self._run = jax.jit(run)
        self.params, self.state, self.step = p0, optimizer.init(p0), 0

    def advance(self, weights, lr_scale) -> None:
        """Train ``len(weights)`` steps, step i with ``weights[i]`` (one per term) and ``lr_scale[i]``."""
        if self.note or not len(weights):
            return
        w = jnp.asarray(np.asarray(weights, np.float32))
        s = jnp.asarray(np.broadcast_to(np.asarray(lr_scale, np.float32), (len(w),)))
        self.params, self.state = self._run(self.params, self.state, w, s)
        self.step += len(w)

    def prediction(self) -> np.ndarray:
        return np.asarray(self._predict(self.params), np.float32)

    def stop(self, why: str) -> None:
        self.note = why
