"""The neural tangent kernel of a PINN, block by block.

For loss terms i and j with residuals r_i, r_j at points X_i, X_j, the block is

    K_ij = J_i J_j^T,    J_i = d r_i(X_i; theta) / d theta   (n_i x P, all weights and biases).

The full kernel K stacks the blocks in term order. Only the diagonal of a block is needed for the
weights of Algorithm 1 (Tr K_ii = sum_x ||d r_i(x) / d theta||^2).

Two methods compute the same numbers (tests pin both against an explicit J J^T in float64):

- ``"structured"`` (:mod:`pinnlab.ntk_structured`): for a pinnlab MLP and a term that declares its
  linear operator, K is assembled from the Taylor-stream factors of each layer, never forming J:
  ~10x faster and ~10x less memory at paper scale.
- ``"jacobian"``: per-point parameter gradients for any net and any term. Blocks are computed in
  chunks of points so that memory stays O(chunk x P): a left panel of J_i is kept while panels of
  J_j stream past it; the diagonal is computed point by point.

``method="auto"`` (the default) takes the structured path where it applies to every term involved and
the Jacobian path otherwise; :func:`explain` says which, and why.

Every kernel function runs its matmuls at ``precision="highest"`` by default (:func:`matmul_precision`):
on GPUs JAX's default float32 matmuls are TF32, and the wave kernel then came out 4-7e-4 off its
float64 value on an H200 (3e-7 at "highest"), too coarse for spectra that span many decades. CPUs
compute float32 matmuls in full either way.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pinnlab import checks, ntk_structured
from pinnlab.nets import Apply, Params
from pinnlab.problems.base import Term

DEFAULT_MAX_BYTES = 1 << 30  # Jacobian panels in flight for `block`/`kernel`
DEFAULT_TRACE_BYTES = 1 << 28  # per-point gradients in flight for `diagonal`/`traces`
METHODS = ("auto", "structured", "jacobian")
PRECISION = "highest"  # float32 matmuls in full, not TF32 (see the module docstring)


def matmul_precision(precision: str | None):
    """A context running the matmuls traced inside it at ``precision`` (``jax.default_matmul_precision``;
    None: JAX's default, TF32 on recent GPUs). Jitted functions are cached per precision."""
    if precision is None:
        return contextlib.nullcontext()
    try:
        return jax.default_matmul_precision(precision)
    except ValueError as exc:
        raise ValueError(f"precision={precision!r} is not a JAX matmul precision: use 'highest' (exact "
                         f"float32), 'default', 'tensorfloat32', ... or None ({exc})") from None


def explain(apply: Apply, terms: Sequence[Term]) -> dict[str, str]:
    """Per term name, the method ``"auto"`` takes for it and why: ``"structured"`` or
    ``"jacobian: <reason>"`` (a kernel mixing both takes the Jacobian path)."""
    out = {}
    for term in terms:
        why = ntk_structured.reason_not_structured(apply, term)
        out[term.name] = "structured" if why is None else f"jacobian: {why}"
    return out


def resolve_method(apply: Apply, terms: Sequence[Term], method: str = "auto") -> str:
    """``"structured"`` or ``"jacobian"`` for these terms; ``"structured"`` raises if it does not apply."""
    if method not in METHODS:
        raise ValueError(f"unknown NTK method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "jacobian":
        return method
    if method == "structured":
        ntk_structured.check_applies(apply, terms)
        return method
    applies = all(ntk_structured.reason_not_structured(apply, t) is None for t in terms)
    return "structured" if applies else "jacobian"


def point_gradient(apply: Apply, term: Term):
    """``(params, x) -> d r(x) / d theta`` (a params-shaped pytree) for one point ``x``."""

    def r(params, x):
        return term.residual(lambda y: apply(params, y), x)

    return jax.grad(r)


def jacobian(apply: Apply, params: Params, term: Term, points: jax.Array) -> Params:
    """J of a term at ``points`` as a pytree with a leading axis of length n (not chunked)."""
    return jax.vmap(point_gradient(apply, term), in_axes=(None, 0))(params, points)


def flat_jacobian(apply: Apply, params: Params, term: Term, points: jax.Array) -> jax.Array:
    """J as an ``(n, P)`` matrix, columns in ``jax.flatten_util.ravel_pytree`` order."""
    jac = jacobian(apply, params, term, points)
    return jnp.concatenate([leaf.reshape(points.shape[0], -1) for leaf in jax.tree.leaves(jac)], 1)


def num_params(params: Params) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


@functools.lru_cache(maxsize=64)
def _jitted_jacobian(apply, term):
    return jax.jit(lambda params, x: jacobian(apply, params, term, x))


@jax.jit
def _contract(ja: Params, jb: Params) -> jax.Array:
    pairs = zip(jax.tree.leaves(ja), jax.tree.leaves(jb))
    return sum(a.reshape(a.shape[0], -1) @ b.reshape(b.shape[0], -1).T for a, b in pairs)


def _pad(points: jax.Array, size: int) -> jax.Array:
    """Repeat the last point so every chunk has the same shape (one compilation)."""
    extra = size - points.shape[0]
    return points if extra == 0 else jnp.concatenate([points, jnp.repeat(points[-1:], extra, 0)])


def _chunks(points: jax.Array, size: int):
    for start in range(0, points.shape[0], size):
        part = points[start : start + size]
        yield start, part.shape[0], _pad(part, size)


def _panel_rows(apply, params, term_i, x_i, rights, max_bytes):
    """Blocks K_ij for one left term against each ``(term_j, x_j)`` in ``rights``."""
    leaves = jax.tree.leaves(params)
    row_bytes = num_params(params) * leaves[0].dtype.itemsize
    left = max(1, min(x_i.shape[0], int(0.6 * max_bytes) // row_bytes))
    out = [np.zeros((x_i.shape[0], x_j.shape[0]), leaves[0].dtype) for _, x_j in rights]
    jac_i = _jitted_jacobian(apply, term_i)
    for a0, na, xa in _chunks(x_i, left):
        ja = jac_i(params, xa)
        for k, (term_j, x_j) in enumerate(rights):
            if term_j is term_i and x_j is x_i and left >= x_i.shape[0]:
                out[k][:] = np.asarray(_contract(ja, ja))[:na, :na]  # one panel: reuse J_i
                continue
            right = max(1, min(x_j.shape[0], int(0.3 * max_bytes) // row_bytes))
            jac_j = _jitted_jacobian(apply, term_j)
            for b0, nb, xb in _chunks(x_j, right):
                out[k][a0 : a0 + na, b0 : b0 + nb] = np.asarray(_contract(ja, jac_j(params, xb)))[:na, :nb]
    return out


def block(
    apply: Apply, params: Params, term_i: Term, x_i, term_j: Term | None = None, x_j=None,
    *, max_bytes: int | None = None, method: str = "auto", precision: str | None = PRECISION,
) -> np.ndarray:
    """K_ij = J_i J_j^T (``K_ii`` when the second term is omitted), as a host array.

    ``max_bytes`` bounds the panels held at once (Jacobian panels, default 1 GiB, or stream Gram
    panels, default 128 MiB); lower it on small machines. ``method`` and ``precision``: see the module
    docstring.
    """
    with matmul_precision(precision):
        return _block(apply, params, term_i, x_i, term_j, x_j, max_bytes, method)


def _block(apply, params, term_i, x_i, term_j, x_j, max_bytes, method) -> np.ndarray:
    same = term_j is None
    x_i = jnp.asarray(x_i)
    if same:
        term_j, x_j = term_i, x_i
    x_i, x_j = point_sets((term_i, term_j), (x_i, x_j))
    if resolve_method(apply, (term_i, term_j), method) == "structured":
        fn = ntk_structured.jitted_block(apply, term_i, term_j, same, _budget(max_bytes, "structured"))
        return np.asarray(fn(params, x_i) if same else fn(params, x_i, x_j))
    return _panel_rows(apply, params, term_i, x_i, [(term_j, x_j)], _budget(max_bytes, "jacobian"))[0]


def _budget(max_bytes: int | None, method: str) -> int:
    if max_bytes is None:
        return ntk_structured.DEFAULT_MAX_BYTES if method == "structured" else DEFAULT_MAX_BYTES
    if not isinstance(max_bytes, (int, np.integer)) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    return int(max_bytes)


def kernel(
    apply: Apply, params: Params, terms: Sequence[Term], points: Sequence,
    *, max_bytes: int | None = None, method: str = "auto", precision: str | None = PRECISION,
) -> np.ndarray:
    """The full K = J J^T with J = [J_1; ...; J_m], blocks in term order, as a host array."""
    with matmul_precision(precision):
        return _kernel(apply, params, terms, [jnp.asarray(x) for x in points], max_bytes, method)


def point_sets(terms: Sequence[Term], points: Sequence) -> list:
    """``points`` as arrays, checked against ``terms``: one non-empty ``(n, d)`` set per term, one ``d``."""
    points = list(points)
    if len(points) != len(terms):
        names = ", ".join(t.name for t in terms)
        raise ValueError(f"{len(terms)} terms ({names}) need {len(terms)} point sets, got {len(points)}")
    points = [jnp.asarray(x) for x in points]
    for t, x in zip(terms, points):
        _one_set(t, x)
    if len({x.shape[1] for x in points}) > 1:
        raise ValueError(f"point sets of one kernel need one dimension, got shapes {[x.shape for x in points]}")
    return points


def _one_set(term: Term, x) -> None:
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"term {term.name!r} needs points of shape (n, d) with n >= 1, got shape {x.shape}")


def _kernel(apply, params, terms, points, max_bytes, method) -> np.ndarray:
    points = point_sets(terms, points)
    if resolve_method(apply, terms, method) == "structured":
        return ntk_structured.host_kernel(apply, params, terms, points, _budget(max_bytes, "structured"))
    max_bytes = _budget(max_bytes, "jacobian")
    sizes = [x.shape[0] for x in points]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    dtype = jax.tree.leaves(params)[0].dtype
    full = np.zeros((offsets[-1], offsets[-1]), dtype)
    for i, (term_i, x_i) in enumerate(zip(terms, points)):
        rights = [(terms[j], points[j]) for j in range(i, len(terms))]
        rows = _panel_rows(apply, params, term_i, x_i, rights, max_bytes)
        for j, kij in zip(range(i, len(terms)), rows):
            full[offsets[i] : offsets[i + 1], offsets[j] : offsets[j + 1]] = kij
            full[offsets[j] : offsets[j + 1], offsets[i] : offsets[i + 1]] = kij.T
    return full


def diagonal(
    apply: Apply, params: Params, term: Term, points: jax.Array, *, batch_size: int | None = None,
    method: str = "auto", precision: str | None = PRECISION,
) -> jax.Array:
    """diag(K_ii) = ||d r(x) / d theta||^2 per point.

    The Jacobian path never holds more than ``batch_size`` per-point gradients (the structured path
    holds O(n S (in + out)) numbers per layer and ignores it). Pure and traceable: usable inside
    ``jit`` and inside the training step.
    """
    if batch_size is not None:
        batch_size = checks.integer("batch_size", batch_size, 1)
    with matmul_precision(precision):
        return _diagonal(apply, params, term, points, batch_size, method)


def _diagonal(apply, params, term, points, batch_size, method) -> jax.Array:
    points = jnp.asarray(points)
    _one_set(term, points)
    if resolve_method(apply, (term,), method) == "structured":
        return ntk_structured.diagonal(apply, params, term, points)
    grad = point_gradient(apply, term)
    if batch_size is None:
        row_bytes = num_params(params) * jax.tree.leaves(params)[0].dtype.itemsize
        batch_size = max(1, min(points.shape[0], DEFAULT_TRACE_BYTES // row_bytes))

    def sq_norm(x):
        return sum(jnp.sum(g**2) for g in jax.tree.leaves(grad(params, x)))

    return jax.lax.map(sq_norm, points, batch_size=batch_size)


def traces(
    apply: Apply, params: Params, terms: Sequence[Term], points: Sequence, *, method: str = "auto",
    precision: str | None = PRECISION,
) -> jax.Array:
    """``[Tr K_11, ..., Tr K_mm]``: the numbers Algorithm 1 needs. Pure and traceable."""
    return jnp.stack([jnp.sum(diagonal(apply, params, t, x, method=method, precision=precision))
                      for t, x in zip(terms, point_sets(terms, points))])


def eigenvalues(k) -> np.ndarray:
    """Eigenvalues of a symmetric kernel in descending order (float64 ``eigvalsh`` on the host).

    In float32 kernels, eigenvalues below ~1e-7 of the largest are rounding noise (and may be < 0).
    """
    # symmetrised in place on one float64 copy: fresh temporaries cost ~10% of a 900 x 900 eigvalsh
    k = np.array(k, np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"eigenvalues need a square kernel, got shape {k.shape}")
    k += k.T  # numpy buffers the overlapping transpose
    k *= 0.5
    return np.linalg.eigvalsh(k)[::-1]


def relative_change(k_t, k_0) -> float:
    """||K_t - K_0||_F / ||K_0||_F."""
    k_t, k_0 = np.asarray(k_t, np.float64), np.asarray(k_0, np.float64)
    return float(np.linalg.norm(k_t - k_0) / np.linalg.norm(k_0))
