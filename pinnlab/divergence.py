"""The one divergence policy of every training loop: a run whose loss turns non-finite keeps its last
finite state.

The scan carry of a run is its state, the state one step before, whether its losses are still finite
and the step where they stopped being so (:class:`Guarded`). When the losses of step ``s`` (evaluated at
the state of step ``s``) are not finite, the run is frozen at the state of step ``s - 1``, the last one
with a finite loss, whose row of losses is kept; the remaining steps of the chunk leave it there.
:class:`pinnlab.training.Trainer` (and through it the lab and the CLI) and the members of
:class:`pinnlab.ensemble.Ensemble` run this one body, so they keep the same state and the same rows,
inside the jitted chunk: nothing is replayed on the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Guarded(NamedTuple):
    """The carry: ``state`` (a TrainState), ``prev`` (the state one step before, or ``state`` itself
    where none is known), ``alive`` (losses finite so far) and ``diverged`` (first non-finite step, -1)."""

    state: Any
    prev: Any
    alive: jax.Array
    diverged: jax.Array


def start(state, prev=None) -> Guarded:
    """The carry of a run at ``state``; ``prev``: its state one step before, when known (else a non-finite
    loss at the first step keeps ``state`` itself)."""
    return Guarded(state, state if prev is None else prev, jnp.asarray(True), jnp.asarray(-1, jnp.int32))


def guard(step: Callable, shared_step: bool = False) -> Callable:
    """``step(state, *args) -> (state, metrics)`` (``metrics[0]``: the losses, evaluated at the incoming
    state) as a body over :class:`Guarded` carries. ``shared_step``: the step counter advances for every
    run alike (an ensemble's, unbatched under ``vmap``, keeps the NTK refresh a real ``lax.cond``)."""

    def body(carry: Guarded, *args):
        new, metrics = step(carry.state, *args)
        finite = jnp.all(jnp.isfinite(metrics[0]))
        ok = carry.alive & finite
        # one branch, not a select per leaf (cheaper on small steps); under vmap it becomes selects again
        state, prev = jax.lax.cond(ok, lambda: (new, carry.state), lambda: (carry.prev, carry.prev))
        if shared_step:
            state, prev = state._replace(step=new.step), prev._replace(step=new.step)
        diverged = jnp.where(carry.alive & ~finite, carry.state.step, carry.diverged)
        return Guarded(state, prev, ok, diverged.astype(carry.diverged.dtype)), metrics

    return body
