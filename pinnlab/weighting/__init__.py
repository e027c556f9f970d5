"""Loss-term weights: a registry of rules, each an ``(init, update)`` pair built from its hyperparameters.

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

A rule is registered as a factory, in the style of optax's ``GradientTransformation``: called with its
hyperparameters (``ntk_mean(momentum=0.9)``) it returns a :class:`Transform` whose ``init(weights)``
gives the rule's state and whose ``update(stats, state)`` gives ``(weights, state)``. The
hyperparameters are closed over rather than passed at each update, and the factory is called inside
the traced step with the live control value (``Controls.momentum``, a tracer), so changing a
hyperparameter never recompiles. The factory's parameter names say which live controls it reads
(:data:`HYPERPARAMETERS`); a parameter that is not a live control keeps its default.

The rule's index enters the jitted step as a traced integer and :func:`update` dispatches with
``jax.lax.switch`` over every registered rule, so switching rules never recompiles either. Every branch
of a switch must return the same structure, and the step carries only ``TrainState.weights``: so a
rule's state is the weights vector it last produced (``init`` returns the weights, ``update`` returns
its new weights twice), and :func:`register` checks that. A rule that must carry more than its
weights between refreshes needs its own field in the train state.

A :class:`Rule` reads a :class:`Stats`: the block traces (always there) and, for the rules that declare
``"gradients"``, per-term gradient statistics computed only when such a rule refreshes. Every module of
this package is imported here, so a new rule is one file that calls :func:`register` (see
``gradnorm.py``); ``TrainConfig``, the CLI and the lab read :data:`RULES`.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

HYPERPARAMETERS = ("momentum",)
"""The live controls a rule factory may take, each by its name (a traced ``Controls`` field in the step)."""

STATISTICS = ("traces", "gradients")
"""The statistics a rule may declare in ``Rule.uses``."""


class Stats(NamedTuple):
    """What a rule may read: ``traces`` (Tr K_ii per term), ``counts`` (NTK points per term) and
    ``gradients`` (``None``, or a function returning ``(max |dL_i/dtheta|, mean |dL_i/dtheta|)`` per term)."""

    traces: jax.Array
    counts: jax.Array | None = None
    gradients: Callable[[], tuple[jax.Array, jax.Array]] | None = None


RuleState = jax.Array
"""A rule's state between refreshes: the weights it last produced (see the module docstring)."""


class Transform(NamedTuple):
    """A rule with its hyperparameters bound: ``init(weights) -> state`` and
    ``update(stats, state) -> (weights, state)``."""

    init: Callable[[jax.Array], RuleState]
    update: Callable[[Stats, RuleState], tuple[jax.Array, RuleState]]


@dataclasses.dataclass(frozen=True)
class Rule:
    """A weighting rule: ``factory(**hyperparameters) -> Transform``, the statistics it reads and its labels."""

    name: str
    factory: Callable[..., Transform]
    uses: tuple[str, ...] = ("traces",)
    label: str = ""
    tooltip: str = ""
    lab: bool = True  # offered by the lab's toggle (where a click must act at once, never compile)

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        """The live controls this rule's factory takes (a subset of :data:`HYPERPARAMETERS`)."""
        return tuple(p for p in inspect.signature(self.factory).parameters if p in HYPERPARAMETERS)

    def make(self, **hyperparameters) -> Transform:
        """The rule's transform, from the hyperparameters it takes (the others given are ignored)."""
        return self.factory(**{k: hyperparameters[k] for k in self.hyperparameters if k in hyperparameters})


RULES: dict[str, Rule] = {}


def _check(rule: Rule) -> None:
    unknown = set(rule.uses) - set(STATISTICS)
    if unknown:
        raise ValueError(f"rule {rule.name}: unknown statistics {sorted(unknown)}; known: {', '.join(STATISTICS)}")
    for p in inspect.signature(rule.factory).parameters.values():
        if p.name not in HYPERPARAMETERS and p.default is inspect.Parameter.empty and p.kind not in (
                inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise ValueError(f"rule {rule.name}: factory parameter {p.name!r} is no live control "
                             f"({', '.join(HYPERPARAMETERS)}) and has no default")
    # The state must be the weights (one structure for every branch of the switch), checked on shapes only.
    weights = jax.ShapeDtypeStruct((3,), jnp.float32)
    scalar = jax.ShapeDtypeStruct((), jnp.float32)

    def shapes(weights, traces, momentum):
        transform = rule.make(momentum=momentum)
        state = transform.init(weights)
        grads = (lambda: (jnp.ones_like(traces), jnp.ones_like(traces))) if "gradients" in rule.uses else None
        return state, transform.update(Stats(traces, jnp.ones_like(traces), grads), state)

    state, (new, new_state) = jax.eval_shape(shapes, weights, weights, scalar)
    for what, got in (("init", state), ("update's weights", new), ("update's state", new_state)):
        if not isinstance(got, jax.ShapeDtypeStruct) or (got.shape, got.dtype) != (weights.shape, weights.dtype):
            raise ValueError(f"rule {rule.name}: {what} must be a weights vector like its input, got {got}")


def register(rule: Rule) -> Rule:
    """Add ``rule`` to :data:`RULES` (its position is its traced index: ``none`` stays 0)."""
    _check(rule)
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


def make(name: str, **hyperparameters) -> Transform:
    """The transform of rule ``name`` with ``hyperparameters`` bound (those it does not take are ignored)."""
    return RULES[list(RULES)[rule_index(name)]].make(**hyperparameters)


def _keep(weights: jax.Array) -> RuleState:
    return weights


def none() -> Transform:
    """No rule: the weights stay as they are (the run's fixed weights)."""
    return Transform(_keep, lambda stats, state: (state, state))


def ntk() -> Transform:
    """Algorithm 1: ``lambda_i = sum_j Tr K_jj / Tr K_ii`` (raw traces, no smoothing: the state is not read)."""

    def update(stats: Stats, state: RuleState) -> tuple[jax.Array, RuleState]:
        del state
        weights = jnp.sum(stats.traces) / stats.traces
        return weights, weights

    return Transform(_keep, update)


def ntk_mean(momentum: jax.typing.ArrayLike = 0.9) -> Transform:
    """Mean-diagonal rule with an EMA of the weights (``momentum`` is the weight on the old value, the state)."""

    def update(stats: Stats, state: RuleState) -> tuple[jax.Array, RuleState]:
        mean_diag = stats.traces / stats.counts
        target = jnp.mean(mean_diag) / mean_diag
        weights = momentum * state + (1.0 - momentum) * target
        return weights, weights

    return Transform(_keep, update)


register(Rule("none", none, (), "off (λ = 1)", "unweighted loss: every λ = 1"))
register(Rule("ntk", ntk, ("traces",), "NTK (Alg. 1)", "λ_i = Σ_j Tr K_jj / Tr K_ii (paper Algorithm 1)"))
register(Rule("ntk_mean", ntk_mean, ("traces",), "NTK mean + EMA",
              "mean-diagonal variant with a moving average (jaxpi)"))
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")


def update(index: jax.typing.ArrayLike, stats: Stats, state: RuleState,
           momentum: jax.typing.ArrayLike = 0.9) -> tuple[jax.Array, RuleState]:
    """Apply the rule with integer code ``index`` to ``state`` (the current weights): ``(weights, state)``.

    ``index`` and ``momentum`` may be traced: every rule's factory is called here with ``momentum`` (cast
    to the traces' dtype), and ``jax.lax.switch`` picks the branch, so neither recompiles. A concrete
    ``index`` runs only that rule. A rule that
    declares ``"gradients"`` keeps its state when ``stats.gradients`` is ``None``.
    """
    dtype = stats.traces.dtype
    counts = None if stats.counts is None else jnp.asarray(stats.counts, dtype)
    stats = stats._replace(counts=counts)
    hyperparameters = {"momentum": jnp.asarray(momentum, dtype)}

    def branch(rule: Rule):
        if "gradients" in rule.uses and stats.gradients is None:
            return lambda state: (state, state)
        transform = rule.make(**hyperparameters)
        # in the state's dtype: under float64 (jax x64) the traces are float64, the carried weights float32,
        # and lax.switch needs every branch to return the same types
        return lambda state: jax.tree.map(lambda x: x.astype(state.dtype), transform.update(stats, state))

    branches = [branch(rule) for rule in RULES.values()]
    if not isinstance(index, jax.core.Tracer):  # called eagerly (a rule switch between chunks): run the one
        return branches[int(index)](state)  # rule; an eager lax.switch traces every branch, gradnorm's Jacobian too
    return jax.lax.switch(index, branches, state)
