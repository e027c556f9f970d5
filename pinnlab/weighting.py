"""Loss-term weights from NTK statistics, as pure functions of the block traces.

``ntk`` is Algorithm 1 of the paper for m terms,

    lambda_i = (sum_j Tr K_jj) / Tr K_ii,

with raw traces, no smoothing: the new weights replace the old ones. ``ntk_mean`` is the later
variant (paper.md Sec. 9.3, the ``jaxpi`` library): mean diagonals instead of traces, the mean over
terms instead of the sum, and an exponential moving average,

    lambda_hat_i = mean_j(Tr K_jj / n_j) / (Tr K_ii / n_i),
    lambda_i <- momentum * lambda_i + (1 - momentum) * lambda_hat_i.

``none`` means the fixed weights everywhere: the run's ``initial_weights`` (default all 1), which no
rule updates (:meth:`pinnlab.training.Trainer.set_rule` restores them when a run switches to it). With
equal point counts, ``ntk_mean``'s target equals ``ntk`` divided by m.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

RULES = ("none", "ntk", "ntk_mean")


def rule_index(name: str) -> int:
    """The integer code of a rule, to pass into jitted code as a traced value."""
    if name not in RULES:
        raise ValueError(f"unknown weighting {name!r}; choose one of {', '.join(RULES)}")
    return RULES.index(name)


def none(traces: jax.Array, counts: jax.Array, previous: jax.Array, momentum=0.9) -> jax.Array:
    """No rule: the weights stay as they are (the run's fixed weights)."""
    del traces, counts, momentum
    return previous


def ntk(traces: jax.Array, counts: jax.Array, previous: jax.Array, momentum=0.9) -> jax.Array:
    """Algorithm 1: ``lambda_i = sum_j Tr K_jj / Tr K_ii`` (raw traces, no smoothing)."""
    del counts, previous, momentum
    return jnp.sum(traces) / traces


def ntk_mean(traces: jax.Array, counts: jax.Array, previous: jax.Array, momentum=0.9) -> jax.Array:
    """Mean-diagonal rule with an EMA of the weights (``momentum`` is the weight on the old value)."""
    mean_diag = traces / counts
    target = jnp.mean(mean_diag) / mean_diag
    return momentum * previous + (1.0 - momentum) * target


def update(index, traces, counts, previous, momentum=0.9) -> jax.Array:
    """Apply the rule with integer code ``index`` (traced: switching rules never recompiles)."""
    branches = [lambda args, f=f: f(*args) for f in (none, ntk, ntk_mean)]
    args = (traces, jnp.asarray(counts, traces.dtype), previous, jnp.asarray(momentum, traces.dtype))
    return jax.lax.switch(index, branches, args)
