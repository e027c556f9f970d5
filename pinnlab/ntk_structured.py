"""The PINN NTK of an MLP from Taylor streams, without per-point parameter gradients.

For a dense layer ``z = s (h W) + b`` the residual's derivative is a sum of outer products, one per
Taylor stream of the operator (:mod:`pinnlab.streams`: the value, d/dx_i and d^2/dx_i^2 of every
hidden state travel as their own streams ``h_k``): per point

    dr/dW = s sum_k a_k g_k^T,    dr/db = g_u,

with ``a_k`` the layer's input in stream k and ``g_k = dr/dz_k``; the bias sees the primal stream only.
Folding s and the bias into one factor ``a'_k = [s a_k, [k = u]]`` (length in + 1) gives

    J_l(x) = sum_k a'_k(x) g_k(x)^T,    K_ij = sum_l sum_{k, m} (A'_k^i A'_m^j^T) o (G_k^i G_m^j^T)

(o: elementwise product). The A's come from one batched forward pass and the G's from one batched
backward pass (points do not interact), every stream of a layer in one matmul; the pure streams (every
d^2/dx_i^2, ..., whose gradients are proportional) travel as one combined stream from the start, so
the wave residual takes 4 streams, not 5. Only ``s a_k`` is stored: the bias's part adds ``G_u^i G_u^j^T``, a
block of the G Gram at hand. A layer's block costs N_i N_j S_i S_j (in + out) this way against
N_i N_j in out through J, and J is never formed; for the thin first and last layers (in or out tiny)
J_l itself is the cheaper route and is used. The diagonal, ``diag K_ii(x) = sum_l sum_{k,m}
(a'_k . a'_m)(g_k . g_m)``, costs O(N S^2 (in + out)), and ``K v = J (J^T v)`` is two passes over the
factors, for matrix-free eigensolvers.

A term takes this path when it declares its ``operator`` (stream -> constant coefficient) and the net
is a pinnlab MLP (its ``apply`` carries ``mlp_spec``); :func:`reason_not_structured` says why not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pinnlab import streams

DEFAULT_MAX_BYTES = 1 << 27  # stream Gram panels in flight per block (128 MiB)
FACTOR_BATCH = 512  # points per batch of the factor pass


def reason_not_structured(apply, term) -> str | None:
    """Why the structured path does not apply to ``term`` on this net (None when it does)."""
    if getattr(apply, "mlp_spec", None) is None:
        return "the network is not a pinnlab MLP (its apply function has no mlp_spec)"
    if getattr(term, "operator", None) is None:
        return f"term {term.name!r} declares no linear operator (Term.operator)"
    return None


def check_applies(apply, terms) -> None:
    """Raise a ValueError that says why when the structured path does not apply to every term."""
    for term in terms:
        why = reason_not_structured(apply, term)
        if why:
            raise ValueError(f"structured NTK does not apply: {why}; use method='jacobian'")


class Factors(NamedTuple):
    """One layer's factors for one term, streams stacked on the leading axis, the primal first:
    ``a`` (S, n, in) is s times the layer's input, ``g`` (S, n, out) the residual's gradient with respect
    to the pre-activations. The bias's factor ``[k = u]`` is implicit (``a'_k = [a_k, [k = u]]``): it
    is never stored, so no layer's factor is copied to append it."""

    a: jax.Array
    g: jax.Array


def _factor_pass(spec, params, op: streams.Split, x: jax.Array) -> list[Factors]:
    """The factors at a batch of points: one :func:`pinnlab.streams.forward` pass and its backward pass
    (a matmul with W^T per layer, all streams together). Points do not interact, so the gradient of the
    summed residual with respect to a point's pre-activations is that point's own ``dr/dz_k``."""
    dense = streams.layers(params)
    dtype = jnp.promote_types(x.dtype, dense[0]["w"].dtype)  # the computation's: its gradients keep it
    zeros = [jnp.zeros((op.count, x.shape[0]) + layer["b"].shape, dtype) for layer in dense]

    def total(offsets):
        r, inputs = streams.forward(spec, params, op, x, offsets)
        return jnp.sum(r), inputs

    grads, inputs = jax.grad(total, has_aux=True)(zeros)
    return [Factors(a, g) for a, g in zip(inputs, grads)]


def factors(spec, params, term, points: jax.Array) -> list[Factors]:
    """Per layer, the stream factors of ``term`` at ``points`` (n, d), in the combined form of
    :func:`pinnlab.streams.split` (the pure streams, those no other stream reads, carried as one)."""
    op, n = streams.split(term.operator), points.shape[0]
    if n <= FACTOR_BATCH:
        return _factor_pass(spec, params, op, points)
    # batches bound the stream activations the backward pass holds at once (thousands of points): whole
    # batches through one lax.map, the remainder (if any) in a pass of its own
    whole = n - n % FACTOR_BATCH
    chunks = points[:whole].reshape(-1, FACTOR_BATCH, points.shape[1])
    mapped = jax.lax.map(lambda x: _factor_pass(spec, params, op, x), chunks)
    join = lambda t: jnp.swapaxes(t, 0, 1).reshape(t.shape[1], whole, t.shape[-1])  # noqa: E731
    out = [Factors(join(f.a), join(f.g)) for f in mapped]
    if whole == n:
        return out
    rest = _factor_pass(spec, params, op, points[whole:])
    cat = lambda a, b: jnp.concatenate([a, b], axis=1)  # noqa: E731
    return [Factors(cat(f.a, r.a), cat(f.g, r.g)) for f, r in zip(out, rest)]


def _direct_is_cheaper(fi: Factors, fj: Factors) -> bool:
    """J_l (n, (in+1) out) costs (in+1) out per point pair; the stream Grams cost S_i S_j (in + out)
    plus one add for the bias's block, counted here as S_i S_j (in + 1 + out)."""
    p, q = fi.a.shape[-1] + 1, fi.g.shape[-1]
    return p * q <= fi.a.shape[0] * fj.a.shape[0] * (p + q)


def _layer_jacobian(f: Factors) -> jax.Array:
    """J_l (n, in out + out): the weights' part ``sum_k a_k g_k^T``, then the bias's ``g_u``."""
    n = f.a.shape[1]
    return jnp.concatenate([jnp.einsum("snp,snq->npq", f.a, f.g).reshape(n, -1), f.g[0]], axis=1)


def _gram_block(fi: Factors, fj: Factors) -> jax.Array:
    """sum_{k,m} (A'_k A'_m^T) o (G_k G_m^T) for one layer, all stream pairs in two matmuls. The bias's
    part of A'_u A'_u^T is all ones: it adds G_u G_u^T, a block of gg already at hand."""
    (si, ni, _), (sj, nj, _) = fi.a.shape, fj.a.shape
    aa = fi.a.reshape(si * ni, -1) @ fj.a.reshape(sj * nj, -1).T
    gg = fi.g.reshape(si * ni, -1) @ fj.g.reshape(sj * nj, -1).T
    return (aa * gg).reshape(si, ni, sj, nj).sum(axis=(0, 2)) + gg[:ni, :nj]


def _gram_block_symmetric(f: Factors) -> jax.Array:
    """:func:`_gram_block` of a term with itself: the (k, m) and (m, k) stream pairs are transposes of
    each other, so only the pairs k <= m are multiplied (10 of 16 for the wave residual's four streams)."""
    s, n, _ = f.a.shape
    total = jnp.zeros((n, n), f.a.dtype)
    for k in range(s):
        aa = f.a[k] @ f.a[k:].reshape((s - k) * n, -1).T
        gg = f.g[k] @ f.g[k:].reshape((s - k) * n, -1).T
        h = (aa * gg).reshape(n, s - k, n)
        upper = h[:, 1:].sum(axis=1)
        total = total + h[:, 0] + upper + upper.T + (gg[:, :n] if k == 0 else 0.0)  # the bias: G_u G_u^T
    return total


def _rows_per_panel(fi: Factors, fj: Factors, max_bytes: int) -> int:
    si, sj, nj = fi.a.shape[0], fj.a.shape[0], fj.a.shape[1]
    per_row = 3 * si * sj * nj * fi.a.dtype.itemsize  # aa, gg and their product in flight
    return max(1, min(fi.a.shape[1], max_bytes // per_row))


def _layer_block(fi: Factors, fj: Factors, max_bytes: int) -> jax.Array:
    if _direct_is_cheaper(fi, fj):
        return _layer_jacobian(fi) @ _layer_jacobian(fj).T
    rows, n = _rows_per_panel(fi, fj, max_bytes), fi.a.shape[1]
    if rows >= n:
        return _gram_block_symmetric(fi) if fi is fj else _gram_block(fi, fj)
    pad = -n % rows  # zero points give zero rows; a scan over equal panels compiles once
    chunk = lambda x: jnp.pad(x, ((0, 0), (0, pad), (0, 0))).reshape(x.shape[0], -1, rows, x.shape[2]).swapaxes(0, 1)
    panels = jax.lax.map(lambda f: _gram_block(Factors(*f), fj), (chunk(fi.a), chunk(fi.g)))
    return panels.reshape(-1, fj.a.shape[1])[:n]


def block_from_factors(fi: list[Factors], fj: list[Factors], max_bytes: int = DEFAULT_MAX_BYTES) -> jax.Array:
    """K_ij summed over layers from the two terms' factors."""
    return sum(_layer_block(a, b, max_bytes) for a, b in zip(fi, fj))


def diagonal_from_factors(f: list[Factors]) -> jax.Array:
    """diag K_ii(x) = sum_l sum_{k,m} (a'_k . a'_m)(g_k . g_m), O(n S^2 (in + out))."""
    def one(layer):  # the bias adds g_u . g_u (its a' is 1 on the primal stream only)
        gg = jnp.einsum("knq,mnq->kmn", layer.g, layer.g)
        return (jnp.einsum("knp,mnp->kmn", layer.a, layer.a) * gg).sum(axis=(0, 1)) + gg[0, 0]

    return sum(one(layer) for layer in f)


def block(apply, params, term_i, x_i, term_j=None, x_j=None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> jax.Array:
    """K_ij = J_i J_j^T assembled from the stream factors (never forms J). Traceable."""
    if term_j is None:
        term_j, x_j = term_i, x_i
    check_applies(apply, (term_i, term_j))
    fi = factors(apply.mlp_spec, params, term_i, jnp.asarray(x_i))
    fj = fi if (term_j is term_i and x_j is x_i) else factors(apply.mlp_spec, params, term_j, jnp.asarray(x_j))
    return block_from_factors(fi, fj, max_bytes)


def kernel(apply, params, terms: Sequence, points: Sequence, *, max_bytes: int = DEFAULT_MAX_BYTES) -> jax.Array:
    """The full K, blocks in term order (as :func:`pinnlab.ntk.kernel`); upper blocks mirrored. Traceable."""
    check_applies(apply, terms)
    fs = [factors(apply.mlp_spec, params, t, jnp.asarray(x)) for t, x in zip(terms, points)]
    m = len(fs)
    blocks = {(i, j): block_from_factors(fs[i], fs[j], max_bytes) for i in range(m) for j in range(i, m)}
    rows = [jnp.concatenate([blocks[(i, j)] if i <= j else blocks[(j, i)].T for j in range(m)], axis=1)
            for i in range(m)]
    return jnp.concatenate(rows, axis=0)


def diagonal(apply, params, term, points) -> jax.Array:
    """diag(K_ii) per point from the stream factors. Traceable."""
    check_applies(apply, (term,))
    return diagonal_from_factors(factors(apply.mlp_spec, params, term, jnp.asarray(points)))


def traces(apply, params, terms: Sequence, points: Sequence) -> jax.Array:
    """``[Tr K_11, ..., Tr K_mm]`` from the stream factors. Traceable."""
    return jnp.stack([jnp.sum(diagonal(apply, params, t, x)) for t, x in zip(terms, points)])


def _transpose_apply(f: list[Factors], v: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
    """J^T v per layer: sum_x v_x J_l(x), as the weights' part sum_k A_k^T diag(v) G_k (in, out) and
    the bias's G_u^T v (out,)."""
    return [(jnp.einsum("snp,n,snq->pq", layer.a, v, layer.g), v @ layer.g[0]) for layer in f]


def _apply(f: list[Factors], u: list[tuple[jax.Array, jax.Array]]) -> jax.Array:
    """(J u)_x = sum_l (sum_k a_k(x)^T U_l g_k(x) + g_u(x) . u_l), U_l the weights' part, u_l the bias's."""
    return sum(jnp.einsum("snp,pq,snq->n", layer.a, w, layer.g) + layer.g[0] @ b for layer, (w, b) in zip(f, u))


@functools.lru_cache(maxsize=64)
def _product(splits: tuple[int, ...]):
    """``(factors, v) -> K v``, jitted once per split of v into terms (factors are traced arguments)."""

    @jax.jit
    def kv(fs, v):
        parts = jnp.split(v, list(splits))
        per_term = [_transpose_apply(f, p) for f, p in zip(fs, parts)]
        jtv = [jax.tree.map(lambda *xs: sum(xs), *layers) for layers in zip(*per_term)]
        return jnp.concatenate([_apply(f, jtv) for f in fs])

    return kv


def matvec(apply, params, terms: Sequence, points: Sequence) -> Callable[[jax.Array], jax.Array]:
    """``v -> K v`` for the full K (rows in term order) from factors computed once: O(N S in out) per product.

    A :class:`jax.tree_util.Partial` over the factors, so an eigensolver that jits a step taking it
    compiles once, whatever the parameters.
    """
    check_applies(apply, terms)
    terms = tuple(terms)
    fs = [_jitted_term_factors(apply, t, _operators((t,)))(params, jnp.asarray(x)) for t, x in zip(terms, points)]
    splits = tuple(np.cumsum([np.shape(x)[0] for x in points])[:-1].tolist())
    return jax.tree_util.Partial(_product(splits), fs)


def _operators(terms) -> tuple:
    """Part of the cache keys below: Term equality ignores ``operator``, the compiled kernel does not."""
    return tuple(tuple(sorted(t.operator.items())) for t in terms)


def host_kernel(apply, params, terms: Sequence, points: Sequence, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """The full K as a host array (what :func:`pinnlab.ntk.kernel` returns), one jitted call per term
    (its factors) and per upper block, mirrored on the host; :func:`jitted_block` shares the compiled
    functions.

    Small calls rather than one program for a reason: each holds a few MiB, which glibc's allocator
    keeps on its heap from one call to the next, while one program holding every factor and Gram at
    once (66 MiB at paper scale) is mapped afresh per call, ~17,000 page faults that cost ~10% of it.
    """
    check_applies(apply, terms)
    fs = [_jitted_term_factors(apply, t, _operators((t,)))(params, jnp.asarray(x)) for t, x in zip(terms, points)]
    same, cross = _jitted_assemble(True, max_bytes), _jitted_assemble(False, max_bytes)
    m = len(fs)
    # every block is dispatched before the first transfer waits for one
    blocks = {(i, j): same(fs[i]) if i == j else cross(fs[i], fs[j]) for i in range(m) for j in range(i, m)}
    ends = np.cumsum([0] + [f[0].a.shape[1] for f in fs])
    # the blocks' dtype (the params' precision), not the points': float32 points must not truncate
    full = np.empty((ends[-1], ends[-1]), np.result_type(*(b.dtype for b in blocks.values())))
    for (i, j), b in blocks.items():
        b = np.asarray(b)
        full[ends[i] : ends[i + 1], ends[j] : ends[j + 1]] = b
        if i != j:
            full[ends[j] : ends[j + 1], ends[i] : ends[i + 1]] = b.T
    return full


def jitted_block(apply, term_i, term_j, same: bool, max_bytes: int = DEFAULT_MAX_BYTES):
    """``fn(params, x)`` (K_ii, when ``same``) or ``fn(params, x_i, x_j)``: jitted factors per term, shared
    by every block of that term (a run of blocks compiles the stream pass once per term), and a jitted
    assembly per pair of shapes."""
    check_applies(apply, (term_i, term_j))
    fac_i = _jitted_term_factors(apply, term_i, _operators((term_i,)))
    assemble = _jitted_assemble(same, max_bytes)
    if same:
        return lambda params, x: assemble(fac_i(params, x))
    fac_j = _jitted_term_factors(apply, term_j, _operators((term_j,)))
    return lambda params, x, y: assemble(fac_i(params, x), fac_j(params, y))


@functools.lru_cache(maxsize=64)
def _jitted_term_factors(apply, term, operators):
    del operators
    return jax.jit(lambda params, x: factors(apply.mlp_spec, params, term, x))


@functools.lru_cache(maxsize=8)
def _jitted_assemble(same: bool, max_bytes: int):
    if same:
        return jax.jit(lambda f: block_from_factors(f, f, max_bytes))
    return jax.jit(lambda fi, fj: block_from_factors(fi, fj, max_bytes))
