"""Top eigenvalues of a PINN's NTK without forming it: block Lanczos on products K v.

For loss terms with residuals r_i at points X_i and J = [J_1; ...; J_m], J_i = d r_i(X_i) / d theta
(n x P, n = sum n_i), the kernel K = J J^T of :func:`pinnlab.ntk.kernel` acts on v in R^n as

    K v = J (J^T v):   J^T v is one VJP of theta -> r(theta) with cotangent v, J u one JVP,

so one product costs a few passes of the residuals and holds the activations of those passes, never
the n x n kernel or the n x P Jacobian.
Lanczos builds an orthonormal basis Q of the Krylov space {v, K v, K^2 v, ...}; the eigenvalues of the
small (block) tridiagonal T = Q^T K Q (Ritz values) converge to the extreme eigenvalues of K first,
the largest ones fastest, so the top of the spectrum needs a few dozen products for n in the thousands.

Any symmetric positive semi-definite operator works: ``lanczos(matvec, n, k)`` takes a pure-JAX
``matvec: (n,) -> (n,)``, e.g. a structured NTK product, and :func:`top_eigenvalues` takes one in
``matvec=`` in place of :func:`kernel_matvec`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from pinnlab import ntk, ntk_structured
from pinnlab.nets import Apply, Params
from pinnlab.problems.base import Term

Matvec = Callable[[jax.Array], jax.Array]


def default_iterations(n: int, k: int, block_size: int = 1) -> int:
    """Block steps by default: a basis of ``min(n, max(2k + 20, 3k))`` vectors, at most ``n // b`` steps.

    Ritz values for the top k converge once the basis is a few times k (plus a margin for slowly
    decaying spectra); decaying NTK spectra converge faster, ``tol`` then stops earlier.
    """
    size = min(n, max(2 * k + 20, 3 * k))
    return max(1, min(-(-size // block_size), n // block_size))


# ----------------------------------------------------------------------------------------------- checks


def _check_sizes(n, k: int, block_size: int, iterations: int | None, tol: float) -> int:
    """Validate the request and return the number of block steps."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (the operator's dimension) must be a positive integer, got n={n!r}")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in 1..n = 1..{n}, got k={k!r}; ask for at most n eigenvalues "
                         "(for all of them, form the matrix and use numpy.linalg.eigvalsh)")
    if not isinstance(block_size, (int, np.integer)) or not 1 <= block_size <= n:
        raise ValueError(f"block_size must be an integer in 1..n = 1..{n}, got block_size={block_size!r}")
    if block_size * (n // block_size) < k:
        raise ValueError(f"block_size={block_size} fits only {block_size * (n // block_size)} basis vectors in "
                         f"n={n} dimensions, fewer than k={k}; use a block size that divides n, e.g. 1")
    if not isinstance(tol, (int, float, np.floating)) or not tol >= 0:
        raise ValueError(f"tol must be a number >= 0 (0: run all iterations), got tol={tol!r}")
    if iterations is None:
        return default_iterations(n, k, block_size)
    if not isinstance(iterations, (int, np.integer)) or iterations * block_size < k:
        raise ValueError(f"iterations must be an integer with iterations * block_size >= k = {k}, got "
                         f"iterations={iterations!r} (block_size={block_size}); leave it None for the default")
    return int(min(iterations, n // block_size))


def _checked(matvec: Matvec, q: jax.Array) -> jax.Array:
    """``matvec(q)``, refusing outputs of another shape (the trace-time check of every product)."""
    out = matvec(q)
    if out.shape != q.shape:
        raise ValueError(f"matvec must map shape {q.shape} to {q.shape} (a square operator), got {out.shape}")
    return out.astype(q.dtype)


# ---------------------------------------------------------------------------------------------- lanczos


def _apply_block(mv: Matvec, q: jax.Array) -> jax.Array:
    """``[A q_1, ..., A q_b]`` for a block ``q`` of shape ``(n, b)`` (a vmap of the matvec when b > 1)."""
    if q.shape[1] == 1:
        return _checked(mv, q[:, 0])[:, None]
    return jax.vmap(lambda c: _checked(mv, c), in_axes=1, out_axes=1)(q)


def _project(basis: jax.Array, w: jax.Array) -> jax.Array:
    """``Q Q^T w`` for the basis stored as ``(steps + 1, n, b)`` blocks (unused blocks are zero)."""
    return jnp.einsum("snb,sbc->nc", basis, jnp.einsum("snb,nc->sbc", basis, w))


@jax.jit
def _expand(mv: Matvec, basis: jax.Array, j, b_prev: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Block step j: ``A Q_j = Q_{j-1} B_{j-1}^T + Q_j A_j + W``; returns A_j, W and ||A Q_j||_F."""
    q, q_prev = basis[j], basis[j - 1]  # for j = 0, b_prev is zero
    w = _apply_block(mv, q)
    norm = jnp.linalg.norm(w)
    a = q.T @ w
    a = 0.5 * (a + a.T)
    w = w - q @ a - q_prev @ b_prev.T
    # Full reorthogonalisation, twice ("twice is enough", Kahan-Parlett). Plain Lanczos loses
    # orthogonality as soon as a Ritz value converges and then reports spurious copies ("ghosts") of
    # it; against all previous blocks the cost is O(n m b) per step, small next to one NTK product
    # (several passes of a P-parameter net over n points), and every Ritz value and bound stays valid.
    for _ in range(2):
        w = w - _project(basis, w)
    return a, w, norm


@jax.jit
def _split(basis: jax.Array, j, w: jax.Array):
    """``W = Q_{j+1} B_j``: Q_{j+1} = U (left singular vectors of W), B_j = U^T W, and the singular
    values (tiny ones mean breakdown). Apart from :func:`_expand` so that a new matvec compiles no SVD."""
    u, s, _ = jnp.linalg.svd(w, full_matrices=False)
    return basis.at[j + 1].set(u), u.T @ w, s


def _fill(basis: jax.Array, j: int, w: jax.Array, keep: np.ndarray, seed: int) -> tuple[jax.Array, jax.Array]:
    """Replace the columns of Q_{j+1} not in ``keep`` (W had no new direction there: breakdown) by random
    unit vectors orthogonal to the basis, and recompute ``B_j = Q_{j+1}^T W`` (~0 in those rows).

    Rare (breakdowns only), so it runs in float64 numpy on the host: nothing to compile.
    """
    dtype, flat = basis.dtype, np.array(basis, np.float64)  # a writable copy
    block, rng = flat[j + 1] * keep, np.random.default_rng(seed)
    flat[j + 1] = block
    basis_cols = flat[: j + 2].transpose(1, 0, 2).reshape(flat.shape[1], -1)
    for i in np.flatnonzero(~keep):
        v = rng.standard_normal(flat.shape[1])
        for _ in range(2):
            v -= basis_cols @ (basis_cols.T @ v)
        basis_cols[:, (j + 1) * block.shape[1] + i] = block[:, i] = v / np.linalg.norm(v)
    flat[j + 1] = block
    return jnp.asarray(flat, dtype), jnp.asarray(block.T @ np.asarray(w, np.float64), dtype)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _start(key: jax.Array, steps: int, n: int, b: int, dtype) -> jax.Array:
    """Zero basis storage with a random orthonormal first block."""
    q, _ = jnp.linalg.qr(jax.random.normal(key, (n, b), dtype))
    return jnp.zeros((steps + 1, n, b), dtype).at[0].set(q)


def _ritz(diag: list, off: list, b_last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ritz values (descending) of the block tridiagonal T and their residual norms.

    T has diagonal blocks A_j and sub-diagonal blocks B_j. For a Ritz pair (theta, y = Q s),
    ||A y - theta y|| = ||B_last s_last|| (s_last: the last block of s), and a symmetric A has an
    eigenvalue within that distance of theta.
    """
    b, m = diag[0].shape[0], len(diag)
    t = np.zeros((m * b, m * b))
    for j, a in enumerate(diag):
        t[j * b : (j + 1) * b, j * b : (j + 1) * b] = a
    for j, bj in enumerate(off):
        t[(j + 1) * b : (j + 2) * b, j * b : (j + 1) * b] = bj
        t[j * b : (j + 1) * b, (j + 1) * b : (j + 2) * b] = bj.T
    theta, s = np.linalg.eigh(t)  # m b x m b: tiny, so the host's float64 eigh costs nothing
    theta, s = theta[::-1], s[:, ::-1]
    return theta, np.linalg.norm(b_last @ s[-b:, :], axis=0)


def lanczos(
    matvec: Matvec, n: int, k: int, *, iterations: int | None = None, block_size: int = 1,
    key: jax.Array | None = None, dtype=None, tol: float = 0.0, return_bounds: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues (descending, float64) of a symmetric PSD operator ``v -> A v``.

    Block Lanczos with full reorthogonalisation: Ritz values theta of T = Q^T A Q, Q an orthonormal
    basis of the block Krylov space of a random start block. ``matvec`` is a pure-JAX function
    ``(n,) -> (n,)`` (or a :class:`jax.tree_util.Partial`, whose array arguments are passed into the
    compiled step instead of being baked into it); it is jitted once, vmapped when ``block_size > 1``.

    ``iterations``: block steps (default :func:`default_iterations`; capped at ``n // block_size``).
    ``block_size``: vectors per step. Krylov methods see one copy of an eigenvalue per start vector, so
    an eigenvalue repeated more than ``block_size`` times may show fewer copies; use a block at least
    as large as the expected multiplicity. ``tol``: stop once every top-k Ritz value has residual bound
    <= ``tol * theta_1``. On breakdown (A Q_j lies in the basis up to rounding: the basis spans an
    invariant subspace and its Ritz values are eigenvalues) it stops if it has k values, else restarts
    from random directions orthogonal to the basis.
    ``return_bounds``: also return ``|A y_i - theta_i y_i| = ||B_m s_i,last||`` per value, an absolute
    bound on the distance of theta_i to an eigenvalue of A (free: from the small eigenproblem).
    """
    steps = _check_sizes(n, k, block_size, iterations, tol)
    dtype = jnp.dtype(dtype if dtype is not None else jnp.asarray(0.0).dtype)
    key = jax.random.key(0) if key is None else key
    mv = matvec if isinstance(matvec, Partial) else Partial(matvec)
    seed = int(jax.random.randint(key, (), 0, 2**30))  # for restart vectors
    basis = _start(key, steps, n, block_size, dtype)
    diag, off = [], []
    b_j = jnp.zeros((block_size, block_size), dtype)
    # Breakdown: the new directions W are rounding left over from cancelling A Q_j against the basis,
    # ||W|| <= 30 sqrt(n) eps ||A Q_j|| (normalising such a W would lose orthogonality; an exactly
    # invariant subspace of a dense float64 operator, n = 200, leaves ~10 sqrt(n) eps).
    # Relative to ||A Q_j||, not to ||A||: a PINN's K v is accurate relative to ||K v||, so in float32
    # directions with eigenvalues ~1e-6 lambda_1 still carry information (a test on ||A|| cut them off).
    floor = 30.0 * np.sqrt(n) * np.finfo(dtype).eps
    for j in range(steps):
        a, w, norm = _expand(mv, basis, j, b_j)
        basis, b_j, s = _split(basis, j, w)
        diag.append(np.asarray(a, np.float64))
        s = np.asarray(s, np.float64)
        keep, dim = s > floor * float(norm), (j + 1) * block_size
        if j == steps - 1 or (not keep.any() and dim >= k):
            break
        if tol > 0 and dim >= k:
            theta, bounds = _ritz(diag, off, np.asarray(b_j, np.float64))
            if bounds[:k].max() <= tol * theta[0]:
                break
        if not keep.all():
            basis, b_j = _fill(basis, j, w, keep, seed + j)
        off.append(np.asarray(b_j, np.float64))
    theta, bounds = _ritz(diag, off, np.asarray(b_j, np.float64))
    return (theta[:k], bounds[:k]) if return_bounds else theta[:k]


# ------------------------------------------------------------------------------------------ NTK product


@functools.lru_cache(maxsize=64)
def _kernel_product(apply: Apply, terms: tuple[Term, ...]):
    """Jitted ``(params, points, v) -> K v``, one per (net, terms): new params or points reuse it."""

    def product(params: Params, points: tuple, v: jax.Array) -> jax.Array:
        n = sum(x.shape[0] for x in points)
        if v.shape != (n,):
            raise ValueError(f"v must have shape (n,) = ({n},): one entry per residual, terms stacked in order "
                             f"({', '.join(t.name for t in terms)}); got shape {v.shape}")

        def residuals(p):
            return jnp.concatenate([t.residuals(apply, p, x) for t, x in zip(terms, points)])

        r, jvp = jax.linearize(residuals, params)  # one forward pass, shared by J^T v and J u
        (jtv,) = jax.linear_transpose(jvp, params)(v.astype(r.dtype))
        return jvp(jtv)

    return jax.jit(product)


def kernel_matvec(apply: Apply, params: Params, terms: Sequence[Term], points: Sequence) -> Matvec:
    """``v -> K v`` for the full NTK K = J J^T of :func:`pinnlab.ntk.kernel` (rows in term order).

    K v = J (J^T v): J^T v is the VJP of theta -> [r_1(X_1); ...; r_m(X_m)] with cotangent v, and J u
    the JVP with tangent u. Generic (any net, any term); memory: the activations of one residual pass.
    Returns a :class:`jax.tree_util.Partial` over ``(params, points)``: callable as ``mv(v)``, jitted,
    and compiled once per net and terms, so a new ``params`` (a training step) does not recompile.
    """
    terms, points = tuple(terms), tuple(jnp.asarray(x) for x in points)
    if len(terms) != len(points):
        raise ValueError(f"need one point set per term: got {len(terms)} terms and {len(points)} point sets")
    return Partial(_kernel_product(apply, terms), params, points)


def top_eigenvalues(
    apply: Apply, params: Params, terms: Sequence[Term], points: Sequence, k: int = 20, *,
    matvec: Matvec | None = None, iterations: int | None = None, block_size: int = 1,
    key: jax.Array | None = None, tol: float = 0.0, return_bounds: bool = False, method: str = "auto",
    precision: str | None = ntk.PRECISION,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues of the PINN's NTK K (descending), by :func:`lanczos` on K v products.

    ``matvec``: any ``(n,) -> (n,)`` product with the same K (n = total points, terms in order), e.g.
    a structured one. Default: by ``method`` (as in :mod:`pinnlab.ntk`), the structured product
    :func:`pinnlab.ntk_structured.matvec` (factors computed once, 2-5x faster per product on the wave)
    where it applies, else :func:`kernel_matvec`. The Lanczos vectors take the dtype of ``params``.
    The products run at ``precision`` (see :func:`pinnlab.ntk.matmul_precision`).
    Other arguments as in :func:`lanczos`. In float32 the products are accurate relative to ||K v||, so
    values far below eps lambda_1 stay meaningful (wave, width 200, 900 points: the top 30, down to
    1.6e-8 lambda_1, within 1e-3 of float64; the float32 dense kernel's eigvalsh is off by 7e-2 there).
    """
    n = sum(int(np.shape(x)[0]) for x in points)
    mv = matvec
    with ntk.matmul_precision(precision):  # the factor pass and the products are traced in here
        if mv is None:
            structured = ntk.resolve_method(apply, terms, method) == "structured"
            mv = (ntk_structured.matvec if structured else kernel_matvec)(apply, params, terms, points)
        return lanczos(mv, n, k, iterations=iterations, block_size=block_size, key=key,
                       dtype=jax.tree.leaves(params)[0].dtype, tol=tol, return_bounds=return_bounds)
