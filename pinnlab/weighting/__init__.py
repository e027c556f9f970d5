"""Loss-term weights: a registry of rules, each a pure function of the statistics it declares.

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

A :class:`Rule` reads a :class:`Stats`: the block traces (always there) and, for the rules that declare
``"gradients"``, per-term gradient statistics computed only when such a rule refreshes. Every module of
this package is imported here, so a new rule is one file that calls :func:`register` (see
``gradnorm.py``); ``TrainConfig``, the CLI and the lab read :data:`RULES`. The rule enters the jitted
step as a traced integer: switching rules never recompiles.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Stats(NamedTuple):
    """What a rule may read: ``traces`` (Tr K_ii per term), ``counts`` (NTK points per term) and
    ``gradients`` (``None``, or a function returning ``(max |dL_i/dtheta|, mean |dL_i/dtheta|)`` per term)."""

    traces: jax.Array
    counts: jax.Array
    gradients: Callable[[], tuple[jax.Array, jax.Array]] | None = None


@dataclasses.dataclass(frozen=True)
class Rule:
    """A weighting rule: ``update(stats, previous, momentum) -> weights``, its statistics and its labels."""

    name: str
    update: Callable[[Stats, jax.Array, jax.Array], jax.Array]
    uses: tuple[str, ...] = ("traces",)
    label: str = ""
    tooltip: str = ""
    lab: bool = True  # offered by the lab's toggle (where a click must act at once, never compile)


RULES: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    """Add ``rule`` to :data:`RULES` (its position is its traced index: ``none`` stays 0)."""
    unknown = set(rule.uses) - {"traces", "gradients"}
    if unknown:
        raise ValueError(f"rule {rule.name}: unknown statistics {sorted(unknown)}; known: traces, gradients")
    RULES[rule.name] = rule
    return rule


def rule_index(name: str) -> int:
    """The integer code of a rule, to pass into jitted code as a traced value."""
    if name not in RULES:
        raise ValueError(f"unknown weighting {name!r}; choose one of {', '.join(RULES)}")
    return list(RULES).index(name)


def needs_gradients(name: str) -> bool:
    """Whether rule ``name`` reads gradient statistics (False for unknown names: :func:`rule_index` reports those)."""
    return name in RULES and "gradients" in RULES[name].uses


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


def _from_traces(fn) -> Callable[[Stats, jax.Array, jax.Array], jax.Array]:
    return lambda stats, previous, momentum: fn(stats.traces, stats.counts, previous, momentum)


register(Rule("none", _from_traces(none), (), "off (λ = 1)", "unweighted loss: every λ = 1"))
register(Rule("ntk", _from_traces(ntk), ("traces",), "NTK (Alg. 1)", "λ_i = Σ_j Tr K_jj / Tr K_ii (paper Algorithm 1)"))
register(Rule("ntk_mean", _from_traces(ntk_mean), ("traces",), "NTK mean + EMA",
              "mean-diagonal variant with a moving average (jaxpi)"))
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")


def update(index, traces, counts, previous, momentum=0.9, gradients=None) -> jax.Array:
    """Apply the rule with integer code ``index`` (traced: switching rules never recompiles).

    ``gradients``: see :class:`Stats`; a rule that needs them keeps ``previous`` when they are not given.
    """
    stats = Stats(traces, jnp.asarray(counts, traces.dtype), gradients)

    def branch(rule: Rule):
        if "gradients" in rule.uses and gradients is None:
            return lambda previous, momentum: previous
        return lambda previous, momentum: rule.update(stats, previous, momentum)

    branches = [branch(rule) for rule in RULES.values()]
    return jax.lax.switch(index, branches, previous, jnp.asarray(momentum, traces.dtype))
