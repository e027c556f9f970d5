"""The PINN NTK of an MLP from Taylor streams, without per-point parameter gradients.

For a dense layer ``z = s (h W) + b`` the residual's derivative is a sum of outer products, one per
Taylor stream of the operator (:mod:`pinnlab.streams`: the value, d/dx_i and d^2/dx_i^2 of every
hidden state travel as their own streams ``h_k``): per point

    dr/dW = s sum_k a_k g_k^T,    dr/db = g_u,

with ``a_k`` the layer's input in stream k and ``g_k = dr/dz_k``; the bias sees the primal stream only.
Folding s and the bias into one factor ``a'_k = [s a_k, [k = u]]`` (length in + 1) gives

    J_l(x) = sum_k a'_k(x) g_k(x)^T,    K_ij = sum_l sum_{k, m} (A'_k^i A'_m^j^T) o (G_k^i G_m^j^T)

(o: elementwise product). The A's come from one forward pass and the G's from one batched backward
pass (points do not interact). A layer's block costs N_i N_j S_i S_j (in + out) this way against
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
from pinnlab.streams import PRIMAL

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
    """One layer's factors for one term: ``a`` (S, n, in + 1) with s and the bias folded in, ``g`` (S, n, out)."""

    a: jax.Array
    g: jax.Array


def pure_streams(operator: dict) -> tuple[str, ...]:
    """Streams of the operator that no other stream reads: every d2/dx_i2, and d/dx_i where d2/dx_i2 is
    not needed (and the primal when it is the only stream).

    Backward through such a stream is the same linear recursion, ``g^l = phi'(z^l) o (s g^(l+1) W^T)``
    from ``g^L = c_k``, so ``g_k = c_k b`` for one vector b: their outer products add up to one,
    ``sum_k a_k g_k^T = (sum_k (c_k / c_0) a_k) g_0^T``, and the wave residual needs 4 streams, not 5.
    """
    keys = streams.stream_keys(operator)
    read = {f"d{streams.parse(k)[1]}" for k in keys if k.startswith("dd")} | ({PRIMAL} if len(keys) > 1 else set())
    return tuple(k for k in keys if k in operator and operator[k] != 0 and k not in read)


def factors(spec, params, term, points: jax.Array) -> list[Factors]:
    """Per layer, the stream factors of ``term`` at ``points`` (n, d); pure streams merged into one."""
    keys, operator = streams.stream_keys(term.operator), term.operator
    pure = pure_streams(operator)
    lead = max(pure, key=lambda k: abs(operator[k])) if pure else None
    config = spec[0]

    def one(x):
        def r(offsets):
            inputs, out = streams.forward(spec, params, x, keys, offsets)
            return sum(c * out[k] for k, c in operator.items()), inputs

        return jax.grad(r, has_aux=True)(streams.zero_offsets(params, keys, x.dtype))

    # batches bound the stream activations held at once (thousands of points); one batch below that
    grads, inputs = jax.lax.map(one, points, batch_size=min(points.shape[0], FACTOR_BATCH))
    out = []
    for layer, a, g in zip(streams.layers(params), inputs, grads):
        s = streams.layer_scale(config, layer["w"])
        kept = [k for k in keys if k not in pure]
        a_list, g_list = [s * a[k] for k in kept], [g[k] for k in kept]
        if lead is not None:
            a_list.append(sum(s * (operator[k] / operator[lead]) * a[k] for k in pure))
            g_list.append(g[lead])
        a = jnp.stack(a_list)
        # dr/db is the primal stream's g: row 0, kept first or (when it is the only stream) merged
        bias = jnp.zeros(a.shape[:2] + (1,), a.dtype).at[0].set(1.0)
        out.append(Factors(jnp.concatenate([a, bias], axis=-1), jnp.stack(g_list)))
    return out


def _direct_is_cheaper(fi: Factors, fj: Factors) -> bool:
    """J_l (n, in+1, out) costs (in+1) out per point pair, the stream Grams S_i S_j (in+1+out)."""
    p, q = fi.a.shape[-1], fi.g.shape[-1]
    return p * q <= fi.a.shape[0] * fj.a.shape[0] * (p + q)


def _layer_jacobian(f: Factors) -> jax.Array:
    return jnp.einsum("snp,snq->npq", f.a, f.g).reshape(f.a.shape[1], -1)


def _gram_block(fi: Factors, fj: Factors) -> jax.Array:
    """sum_{k,m} (A_k A_m^T) o (G_k G_m^T) for one layer, all stream pairs in two matmuls."""
    (si, ni, _), (sj, nj, _) = fi.a.shape, fj.a.shape
    aa = fi.a.reshape(si * ni, -1) @ fj.a.reshape(sj * nj, -1).T
    gg = fi.g.reshape(si * ni, -1) @ fj.g.reshape(sj * nj, -1).T
    return (aa * gg).reshape(si, ni, sj, nj).sum(axis=(0, 2))


def _gram_block_symmetric(f: Factors) -> jax.Array:
    """:func:`_gram_block` of a term with itself: the (k, m) and (m, k) stream pairs are transposes of
    each other, so only the pairs k <= m are multiplied (15 of 25 for five streams)."""
    s, n, _ = f.a.shape
    total = jnp.zeros((n, n), f.a.dtype)
    for k in range(s):
        aa = f.a[k] @ f.a[k:].reshape((s - k) * n, -1).T
        gg = f.g[k] @ f.g[k:].reshape((s - k) * n, -1).T
        h = (aa * gg).reshape(n, s - k, n)
        upper = h[:, 1:].sum(axis=1)
        total = total + h[:, 0] + upper + upper.T
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
    parts = [jnp.einsum("knp,mnp->kmn", layer.a, layer.a) * jnp.einsum("knq,mnq->kmn", layer.g, layer.g)
             for layer in f]
    return sum(p.sum(axis=(0, 1)) for p in parts)


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


def _transpose_apply(f: list[Factors], v: jax.Array) -> list[jax.Array]:
    """J^T v per layer: sum_x v_x J_l(x) = sum_k A'_k^T diag(v) G_k, shape (in + 1, out)."""
    return [jnp.einsum("snp,n,snq->pq", layer.a, v, layer.g) for layer in f]


def _apply(f: list[Factors], u: list[jax.Array]) -> jax.Array:
    """(J u)_x = sum_l sum_k a'_k(x)^T U_l g_k(x)."""
    return sum(jnp.einsum("snp,pq,snq->n", layer.a, ul, layer.g) for layer, ul in zip(f, u))


@functools.lru_cache(maxsize=64)
def _product(splits: tuple[int, ...]):
    """``(factors, v) -> K v``, jitted once per split of v into terms (factors are traced arguments)."""

    @jax.jit
    def kv(fs, v):
        parts = jnp.split(v, list(splits))
        jtv = [sum(layers) for layers in zip(*(_transpose_apply(f, p) for f, p in zip(fs, parts)))]
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


def jitted_kernel(apply, terms: Sequence, max_bytes: int = DEFAULT_MAX_BYTES):
    """``jit(kernel)`` for one net structure and tuple of terms, compiled once per point shapes."""
    check_applies(apply, terms)
    return _jitted_kernel(apply, tuple(terms), _operators(terms), max_bytes)


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
def _jitted_kernel(apply, terms, operators, max_bytes):
    del operators
    return jax.jit(lambda params, points: kernel(apply, params, terms, points, max_bytes=max_bytes))


@functools.lru_cache(maxsize=64)
def _jitted_term_factors(apply, term, operators):
    del operators
    return jax.jit(lambda params, x: factors(apply.mlp_spec, params, term, x))


@functools.lru_cache(maxsize=8)
def _jitted_assemble(same: bool, max_bytes: int):
    if same:
        return jax.jit(lambda f: block_from_factors(f, f, max_bytes))
    return jax.jit(lambda fi, fj: block_from_factors(fi, fj, max_bytes))
