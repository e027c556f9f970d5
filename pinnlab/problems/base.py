"""A PDE problem is a domain, an exact solution and a tuple of named loss terms.

A :class:`Term` is one residual ``r(u, x)`` of the network's point function ``u`` at one point ``x``
plus a sampler for its points. That single definition drives the term's loss, its NTK block
``K_ij = J_i J_j^T`` (``J_i = d r_i / d theta``) and its weight: nothing else restates the PDE.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pinnlab.derivatives import d1, d2

PointFn = Callable[[jax.Array], jax.Array]
Residual = Callable[[PointFn, jax.Array], jax.Array]
Sampler = Callable[[jax.Array, int], jax.Array]


@dataclasses.dataclass(frozen=True)
class Term:
    """One loss term.

    Attributes:
      name: short label (``"u"``, ``"ut"``, ``"r"``) used in weights, logs and plots.
      residual: ``residual(u, x) -> scalar`` for one point ``x`` of shape ``(d,)``; ``u`` is the
        network as a point function. The loss of the term is ``scale * mean(residual**2)``.
      sampler: ``sampler(key, n) -> (n, d)`` points for the term.
      n: points per training batch.
      n_ntk: points on which the term's NTK block is computed (for weights and spectra).
      scale: loss multiplier (the released wave code sums three means of 100 points for ``u``,
        which is 3 x the mean over 300 points).
      operator: for a term linear in the network, its coefficients by stream (``"u"``, ``"d<i>"`` for
        du/dx_i, ``"dd<i>"`` for d2u/dx_i2), so that ``residual = sum_k c_k u_k - forcing``. Write such a
        term with :func:`linear`, which derives the residual and this dict from one :class:`Linear`; it
        enables the structured NTK (:mod:`pinnlab.ntk_structured`). ``None``: the Jacobian path.
    """

    name: str
    residual: Residual
    sampler: Sampler
    n: int
    n_ntk: int
    scale: float = 1.0
    operator: dict | None = dataclasses.field(default=None, hash=False, compare=False)

    def residuals(self, apply, params, points: jax.Array) -> jax.Array:
        """Residuals at a batch of points, shape ``(n,)``."""
        return jax.vmap(lambda x: self.residual(lambda y: apply(params, y), x))(points)

    def loss(self, apply, params, points: jax.Array) -> jax.Array:
        return self.scale * jnp.mean(self.residuals(apply, params, points) ** 2)


@dataclasses.dataclass(frozen=True)
class Linear:
    """A linear operator on the network, stated once: ``u u(x) + sum_i d[i] du/dx_i + sum_j dd[j] d2u/dx_j^2``.

    :func:`linear` makes a term from it and a forcing: the residual follows from the coefficients, and so
    does the structured NTK (:mod:`pinnlab.ntk_structured` reads :meth:`streams`).
    """

    u: float = 0.0
    d: tuple[tuple[int, float], ...] | dict = ()
    dd: tuple[tuple[int, float], ...] | dict = ()

    def __post_init__(self):
        for name in ("d", "dd"):  # a dict for writing, sorted pairs for hashing
            pairs = getattr(self, name)
            object.__setattr__(self, name, tuple(sorted((int(i), float(c)) for i, c in dict(pairs).items())))
        object.__setattr__(self, "u", float(self.u))

    def streams(self) -> dict[str, float]:
        """The coefficients by stream name of :mod:`pinnlab.streams` (``"u"``, ``"d0"``, ``"dd1"``)."""
        out = {"u": self.u} if self.u else {}
        out.update({f"d{i}": c for i, c in self.d if c})
        out.update({f"dd{i}": c for i, c in self.dd if c})
        return out

    def __call__(self, u: PointFn, x: jax.Array) -> jax.Array:
        """The operator applied to the point function ``u`` at ``x``."""
        parts = [self.u * u(x)] if self.u else []
        parts += [c * d1(u, i)(x) for i, c in self.d if c]
        parts += [c * d2(u, i)(x) for i, c in self.dd if c]
        return sum(parts[1:], parts[0])


def linear(name: str, op: Linear, forcing: Callable[[jax.Array], jax.Array] | None, sampler: Sampler, n: int,
           n_ntk: int, scale: float = 1.0) -> Term:
    """The term ``op(u)(x) - forcing(x)`` (``forcing`` None: zero), with its operator declared from ``op``."""
    if not op.streams():
        raise ValueError(f"term {name!r}: the operator has no non-zero coefficient")
    if forcing is None:
        residual = op
    else:
        def residual(u, x):
            return op(u, x) - forcing(x)
    return Term(name, residual, sampler, n, n_ntk, scale, operator=op.streams())


@dataclasses.dataclass(frozen=True, eq=False)  # identity hash: caches of compiled code key on it
class Problem:
    """A PDE with named loss terms, an exact solution and an evaluation grid.

    Attributes:
      name: registry name (``"poisson"``, ``"wave"``, ``"heat"``).
      coords: coordinate names in input order, e.g. ``("x",)`` or ``("t", "x")``.
      terms: the loss terms.
      exact: ``exact(points (n, d)) -> (n,)``.
      grid: evaluation points ``(n, d)``; ``grid_shape`` reshapes values for 2D plots.
      mean, std: input statistics for standardisation (per coordinate).
      resample: draw fresh training points every step (wave code) or keep one fixed set (Poisson).
      default_init: the initialiser of the released code for this problem (``paper_code``).
      params: the problem's parameters, for configs and reports.
    """

    name: str
    coords: tuple[str, ...]
    terms: tuple[Term, ...]
    exact: Callable[[jax.Array], jax.Array]
    grid: np.ndarray
    grid_shape: tuple[int, ...]
    mean: np.ndarray
    std: np.ndarray
    resample: bool
    default_init: str
    params: dict

    @property
    def dim(self) -> int:
        return len(self.coords)

    @property
    def term_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.terms)

    def term(self, name: str) -> Term:
        for t in self.terms:
            if t.name == name:
                return t
        raise KeyError(f"problem {self.name!r} has no term {name!r}; terms: {self.term_names}")

    def sample(self, key: jax.Array, ntk: bool = False) -> tuple[jax.Array, ...]:
        """One batch of points per term (``n_ntk`` points each when ``ntk``)."""
        keys = jax.random.split(key, len(self.terms))
        return tuple(t.sampler(k, t.n_ntk if ntk else t.n) for t, k in zip(self.terms, keys))

    def rel_l2(self, apply, params) -> jax.Array:
        """Relative L2 error ``||u - u_hat|| / ||u||`` on the evaluation grid."""
        grid = jnp.asarray(self.grid)
        u = self.exact(grid)
        return jnp.linalg.norm(apply(params, grid) - u) / jnp.linalg.norm(u)


def fixed(points) -> Sampler:
    """A sampler that always returns the same points, tiled or cut to ``n``."""
    pts = np.asarray(points, np.float32)

    def sample(key, n):
        del key
        idx = np.arange(n) % len(pts)
        return jnp.asarray(pts[idx])

    return sample


def uniform(low, high) -> Sampler:
    """Uniform points in the box ``[low, high]`` (one entry per coordinate)."""
    low = jnp.asarray(low, jnp.float32)
    high = jnp.asarray(high, jnp.float32)

    def sample(key, n):
        return low + (high - low) * jax.random.uniform(key, (n, low.shape[0]))

    return sample


def stacked(*parts: tuple[Sampler, float]) -> Sampler:
    """Concatenate samplers, each giving the given fraction of the points (remainder to the last)."""

    def sample(key, n):
        keys = jax.random.split(key, len(parts))
        counts = [int(round(f * n)) for _, f in parts[:-1]]
        counts.append(n - sum(counts))
        return jnp.concatenate([s(k, c) for (s, _), k, c in zip(parts, keys, counts)])

    return sample


def mesh(*axes: np.ndarray) -> np.ndarray:
    """All combinations of the axes as ``(prod(len), d)`` points, first axis slowest."""
    grids = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=-1).astype(np.float32)


def space_time(n_eval: int) -> dict:
    """Grid and input statistics of the unit square (t, x) in [0, 1]^2 with uniform sampling.

    The statistics are the exact mean 0.5 and std 1/sqrt(12) of U[0, 1] (the released wave code
    estimates them from 1e5 samples); the grid is ``n_eval`` x ``n_eval``, t slowest.
    """
    axis = np.linspace(0.0, 1.0, n_eval)
    return dict(coords=("t", "x"), grid=mesh(axis, axis), grid_shape=(n_eval, n_eval), mean=np.full(2, 0.5),
                std=np.full(2, 1.0 / np.sqrt(12.0)), resample=True)
