"""Ensembles: many training runs of one PINN set-up advanced together as one vmapped, sharded computation.

A sweep (seeds, initial weights lambda_i, widths) is a list of :class:`Member` runs. Members of one
architecture are stacked along a leading "member" axis and trained by ONE jitted chunk: ``lax.scan`` of
``k`` steps of ``jax.vmap(make_step(...))``. The member axis is sharded over a ``jax.sharding.Mesh``
with one axis ``"runs"`` (default: every device of ``jax.devices()``), so each device trains its own
slice of the members and no device talks to another during a chunk. Member ``s`` starts exactly as
``Trainer`` with ``seed = s`` does (same key split, same network, points and probe), so its curves
equal the lone run's to float32 rounding (``tests/test_ensemble.py`` checks this).

Rules:

* Members that differ in width cannot share one stacked array: :class:`Ensemble` rejects them,
  :func:`run_ensemble` groups members by width and runs one :class:`Ensemble` (one compiled, sharded
  computation) per width, one after the other, and returns the results in member order.
* Everything but the seed, the initial weights and the width is shared (optimiser, learning rate,
  steps, chunk, weighting rule and its periods): those are one :class:`~pinnlab.training.TrainConfig`.
  Live controls (``rule``, ``update_every``, ``ntk_every``, ``lr_scale``, ``momentum``) are shared by
  all members, and so is the step counter: that keeps the NTK refresh of ``make_step`` a real
  ``lax.cond`` under ``vmap`` (a per-member predicate would turn it into a select that computes the
  NTK traces at every step).
* The member count need not divide the device count: the ensemble is padded with copies of its last
  member up to a multiple of it, and the copies are dropped from every result.
* A member whose loss turns non-finite at step ``d`` is frozen at its state of step ``d - 1`` (the last
  one with a finite loss: the one policy of :mod:`pinnlab.divergence`, which ``Trainer`` runs too)
  while the others go on; its history stops there and
  its status is ``"diverged"``. No NTK spectra are recorded (``spectra_at`` must be empty).

Speed: one ensemble replaces N Python-driven runs by one compiled computation and one host transfer
per chunk. On a CPU, XLA's kernels for these small nets are compute-bound, so that gains little: on a
shared 2-core machine the 21-run Fig. 5 grid took 0.7x-1.2x the wall time of 21 lone runs, on 1 or 4
host devices (``benchmarks/bench_ensemble.py``). Batching pays where one run leaves the device idle
(a GPU; not measured here), and several host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=N``,
set before jax is imported) can run member slices in parallel where cores are free.

Several processes (hosts): call ``jax.distributed.initialize()`` in every process before building an
ensemble. ``jax.devices()`` then lists the devices of all processes, so the default mesh spans them.
Every process must run the same script with the same members (SPMD): each builds the initial states
of all members (cheap and deterministic from the seeds) but places only the shards of its own devices
(``jax.make_array_from_callback``); results that live on several processes are gathered to every
process (``multihost_utils.process_allgather``), results on this process's devices alone are read
locally. A mesh of this process's devices alone (``make_mesh(jax.local_devices())``) runs an ensemble
of this process only, with no cross-process traffic; a mesh without any device of this process is
rejected. ``tests/test_ensemble_multiprocess.py`` runs 2 processes of 2 host (CPU) devices each on one
machine (gloo collectives, jax's default on CPU) and checks them against a one-process run; several
physical hosts and GPUs/TPUs are not tested.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pinnlab import checks, divergence, driver, weighting
from pinnlab.divergence import Guarded
from pinnlab.history import History, Snapshot
from pinnlab.nets import Net, NetConfig
from pinnlab.problems.base import Problem
from pinnlab.training import (
    Controls,
    TrainConfig,
    TrainState,
    divergence_message,
    live_controls,
    make_optimizer,
    make_step,
    start,
)

AXIS = "runs"


@dataclasses.dataclass(frozen=True)
class Member:
    """One run of an ensemble: what may differ between runs that share one computation.

    Attributes:
      seed: as ``TrainConfig.seed``: seeds the initialisation, the points and the NTK probe points.
      initial_weights: starting weight per term (``None``: the shared config's, else all 1).
      width: hidden width (``None``: the shared ``NetConfig``'s); see :func:`run_ensemble`.
      label: a name for progress output (default ``"seed <seed>"``).
    """

    seed: int
    initial_weights: tuple[float, ...] | None = None
    width: int | None = None
    label: str = ""

    def __post_init__(self):
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
            raise ValueError(f"Member seed must be an integer, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        if self.initial_weights is not None:
            object.__setattr__(self, "initial_weights", tuple(float(w) for w in self.initial_weights))
        if self.width is not None:
            if not isinstance(self.width, (int, np.integer)) or isinstance(self.width, bool) or self.width <= 0:
                raise ValueError(f"Member width must be a positive integer or None, got {self.width!r}")
            object.__setattr__(self, "width", int(self.width))
        if not self.label:
            object.__setattr__(self, "label", f"seed {self.seed}")


@dataclasses.dataclass
class EnsembleSnapshot:
    """What one :meth:`Ensemble.advance` produced, for every member (leading axis: member).

    ``losses``, ``weights``, ``traces``: ``(members, len(steps), terms)``. ``diverged``: the first step
    whose loss was non-finite, per member, -1 where none. ``rel_l2`` is filled when evaluated.
    """

    steps: np.ndarray
    losses: np.ndarray
    weights: np.ndarray
    traces: np.ndarray
    diverged: np.ndarray
    rel_l2: np.ndarray | None = None

    def member(self, i: int) -> Snapshot:
        """Member ``i``'s rows as a plain :class:`Snapshot` (e.g. for a progress bar)."""
        d = int(self.diverged[i])
        rel = None if self.rel_l2 is None else float(self.rel_l2[i])
        return Snapshot(steps=self.steps, losses=self.losses[i], weights=self.weights[i], traces=self.traces[i],
                        diverged=None if d < 0 else d, rel_l2=rel)


@dataclasses.dataclass
class EnsembleResult:
    """Per-member histories (in member order) and the wall time of the whole ensemble."""

    members: tuple[Member, ...]
    histories: list[History]
    seconds: float

    @property
    def rel_l2(self) -> np.ndarray:
        """The last evaluated relative L2 error per member; NaN where none was evaluated and where the member
        diverged (its last evaluation may be step 0's: a sweep must not count it as a result; the History
        keeps it)."""
        return np.array([h.rel_l2[-1] if h.rel_l2 and h.status != "diverged" else np.nan for h in self.histories],
                        np.float64)

    @property
    def status(self) -> list[str]:
        return [h.status for h in self.histories]


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"runs"`` over ``devices`` (default ``jax.devices()``, every host's)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("make_mesh needs at least one device, got none; pass devices=None for jax.devices()")
    return Mesh(np.asarray(devices, dtype=object), (AXIS,))


# -- the compiled computation -----------------------------------------------------------------
# The step counter is shared (None): the NTK-refresh predicate stays unbatched, so lax.cond stays a cond.
_STATE_AXES = TrainState(0, 0, 0, 0, 0, None)
_CARRY_AXES = Guarded(_STATE_AXES, _STATE_AXES, 0, 0)


def _keys(carry: Guarded, fn) -> Guarded:
    """Apply ``fn`` to both PRNG keys (raw uint32 outside the jitted chunk, typed keys inside)."""
    return carry._replace(state=carry.state._replace(key=fn(carry.state.key)),
                          prev=carry.prev._replace(key=fn(carry.prev.key)))


def _shardings(mesh: Mesh) -> tuple[NamedSharding, NamedSharding, Guarded]:
    members, shared = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())
    state = TrainState(members, members, members, members, members, shared)
    return members, shared, Guarded(state, state, members, members)


@functools.lru_cache(maxsize=32)
def _chunk(apply, problem: Problem, optimizer, mesh: Mesh, length: int, rules: tuple[str, ...] = ()):
    """The jitted, sharded scan of ``length`` vmapped steps (cached: ensembles of one structure share it;
    ``rules``, the registered weighting rules, keys the cache on the branches the step was compiled with)."""
    guarded = divergence.guard(make_step(apply, problem, optimizer), shared_step=True)
    step = jax.vmap(guarded, in_axes=(_CARRY_AXES, None, 0, 0), out_axes=(_CARRY_AXES, 0))
    members, shared, carry_sh = _shardings(mesh)

    def run(carry, controls, data, probe):
        carry = _keys(carry, jax.random.wrap_key_data)
        carry, metrics = jax.lax.scan(lambda c, _: step(c, controls, data, probe), carry, None, length=length)
        return _keys(carry, jax.random.key_data), metrics

    return jax.jit(run, in_shardings=(carry_sh, shared, members, members),
                   out_shardings=(carry_sh, NamedSharding(mesh, P(None, AXIS))))


@functools.lru_cache(maxsize=32)
def _measures(apply, problem: Problem, mesh: Mesh):
    """Jitted per-member (relative L2 error, parameter drift), and prediction on the problem's grid."""
    members = NamedSharding(mesh, P(AXIS))

    def errors(p, p0):
        flat, flat0 = (jax.flatten_util.ravel_pytree(x)[0] for x in (p, p0))
        return problem.rel_l2(apply, p), jnp.linalg.norm(flat - flat0) / jnp.linalg.norm(flat0)

    grid = jnp.asarray(problem.grid)
    predict = jax.jit(jax.vmap(lambda p: apply(p, grid)), out_shardings=members)
    return jax.jit(jax.vmap(errors), out_shardings=members), predict


# -- host <-> devices -------------------------------------------------------------------------
def _place(tree, sharding: NamedSharding):
    """Host arrays -> global arrays; each process fills only its own shards (multi-host safe)."""
    def one(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(one, tree)


def _fetch(tree):
    """Global arrays -> numpy on this process (gathered from every process when they span several)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)

    def one(x):
        # process_allgather of a fully addressable array (a mesh of this process's devices) would stack
        # every process's copy and wait for the others: read it here instead.
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return multihost_utils.process_allgather(x, tiled=True)
        return np.asarray(jax.device_get(x))

    return jax.tree.map(one, tree)


def _stack(trees: list):
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


# -- checks -----------------------------------------------------------------------------------
def _as_members(members) -> tuple[Member, ...]:
    """``Member`` objects, with plain integers read as seeds."""
    if isinstance(members, (int, np.integer, str, bytes, Member)):
        raise TypeError(f"members must be a sequence, got {members!r}; e.g. members=[Member(0), Member(1)]")
    out = tuple(Member(m) if isinstance(m, (int, np.integer)) and not isinstance(m, bool) else m for m in members)
    if not out:
        raise ValueError("an ensemble needs at least one member, got none; e.g. members=[Member(0), Member(1)]")
    for m in out:
        if not isinstance(m, Member):
            raise TypeError(f"members must be Member(...) or integer seeds, got {m!r}; "
                            "e.g. Member(seed=0, initial_weights=(100.0, 1.0))")
    return out


def _check(problem: Problem, net_config: NetConfig, config: TrainConfig, members: tuple[Member, ...]) -> None:
    if config.spectra_at:
        raise ValueError(f"an Ensemble records no NTK spectra, got spectra_at={config.spectra_at!r}; drop it, or "
                         "run the member alone with Trainer(problem, net, dataclasses.replace(config, seed=...))")
    if weighting.needs_gradients(config.weighting):
        raise ValueError(f"an Ensemble runs the trace-based weighting rules only, got {config.weighting!r}; run "
                         "each member alone with Trainer")
    m = len(problem.terms)
    for i, member in enumerate(members):
        weights = config.initial_weights if member.initial_weights is None else member.initial_weights
        if weights is not None and len(weights) != m:
            raise ValueError(f"member {i} ({member.label}): initial_weights needs {m} values, one per term "
                             f"{problem.term_names}, got {weights!r}")
        if member.width is not None and member.width != net_config.width:
            raise ValueError(f"member {i} ({member.label}) has width {member.width} but this Ensemble's net has "
                             f"width {net_config.width}: one Ensemble shares one architecture; use "
                             "run_ensemble(...), which runs one Ensemble per width")


def _check_mesh(mesh: Mesh | None) -> Mesh:
    mesh = make_mesh() if mesh is None else mesh
    if not isinstance(mesh, Mesh) or AXIS not in mesh.axis_names:
        axes = getattr(mesh, "axis_names", None)
        raise ValueError(f"mesh needs an axis named {AXIS!r} for the members, got {mesh!r} (axes {axes}); "
                         "build one with pinnlab.ensemble.make_mesh(devices)")
    here = jax.process_index()
    if jax.process_count() > 1 and not any(d.process_index == here for d in mesh.devices.flat):
        raise ValueError(f"mesh has no device of this process (process {here} of {jax.process_count()}): "
                         "every process runs the ensemble (SPMD) on its own devices; use make_mesh() for all "
                         "processes' devices, or make_mesh(jax.local_devices()) for this process alone")
    return mesh


# -- the ensemble -----------------------------------------------------------------------------
class _Start(NamedTuple):
    """A member's starting point: what gets stacked along the member axis."""

    params: Any
    opt_state: Any
    weights: np.ndarray
    key: np.ndarray
    data: tuple
    probe: tuple


def _start(problem: Problem, net_config: NetConfig, weights, optimizer, seed: int) -> tuple[_Start, Net]:
    """A member's starting point (:func:`pinnlab.training.start`, as a lone run's), on the host for stacking."""
    s = start(problem, net_config, optimizer, seed, weights)
    return _Start(s.params, s.opt_state, np.asarray(s.weights), np.asarray(jax.random.key_data(s.key)), s.data,
                  s.probe), s.net


class Ensemble:
    """Runs of one architecture trained together: one vmapped chunk, members sharded over a mesh.

    ``members`` (``Member`` objects or integer seeds) share ``problem``, ``net_config`` and ``config``
    except for the seed, the initial weights and (only if equal to ``net_config.width``) the width;
    ``config.seed`` is ignored and ``config.initial_weights`` is the default of members without their own.
    Members of other widths are rejected: :func:`run_ensemble` groups them. ``mesh`` needs an axis
    ``"runs"`` (default :func:`make_mesh`: all devices). Drive it like :class:`~pinnlab.training.Trainer`:
    :meth:`advance`, :meth:`evaluate`, :meth:`snapshots`, :meth:`run`. Live controls (attributes, read
    at the next chunk, shared by all members): ``rule``, ``update_every``, ``ntk_every``, ``lr_scale``,
    ``momentum``.
    """

    def __init__(self, problem: Problem, net_config: NetConfig, config: TrainConfig,
                 members: Sequence[Member | int], mesh: Mesh | None = None):
        self.members = _as_members(members)
        _check(problem, net_config, config, self.members)
        self.problem, self.net_config, self.config = problem, net_config, config
        self.mesh = _check_mesh(mesh)
        self.optimizer = make_optimizer(config)
        starts = [_start(problem, net_config, self._weights(m), self.optimizer, m.seed) for m in self.members]
        net = starts[0][1]  # one architecture: every member shares its apply (and compiled code)
        self.apply, self.num_params = net.apply, net.num_params
        pad = -len(starts) % self.mesh.shape[AXIS]  # copies of the last member fill the last devices
        self.padded = len(starts) + pad
        self._place_state([s for s, _ in starts] + [starts[-1][0]] * pad)
        self.rule, self.update_every = config.weighting, config.update_every
        self.ntk_every, self.lr_scale, self.momentum = config.ntk_every, 1.0, config.momentum
        self.step, self.seconds = 0, 0.0
        self.diverged = np.full(len(self.members), -1)
        self._rows: list[tuple[np.ndarray, ...]] = []
        self._evals: list[list[tuple[int, float, float]]] = [[] for _ in self.members]

    def _weights(self, member: Member):
        return self.config.initial_weights if member.initial_weights is None else member.initial_weights

    def _place_state(self, starts: list[_Start]) -> None:
        """Stack the members on the host and put each device's slice on it."""
        members, _, carry_sh = _shardings(self.mesh)
        s = _Start(*_stack([tuple(x) for x in starts]))
        m = len(self.problem.terms)
        state = TrainState(s.params, s.opt_state, s.weights, np.zeros((self.padded, m), np.float32), s.key,
                           np.asarray(0, np.int32))
        host = Guarded(state, state, np.ones(self.padded, bool), np.full(self.padded, -1, np.int32))
        self.carry = jax.tree.map(lambda sh, x: _place(x, sh), carry_sh, host,
                                  is_leaf=lambda x: isinstance(x, NamedSharding))
        self.params0 = self.carry.state.params
        self.data, self.probe = _place(s.data, members), _place(s.probe, members)

    # -- training -----------------------------------------------------------------------------
    @property
    def params(self):
        """The stacked parameters, leading axis: member (padded to a multiple of the device count)."""
        return self.carry.state.params

    def controls(self) -> Controls:
        return live_controls(self.rule, self.update_every, self.ntk_every, self.lr_scale, self.momentum)

    def advance(self, n: int) -> EnsembleSnapshot:
        """Run ``n`` steps of every member in chunks of ``config.chunk``; one host transfer per chunk."""
        n = checks.integer("steps to advance", n, 0, checks.MAX_STEPS)
        t0, start, controls, parts = time.perf_counter(), self.step, self.controls(), []
        if jax.process_count() > 1:  # a jit over several processes takes global arrays, not host scalars
            controls = _place(controls, NamedSharding(self.mesh, P()))
        remaining = n
        while remaining > 0:
            length = min(self.config.chunk, remaining)
            chunk = _chunk(self.apply, self.problem, self.optimizer, self.mesh, length, tuple(weighting.RULES))
            self.carry, metrics = chunk(self.carry, controls, self.data, self.probe)
            metrics, diverged = _fetch((metrics, self.carry.diverged))
            parts.append(metrics)
            self.diverged = np.asarray(diverged[: len(self.members)])
            self.step, remaining = self.step + length, remaining - length
        n_real, m = len(self.members), len(self.problem.terms)
        # (steps, members, terms) per chunk -> (members, steps, terms), padding copies dropped
        rows = tuple(np.concatenate([np.zeros((0, self.padded, m), np.float32)] + [p[i] for p in parts])
                     .transpose(1, 0, 2)[:n_real] for i in range(3))
        self._rows.append(rows)
        self.seconds += time.perf_counter() - t0
        return EnsembleSnapshot(np.arange(start, self.step), *rows, diverged=self.diverged.copy())

    def evaluate(self, snap: EnsembleSnapshot | None = None) -> np.ndarray:
        """Relative L2 error of every member now; recorded for the members whose loss is still finite."""
        errors, _ = _measures(self.apply, self.problem, self.mesh)
        err, dft = _fetch(errors(self.carry.state.params, self.params0))
        err, dft = np.asarray(err[: len(self.members)]), np.asarray(dft[: len(self.members)])
        for i in np.flatnonzero(self.diverged < 0):
            self._evals[i].append((self.step, float(err[i]), float(dft[i])))
        if snap is not None:
            snap.rel_l2 = err
        return err

    def snapshots(self, steps: int | None = None) -> Iterator[EnsembleSnapshot]:
        """Train for ``steps`` (default: the config's), yielding after every chunk; evaluations fall on
        the steps a lone ``Trainer`` evaluates at (one host loop: :func:`pinnlab.driver.drive`). Stops
        early once every member has diverged."""
        return driver.drive(self, steps)

    # the driver's hooks
    def started(self) -> bool:
        return any(self._evals)

    def halt(self, snap: EnsembleSnapshot) -> driver.Halt | None:
        if (self.diverged < 0).any():
            return None
        return driver.Halt("diverged", "every member diverged", evaluate=False)

    def spectra(self, snap=None):
        raise AssertionError("an ensemble records no spectra (_check refuses spectra_at)")

    def finish(self, halt: driver.Halt | None) -> None:
        pass  # the members' Histories are built by result()

    def run(self, steps: int | None = None) -> EnsembleResult:
        """Train to the end; the per-member histories and final errors."""
        for _ in self.snapshots(steps):
            pass
        return self.result()

    def result(self) -> EnsembleResult:
        """Per-member :class:`History` (as a lone ``Trainer`` records it) and the ensemble's wall time.

        ``History.seconds`` of every member is the wall time of the whole ensemble, not a share of it.
        """
        _, predict = _measures(self.apply, self.problem, self.mesh)
        prediction = np.asarray(_fetch(predict(self.carry.state.params)))
        m = len(self.problem.terms)
        rows = [np.concatenate([np.zeros((len(self.members), 0, m), np.float32)] + [r[i] for r in self._rows], 1)
                for i in range(3)]
        histories = [self._history(i, [r[i] for r in rows], prediction[i]) for i in range(len(self.members))]
        return EnsembleResult(self.members, histories, self.seconds)

    def _history(self, i: int, rows: list[np.ndarray], prediction: np.ndarray) -> History:
        member, d = self.members[i], int(self.diverged[i])
        config = dataclasses.replace(self.config, seed=member.seed, initial_weights=self._weights(member))
        h = History.empty(self.problem, self.net_config, config, self.num_params)
        kept = len(rows[0]) if d < 0 else d  # as a lone Trainer: rows up to the kept state d - 1, its own included
        h.append(Snapshot(np.arange(kept), *(r[:kept] for r in rows)))
        for step, err, drift in self._evals[i]:
            h.add_eval(step, err, drift)
        if d < 0:
            h.finish(prediction, self.seconds, "completed", "")
        else:
            message = divergence_message(d, max(d - 1, 0))
            h.finish(prediction, self.seconds, "diverged", message)
        return h


def run_ensemble(problem: Problem, net_config: NetConfig, config: TrainConfig, members: Sequence[Member | int],
                 mesh: Mesh | None = None,
                 progress: Callable[[Ensemble, EnsembleSnapshot], None] | None = None) -> EnsembleResult:
    """Train ``members`` of any widths: one :class:`Ensemble` per width (one compiled, sharded computation
    each), run one after the other; histories come back in member order, ``seconds`` is the sum.

    ``progress(ensemble, snapshot)`` is called after every chunk of every group.
    """
    members = _as_members(members)
    groups: dict[int, list[int]] = {}
    for i, m in enumerate(members):
        groups.setdefault(net_config.width if m.width is None else m.width, []).append(i)
    histories: list[History | None] = [None] * len(members)
    seconds = 0.0
    for width, index in groups.items():
        ensemble = Ensemble(problem, dataclasses.replace(net_config, width=width), config,
                            [members[i] for i in index], mesh)
        for snap in ensemble.snapshots():
            if progress is not None:
                progress(ensemble, snap)
        result = ensemble.result()
        for i, h in zip(index, result.histories, strict=True):
            histories[i] = h
        seconds += result.seconds
    return EnsembleResult(members, histories, seconds)
