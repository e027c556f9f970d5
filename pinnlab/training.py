"""Training: a jitted chunk of k optimiser steps (``lax.scan``) driven by a snapshot generator.

Everything the live controls touch (weighting rule, refresh periods, learning-rate scale) enters the
jitted chunk as traced values, so changing them between chunks never recompiles. Weights are
refreshed inside the scan, at the exact steps where ``step % update_every == 0``, from the block
traces of the current parameters: Algorithm 1 as written, whatever the chunk length.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax

from pinnlab import checks, divergence, driver, gauss_newton, ntk, optimizers, residuals, weighting
from pinnlab.checks import MAX_STEPS
from pinnlab.history import History, Snapshot
from pinnlab.nets import Net, NetConfig, make_net
from pinnlab.optimizers import OPTIMIZERS
from pinnlab.problems.base import Problem

DENSE_SPECTRA_MAX = 2048  # probe points up to which spectra come from the formed K (all eigenvalues)
SPECTRA_TOP_K = 50  # eigenvalues per spectrum above that (Lanczos)


DEFAULTS = {"lr": 1e-5, "chunk": 100}  # TrainConfig's lr and chunk where neither the user nor the optimiser says


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
      optimizer: ``"sgd"`` (plain gradient descent, the Poisson code), ``"adam"`` (the wave code), ``"lm"``
        (the kernel solve of :mod:`pinnlab.gauss_newton`) or one added by :func:`pinnlab.optimizers.register`.
      lr: learning rate (for ``"lm"``: the scale of its step); with ``decay_steps`` it decays as
        ``lr * decay_rate ** (step / decay_steps)`` (continuous, as ``tf.train.exponential_decay`` in the
        wave code: 1e-3, 1000, 0.9). None (the default): 1e-5, or the optimiser's own value from
        :data:`pinnlab.optimizers.PRESETS` (``"lm"``: 1, the whole Gauss-Newton step).
      steps: optimiser steps of a full run.
      weighting: a rule of :data:`pinnlab.weighting.RULES`: ``"none"``, ``"ntk"`` (Algorithm 1),
        ``"ntk_mean"`` or ``"gradnorm"`` (see :mod:`pinnlab.weighting`).
      update_every: refresh the weights at every step where ``step % update_every == 0`` (M in
        Algorithm 1). A period longer than ``steps`` computes them once, at step 0.
      ntk_every: also refresh the logged traces this often (0: only when the weights refresh).
        Costs one per-point gradient per NTK point; set 0 for pure-speed runs without weighting.
      momentum: EMA factor of ``ntk_mean`` and ``gradnorm`` (the hyperparameter their factories take;
        live, as a traced control).
      initial_weights: starting weights per term (default all 1).
      chunk: optimiser steps per jitted call (one host transfer per chunk). None (the default): 100, or
        the optimiser's value from :data:`pinnlab.optimizers.PRESETS` (``"lm"``: 10).
      eval_every: steps between evaluations of the relative L2 error and the parameter drift
        (0: about 50 per run, on chunk boundaries).
      spectra_at: steps at which the full NTK and its block spectra are recorded.
      seed: seeds the initialisation, the point samples and the NTK probe points.
    """

    optimizer: str = "sgd"
    lr: float | None = None
    decay_steps: int | None = None
    decay_rate: float = 1.0
    steps: int = 1000
    weighting: str = "none"
    update_every: int = 100
    ntk_every: int = 100
    momentum: float = 0.9
    initial_weights: tuple[float, ...] | None = None
    chunk: int | None = None
    eval_every: int = 0
    spectra_at: tuple[int, ...] = ()
    seed: int = 0

    def __post_init__(self):
        for field in dataclasses.fields(self):  # numpy scalars -> Python numbers (the config goes to JSON)
            value = getattr(self, field.name)
            if isinstance(value, np.generic):
                object.__setattr__(self, field.name, value.item())
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        # Unset lr/chunk follow the optimiser: the kernel solve's step scale is 1, not gradient descent's 1e-5.
        own = {**DEFAULTS, **{k: v for k, v in optimizers.PRESETS.get(self.optimizer, {}).items() if k in DEFAULTS}}
        for name, value in own.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        weighting.rule_index(self.weighting)
        # every step count meets the int32 step counter of the jitted loop (a huge period: "refresh once")
        ints = dict(steps=(1, MAX_STEPS), update_every=(1, MAX_STEPS), chunk=(1, MAX_STEPS),
                    ntk_every=(0, MAX_STEPS), eval_every=(0, None))  # eval_every stays on the host
        if self.decay_steps is not None:
            ints["decay_steps"] = (1, MAX_STEPS)
        for name, (low, high) in ints.items():
            object.__setattr__(self, name, checks.integer(name, getattr(self, name), low, high))
        object.__setattr__(self, "seed", checks.seed(self.seed))
        for name in ("lr", "decay_rate"):
            object.__setattr__(self, name, checks.number(name, getattr(self, name), positive=True))
        object.__setattr__(self, "momentum", checks.number("momentum", self.momentum, 0.0))
        if self.momentum >= 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.initial_weights is not None:
            if isinstance(self.initial_weights, str | bytes) or not hasattr(self.initial_weights, "__iter__"):
                raise ValueError(f"initial_weights must be a sequence of numbers, got {self.initial_weights!r}")
            object.__setattr__(self, "initial_weights", tuple(
                checks.number("initial_weights", w, 0.0, MAX_WEIGHT, positive=True) for w in self.initial_weights))
        if isinstance(self.spectra_at, str | bytes) or not hasattr(self.spectra_at, "__iter__"):
            raise ValueError(f"spectra_at must be a sequence of steps, e.g. (0, {self.steps}), got {self.spectra_at!r}")
        object.__setattr__(self, "spectra_at", tuple(
            checks.integer("spectra_at step", s, 0, self.steps) for s in self.spectra_at))


MAX_WEIGHT = float(np.finfo(np.float32).max)  # weights are float32 in the train state: above it they are inf


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    weights: jax.Array
    traces: jax.Array
    key: jax.Array
    step: jax.Array


class Controls(NamedTuple):
    """Live controls, traced into the chunk (changing them never recompiles).

    ``refresh_until``: weights refresh only at steps before it (a step budget's end; -1: no limit).
    """

    rule: jax.Array
    update_every: jax.Array
    ntk_every: jax.Array
    lr_scale: jax.Array
    momentum: jax.Array
    refresh_until: jax.Array


def live_controls(rule: str, update_every: int, ntk_every: int, lr_scale: float, momentum: float,
                  refresh_until: int | None = None) -> Controls:
    """Validated :class:`Controls` as numpy scalars (building five device scalars costs ~0.25 ms per chunk)."""
    for name, value, low in (("update_every", update_every, 1), ("ntk_every", ntk_every, 0)):
        if int(value) < low:
            raise ValueError(f"{name} must be >= {low}, got {value!r}")
    until = -1 if refresh_until is None else min(int(refresh_until), np.iinfo(np.int32).max)
    return Controls(np.int32(weighting.rule_index(rule)), np.int32(update_every), np.int32(ntk_every),
                    np.float32(lr_scale), np.float32(momentum), np.int32(until))


def divergence_message(diverged: int, kept: int) -> str:
    """What a diverged run's History says: the first non-finite step, and the step it was kept at."""
    return f"loss became non-finite at step {diverged}; parameters and history kept as at step {kept}"


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The config's optimiser (:mod:`pinnlab.optimizers`) with its constant or decaying learning rate."""
    return optimizers.make(config.optimizer, config.lr, config.decay_steps, config.decay_rate)


def total_loss(apply, problem: Problem, params, batches, weights):
    """``sum_i lambda_i L_i`` and the unweighted per-term losses ``L_i``.

    On a pinnlab MLP, a term whose declared operator has two or more derivative streams (the wave and
    heat residuals) takes the Taylor streams of :mod:`pinnlab.residuals`: the same numbers as nested
    ``jax.jvp`` up to rounding, in less time. Other terms take their own nested-``jvp`` residual.
    """
    losses = jnp.stack(residuals.losses(apply, problem.terms, params, batches))
    return jnp.sum(weights * losses), losses


def gradient_stats(apply, problem: Problem, params, batches) -> tuple[jax.Array, jax.Array]:
    """``(max |dL_i/dtheta|, mean |dL_i/dtheta|)`` per term: the statistics of gradient-based weighting rules.
    Traceable; one reverse pass per term."""
    ones = jnp.ones(len(problem.terms))
    grads = jax.jacrev(lambda p: total_loss(apply, problem, p, batches, ones)[1])(params)
    leaves = [g.reshape(len(problem.terms), -1) for g in jax.tree.leaves(grads)]
    size = sum(x.shape[1] for x in leaves)
    max_abs = jnp.max(jnp.stack([jnp.max(jnp.abs(x), axis=1) for x in leaves]), axis=0)
    mean_abs = sum(jnp.sum(jnp.abs(x), axis=1) for x in leaves) / size
    return max_abs, mean_abs


def make_step(apply, problem: Problem, optimizer, gradients: bool = False):
    """One optimiser step (with the weight refresh of Algorithm 1 before it) as a scan body.

    ``data`` and ``probe`` (the fixed training and NTK points) are arguments, not constants, so runs
    that differ only in seed, weights or points share one compiled chunk. ``gradients``: also give the
    rules that declare them per-term gradient statistics (their refresh branch adds ~30% to the compile
    time of every chunk, so only runs that use such a rule pay it).
    """
    counts = jnp.asarray([t.n_ntk for t in problem.terms], jnp.float32)
    solves = isinstance(optimizer, gauss_newton.LevenbergMarquardt)

    def step(carry: TrainState, controls: Controls, data, probe):
        key, k_batch, k_ntk = jax.random.split(carry.key, 3)
        batches = problem.sample(k_batch) if problem.resample else data
        ntk_batches = problem.sample(k_ntk, ntk=True) if problem.resample else probe
        before_limit = (controls.refresh_until < 0) | (carry.step < controls.refresh_until)
        due_weights = (controls.rule > 0) & (carry.step % controls.update_every == 0) & before_limit
        due_log = (controls.ntk_every > 0) & (carry.step % jnp.maximum(controls.ntk_every, 1) == 0)

        def fresh(_):
            traces = ntk.traces(apply, carry.params, problem.terms, ntk_batches)
            grads = (lambda: gradient_stats(apply, problem, carry.params, batches)) if gradients else None
            # the carried weights are the rule's state; its hyperparameters are the traced controls
            new, _ = weighting.update(controls.rule, weighting.Stats(traces, counts, grads), carry.weights,
                                      controls.momentum)
            # in the carried dtypes (float32 records; under jax x64 the traces come out float64)
            return traces.astype(carry.traces.dtype), jnp.where(due_weights, new, carry.weights)

        keep = lambda _: (carry.traces, carry.weights)
        traces, weights = jax.lax.cond(due_weights | due_log, fresh, keep, None)
        if solves:  # the kernel solve: residuals and K, not a gradient
            params, opt_state, losses = gauss_newton.step(apply, problem.terms, carry.params, carry.opt_state,
                                                          batches, weights,
                                                          optimizer.scale(carry.step) * controls.lr_scale, optimizer)
        else:
            grads, losses = jax.grad(
                lambda p: total_loss(apply, problem, p, batches, weights), has_aux=True
            )(carry.params)
            updates, opt_state = optimizer.update(grads, carry.opt_state, carry.params)
            updates = jax.tree.map(lambda u: controls.lr_scale * u, updates)
            params = optax.apply_updates(carry.params, updates)
        new = TrainState(params, opt_state, weights, traces, key, carry.step + 1)
        return new, (losses, weights, traces)

    return step


class _Compiled:
    """The jitted functions of one (net, problem, optimiser) structure, shared by every Trainer with
    that structure: a second run (another seed, rule, or weights) reuses the compiled code."""

    def __init__(self, apply, problem: Problem, optimizer, gradients: bool):
        # One step function with the NTK refresh behind a traced lax.cond. A refresh-free variant for
        # chunks with no refresh due is ~10% faster on tiny steps (E3), but switching the weighting on
        # would then compile it on the spot: live controls must never recompile, so there is one.
        self.step = make_step(apply, problem, optimizer, gradients)
        self.gradients = gradients
        self.eval = jax.jit(lambda p: problem.rel_l2(apply, p))
        self.predict = jax.jit(lambda p: apply(p, jnp.asarray(problem.grid)))
        self.chunks: dict[int, Any] = {}
        self.traces = 0  # how often a chunk function was traced (= compiled)

    def chunk(self, length: int):
        """The jitted scan of ``length`` steps over a :class:`pinnlab.divergence.Guarded` carry."""
        if length not in self.chunks:
            body = divergence.guard(self.step)

            def run(carry, controls, data, probe):
                self.traces += 1
                return jax.lax.scan(lambda c, _: body(c, controls, data, probe), carry, None, length=length)

            self.chunks[length] = jax.jit(run)
        return self.chunks[length]


_COMPILED: dict[tuple, _Compiled] = {}


def _compiled(apply, problem: Problem, config: TrainConfig, optimizer, gradients: bool) -> _Compiled:
    # the registered rules are part of the key: a chunk compiled before a rule was registered has no branch
    # for it (lax.switch would clamp its index to another rule)
    key = (apply, id(problem), config.optimizer, config.lr, config.decay_steps, config.decay_rate, gradients,
           tuple(weighting.RULES))
    entry = _COMPILED.get(key)
    if entry is None or entry.problem is not problem:
        entry = _Compiled(apply, problem, optimizer, gradients)
        entry.problem = problem  # keeps the id above valid while cached
        if len(_COMPILED) > 32:  # bound the cache in long notebook sessions
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = entry
    return entry


def estimated_bytes(problem: Problem, net: NetConfig) -> float:
    """A rough upper estimate of a run's memory: parameters with their optimiser state and copies, the
    activations of every derivative stream over a training batch, and the per-point gradients and kernel
    of the NTK probe points. It only has to be right within a small factor: it refuses absurd sizes."""
    w, d, dim = net.width, net.depth, problem.dim
    params = dim * w + w + (d - 1) * (w * w + w) + w + 1
    batch = sum(t.n for t in problem.terms)
    probe = sum(t.n_ntk for t in problem.terms)
    streams = 1 + 2 * dim  # u, its first and its second derivatives
    return 4.0 * (8 * params + 4 * batch * w * d * streams + probe * params + probe**2)


def check_size(problem: Problem, net: NetConfig) -> None:
    """Refuse a problem and net whose run would not fit in this machine's memory (before any allocation)."""
    checks.fits_in_memory(f"training {problem.name} with a {net.depth}x{net.width} net on "
                          f"{sum(t.n for t in problem.terms):,} points", estimated_bytes(problem, net))


def _matching(params, own, net: NetConfig):
    """``params`` if they have the shapes of this net's parameters, else a ValueError."""
    given, wanted = jax.tree_util.tree_structure(params), jax.tree_util.tree_structure(own)
    shapes = lambda tree: [tuple(np.shape(x)) for x in jax.tree_util.tree_leaves(tree)]  # noqa: E731
    if given != wanted or shapes(params) != shapes(own):
        raise ValueError(f"params do not fit the {net.depth}x{net.width} net of net_config: expected leaves of "
                         f"shapes {shapes(own)}, got {shapes(params)}")
    return params


class Start(NamedTuple):
    """A run's starting point, all of it from the seed: the net (its initial parameters drawn), the
    parameters trained (the net's, or given ones of its shapes), their optimiser state, the loss weights
    (float32), the run's random key, and the training and probe points. A lone run and an ensemble
    member with the same seed start from the same point."""

    net: Net
    params: Any
    opt_state: Any
    weights: jax.Array
    key: jax.Array
    data: tuple
    probe: tuple


def start(problem: Problem, net_config: NetConfig, optimizer: optax.GradientTransformation | None, seed: int,
          initial_weights=None, params=None) -> Start:
    """The starting point of the run of ``seed`` (:class:`Start`); ``initial_weights`` default to 1, and
    ``opt_state`` is None without an ``optimizer`` (a caller that only needs the net and the points)."""
    key_init, key_data, key_probe, key_run = jax.random.split(jax.random.key(seed), 4)
    net = make_net(net_config, problem.dim, problem.mean, problem.std, key_init)
    params = net.params if params is None else _matching(params, net.params, net_config)
    m = len(problem.terms)
    weights = jnp.ones(m) if initial_weights is None else jnp.asarray(initial_weights)
    if weights.shape != (m,):
        raise ValueError(f"initial_weights needs {m} values {problem.term_names}, got {initial_weights!r}")
    opt_state = None if optimizer is None else optimizer.init(params)
    return Start(net, params, opt_state, weights.astype(jnp.float32), key_run, problem.sample(key_data),
                 problem.sample(key_probe, ntk=True))  # probe: spectra, NTK drift


class Trainer:
    """Trains one PINN and yields :class:`Snapshot` records; the CLI, tests and widgets share it.

    Live controls (read at the next chunk, never recompile): ``update_every``, ``ntk_every``,
    ``lr_scale``, ``momentum``, ``refresh_until`` as plain attributes, and the weighting rule through
    :meth:`set_rule` (which acts at once and is recorded in the History with its step).
    """

    def __init__(self, problem: Problem, net_config: NetConfig, config: TrainConfig, params=None):
        for name, value, kind, how in (("problem", problem, Problem, "pinnlab.make_problem('poisson')"),
                                       ("net_config", net_config, NetConfig, "pinnlab.convention('paper_code')"),
                                       ("config", config, TrainConfig, "pinnlab.TrainConfig(steps=...)")):
            if not isinstance(value, kind):
                raise TypeError(f"{name} must be a {kind.__name__} (e.g. {how}), got {value!r:.80}")
        self.problem, self.net_config, self.config = problem, net_config, config
        check_size(problem, net_config)
        self.optimizer = make_optimizer(config)
        s = start(problem, net_config, self.optimizer, config.seed, config.initial_weights, params)
        self.net, self.apply, self.data, self.probe = s.net, s.net.apply, s.data, s.probe
        self.state = TrainState(s.params, s.opt_state, s.weights, jnp.zeros(len(problem.terms)), s.key,
                                jnp.asarray(0, jnp.int32))
        self.params0 = s.params
        self.rule, self.update_every = config.weighting, config.update_every
        self.ntk_every, self.lr_scale, self.momentum = config.ntk_every, 1.0, config.momentum
        self.refresh_until: int | None = None
        self.fixed_weights = self.state.weights  # what rule "none" trains with
        self._prev: TrainState | None = None  # the state one step before ``state``, where known
        self._compiled = _compiled(self.apply, problem, config, self.optimizer,
                                   weighting.needs_gradients(config.weighting))
        self._eval = self._compiled.eval
        self.history = History.empty(problem, net_config, config, self.net.num_params)
        self.k0: np.ndarray | None = None
        self.seconds = 0.0

    # -- the jitted chunk ---------------------------------------------------------------------
    @property
    def compilations(self) -> int:
        """How often this trainer's chunk functions were traced (compiled), shared with every trainer
        of the same structure; tests use it to prove that live controls never recompile."""
        return self._compiled.traces

    def controls(self) -> Controls:
        if weighting.needs_gradients(self.rule) and not self._compiled.gradients:
            # the first switch to a gradient-based rule compiles the step that computes its statistics
            self._compiled = _compiled(self.apply, self.problem, self.config, self.optimizer, True)
            self._eval = self._compiled.eval
        return live_controls(self.rule, self.update_every, self.ntk_every, self.lr_scale, self.momentum,
                             self.refresh_until)

    # -- live changes ---------------------------------------------------------------------------
    def set_rule(self, rule: str) -> None:
        """Switch the weighting rule now, and record the change in the History. Switching never recompiles,
        except the first switch of a run to a rule that needs gradient statistics (``gradnorm``).

        ``"none"`` trains with the fixed weights (``initial_weights``, default all 1) from this step on;
        an adaptive rule computes its weights at once from the traces on the probe points, instead of
        waiting for the next multiple of ``update_every``.
        """
        weighting.rule_index(rule)
        if rule == self.rule:
            return
        if rule == "none":
            self.set_weights(self.fixed_weights)
        else:
            new, traces = self._weights_now(rule)
            self.state = self.state._replace(weights=new.astype(self.state.weights.dtype),
                                             traces=traces.astype(self.state.traces.dtype))
        self.rule = rule
        self.history.add_event(self.step, "rule", rule)

    def warm_rule_switch(self) -> None:
        """Compile what a switch to Algorithm 1 computes (the traces on the probe points, the rule's update),
        changing nothing, so that the first :meth:`set_rule` costs what later ones do. Safe to call from
        another thread while this trainer trains (the dashboard does, after the first chunk)."""
        self._weights_now("ntk")

    def _weights_now(self, rule: str) -> tuple[jax.Array, jax.Array]:
        """The weights adaptive ``rule`` gives at the current parameters, and the probe traces they came from."""
        params, weights = self.state.params, self.state.weights
        traces = _jitted_traces(self.apply, self.problem)(params, self.probe)
        counts = jnp.asarray([t.n_ntk for t in self.problem.terms], jnp.float32)
        gradients = lambda: _jitted_gradient_stats(self.apply, self.problem)(params, self.data)  # noqa: E731
        new, _ = weighting.update(weighting.rule_index(rule), weighting.Stats(traces, counts, gradients), weights,
                                  self.momentum)
        return new, traces

    def set_chunk(self, chunk: int) -> None:
        """Run ``chunk`` steps per jitted call from now on (a new length compiles once)."""
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        self.config = dataclasses.replace(self.config, chunk=int(chunk))

    def restore(self, state: TrainState) -> None:
        """Go back to an earlier ``state`` of this run (e.g. from before a control change that diverged);
        the History's rows from its step on are dropped."""
        self.state, self._prev = state, None
        self.history.truncate(int(state.step))

    def set_weights(self, weights) -> None:
        """Use ``weights`` (one positive finite value per term, at most :data:`MAX_WEIGHT`) from the next step on."""
        w = np.asarray(weights, np.float64)
        m = len(self.problem.terms)
        if w.shape != (m,) or not np.all(np.isfinite(w) & (w > 0) & (w <= MAX_WEIGHT)):
            raise ValueError(f"weights must be {m} positive finite numbers {self.problem.term_names}, got {weights!r}")
        self.state = self.state._replace(weights=jnp.asarray(w, self.state.weights.dtype))

    @property
    def step(self) -> int:
        return int(self.state.step)

    def advance(self, n: int) -> Snapshot:
        """Run ``n`` steps in chunks (a shorter last chunk for the remainder); return their record.

        Row i of the record holds the losses, weights and traces used at step ``start + i``. If a loss
        turns non-finite at step s, the run keeps its state of step s - 1 (:mod:`pinnlab.divergence`),
        the History's rows end with that step's (finite) row, and ``snapshot.diverged`` is s. A
        non-finite loss at step 0, or at the first step after :meth:`restore`, keeps the state where it
        was. Rows recorded at or after the current step (the kept row of a divergence) are replaced by
        the ones this call records.
        """
        n = checks.integer("steps to advance", n, 0, MAX_STEPS)
        t0, start, controls = time.perf_counter(), self.step, self.controls()
        if self.history.steps and self.history.steps[-1][-1] >= start:  # the kept row of a divergence
            self.history.truncate(start)
        parts, remaining, carry = [], n, divergence.start(self.state, self._prev)
        while remaining > 0:
            length = min(self.config.chunk, remaining)
            chunk_start = start + n - remaining
            carry, metrics = self._compiled.chunk(length)(carry, controls, self.data, self.probe)
            metrics, diverged = jax.device_get((metrics, carry.diverged))
            if diverged >= 0:
                parts.append(tuple(m[: diverged - chunk_start] for m in metrics))
                self.state, self._prev = carry.state, carry.prev
                # the kept state may be older than this call's start (the loss of its first step is
                # non-finite): nothing measured past it stays
                self.history.truncate(self.step, keep_row=True)
                return self._record(start, parts, t0, diverged=int(diverged))
            parts.append(metrics)
            remaining -= length
        self.state, self._prev = carry.state, carry.prev
        return self._record(start, parts, t0)

    def _record(self, start, parts, t0, diverged=None) -> Snapshot:
        empty = np.zeros((0, len(self.problem.terms)), np.float32)  # advance(0)
        losses, weights, traces = (np.concatenate([empty] + [p[i] for p in parts]) for i in range(3))
        self.seconds += time.perf_counter() - t0
        snap = Snapshot(steps=np.arange(start, start + len(losses)), losses=losses,
                        weights=weights, traces=traces, diverged=diverged)
        self.history.append(snap)
        return snap

    # -- measurements at chosen steps -----------------------------------------------------------
    def evaluate(self, snap: Snapshot | None = None) -> Snapshot | None:
        """Relative L2 error and parameter drift at the current step (added to ``snap``)."""
        params = self.state.params
        err = float(self._eval(params))
        flat, flat0 = (jax.flatten_util.ravel_pytree(p)[0] for p in (params, self.params0))
        drift = float(jnp.linalg.norm(flat - flat0) / jnp.linalg.norm(flat0))
        self.history.add_eval(self.step, err, drift)
        if snap is not None:
            snap.rel_l2, snap.param_drift = err, drift
        return snap

    def spectra(self, snap: Snapshot | None = None) -> dict[str, np.ndarray]:
        """Eigenvalues of K and its diagonal blocks on the fixed probe points, and the NTK drift.

        Up to :data:`DENSE_SPECTRA_MAX` probe points: all eigenvalues of the formed K. Above that: the
        top :data:`SPECTRA_TOP_K` of K and of each block by Lanczos on matrix-free K v products
        (:mod:`pinnlab.spectrum`), without forming K; the drift ||K_t - K_0|| / ||K_0|| is then NaN.
        """
        if sum(int(x.shape[0]) for x in self.probe) > DENSE_SPECTRA_MAX:
            return self._top_spectra(snap)
        k = ntk.kernel(self.apply, self.state.params, self.problem.terms, self.probe)
        if self.k0 is None:
            self.k0 = k if self.step == 0 else ntk.kernel(self.apply, self.params0, self.problem.terms, self.probe)
        offsets = np.concatenate([[0], np.cumsum([x.shape[0] for x in self.probe])])
        eig = {"K": ntk.eigenvalues(k)}
        for name, a, b in zip(self.problem.term_names, offsets[:-1], offsets[1:]):
            eig[f"K_{name}"] = ntk.eigenvalues(k[a:b, a:b])
        drift = ntk.relative_change(k, self.k0)
        self.history.add_spectra(self.step, eig, drift)
        if snap is not None:
            snap.spectra, snap.ntk_drift = eig, drift
        return eig

    def _top_spectra(self, snap: Snapshot | None) -> dict[str, np.ndarray]:
        from pinnlab import spectrum  # only for large probe sets

        params, terms = self.state.params, self.problem.terms
        top = lambda ts, xs: spectrum.top_eigenvalues(self.apply, params, ts, xs, k=min(
            SPECTRA_TOP_K, sum(int(x.shape[0]) for x in xs)))
        eig = {"K": top(terms, self.probe)}
        for term, x in zip(terms, self.probe):
            eig[f"K_{term.name}"] = top((term,), (x,))
        self.history.add_spectra(self.step, eig, float("nan"))
        if snap is not None:
            snap.spectra, snap.ntk_drift = eig, float("nan")
        return eig

    @property
    def dtype(self):
        """The parameters' dtype (float64 under jax x64)."""
        return jax.tree.leaves(self.state.params)[0].dtype

    def solver_state(self) -> dict[str, float] | None:
        """The kernel solve's damping ``mu`` (relative to Tr A / N), last gain ratio ``rho`` and step counts
        (:mod:`pinnlab.gauss_newton`); ``None`` for gradient optimisers."""
        st = self.state.opt_state
        if not isinstance(st, gauss_newton.LMState):
            return None
        return dict(mu=float(st.mu), rho=float(st.rho), accepted=int(st.accepted), rejected=int(st.rejected))

    def prediction(self) -> np.ndarray:
        return np.asarray(self._compiled.predict(self.state.params))

    # -- the run ------------------------------------------------------------------------------
    def snapshots(self, steps: int | None = None) -> Iterator[Snapshot]:
        """Train for ``steps`` (default: the config's) and yield a snapshot after every chunk
        (:func:`pinnlab.driver.drive`: evaluations and spectra fall exactly on their requested steps).
        Stops early on divergence, and when the kernel solve's damping reaches its cap (:meth:`stalled`:
        the message says so). The History is finished before the last snapshot is yielded.
        """
        return driver.drive(self, steps)

    # the driver's hooks
    def started(self) -> bool:
        return bool(self.history.eval_step)

    def halt(self, snap: Snapshot) -> driver.Halt | None:
        if snap.diverged is not None:
            return driver.Halt("diverged", divergence_message(snap.diverged, self.step), evaluate=False)
        stalled = self.stalled()
        if stalled:
            return driver.Halt("completed", f"stopped early at step {self.step} of {self.config.steps}: {stalled}",
                               evaluate=True)
        return None

    def finish(self, halt: driver.Halt | None) -> None:
        status, message = ("completed", "") if halt is None else halt[:2]
        self.history.finish(self.prediction(), self.seconds, status, message)

    def stalled(self) -> str:
        """Why the kernel solve can move no further ('' while it can): its damping reached its cap.

        mu grows 2x, 4x, 8x... with each rejection in a row, so the cap means about ten rejected steps in a
        row down to steps a gradient step would dwarf: the loss is at the rounding level of the precision,
        and every further step would be a full solve that is rejected.
        """
        st = self.solver_state()
        if st is None or st["mu"] < gauss_newton.MU_MAX:
            return ""
        return (f"the kernel solve's damping reached its cap ({gauss_newton.MU_MAX:g} x Tr A / N; {st['rejected']} of "
                f"{st['accepted'] + st['rejected']} steps rejected): the loss is at the rounding level of "
                f"{np.dtype(self.dtype)}"
                + ("" if self.dtype == np.float64 else " (float64: jax x64, --x64 in the CLI, goes further)"))

    def run(self, steps: int | None = None) -> History:
        """Train to the end and return the :class:`History`."""
        for _ in self.snapshots(steps):
            pass
        return self.history


def ntk_weights_at_init(problem: Problem, net_config: NetConfig, seed: int = 0) -> np.ndarray:
    """Algorithm 1's weights from the NTK traces of the initial network (paper Sec. 7.2)."""
    trainer = Trainer(problem, net_config, TrainConfig(seed=seed))
    tr = _jitted_traces(trainer.apply, problem)(trainer.state.params, trainer.probe)
    weights, _ = weighting.ntk().update(weighting.Stats(tr), jnp.ones_like(tr))
    return np.asarray(weights)


@functools.lru_cache(maxsize=32)
def _jitted_traces(apply, problem: Problem):
    return jax.jit(lambda params, points: ntk.traces(apply, params, problem.terms, points))


@functools.lru_cache(maxsize=32)
def _jitted_gradient_stats(apply, problem: Problem):  # compiled: op by op, a switch to gradnorm took seconds
    return jax.jit(lambda params, batches: gradient_stats(apply, problem, params, batches))
