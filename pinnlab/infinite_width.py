"""The PINN's NTK in the infinite-width limit of a one-hidden-layer net (the paper's Sec. 4 setting).

For ``u(x) = (1/sqrt(m)) sum_j a_j phi(w_j . x / sqrt(d) + b_j) + c`` in the NTK parameterisation with
every weight and bias N(0, 1) and raw inputs (``convention("paper_text", depth=1)``), a linear term's
residual Jacobian splits into the output bias (L applied to the constant 1) and one row per neuron. As
m grows the empirical kernel tends to its expectation over one neuron,

    K_ij(x, x') = L_i[1](x) L_j[1](x') + E_{w, b ~ N(0, 1)} [ g_i(x; w, b) . g_j(x'; w, b) ],

with ``g(x; w, b) = grad_{(a, w, b)} L[a phi(w . x / sqrt(d) + b)](x)`` at a = 1 (E[a^2] = 1, and the a-
and (w, b)-rows never meet). The expectation is a Gauss-Hermite quadrature over (w, b), ``nodes`` per
dimension (``nodes^(d+1)`` in all); the empirical kernel of width m differs from it by O(m^-1/2) (a sum
of m independent neuron terms). Terms are pinnlab :class:`~pinnlab.problems.base.Term` values: their
residual, applied to a one-neuron function minus its value at zero, is the operator L.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pinnlab.nets import ACTIVATIONS
from pinnlab.problems.base import Term


def gauss_hermite(nodes: int, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Points ``(nodes^dims, dims)`` and weights summing to 1 for E over N(0, I_dims)."""
    if nodes < 1 or dims < 1:
        raise ValueError(f"need nodes >= 1 and dims >= 1, got {nodes}, {dims}")
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / np.sqrt(2.0 * np.pi)
    points = np.array(list(itertools.product(x, repeat=dims)))
    weights = np.prod(np.array(list(itertools.product(w, repeat=dims))), axis=1)
    return points, weights


def _linear(term: Term, u, x):
    """L[u](x): the term's residual of ``u`` minus that of zero (its forcing)."""
    return term.residual(u, x) - term.residual(lambda y: 0.0 * y[0], x)


def _neuron_rows(term: Term, activation, x: jax.Array, theta: jax.Array) -> jax.Array:
    """g(x; w, b) (n, nodes, d + 2): the gradient of L[a phi(w . x / sqrt(d) + b)] in (a, w, b) at a = 1."""
    d = x.shape[-1]
    phi = ACTIVATIONS[activation]

    def value(params, point):
        a, w, b = params[0], params[1:1 + d], params[1 + d]
        return _linear(term, lambda y: a * phi(jnp.dot(w, y) / np.sqrt(d) + b), point)

    grad = jax.grad(value)
    per_node = jax.vmap(lambda t, p: grad(jnp.concatenate([jnp.ones(1, t.dtype), t]), p), in_axes=(0, None))
    return jax.vmap(lambda p: per_node(theta, p))(x)


def kernel(terms: Sequence[Term], points: Sequence, activation: str = "tanh", nodes: int | None = None) -> np.ndarray:
    """The limiting K, blocks in term order (as :func:`pinnlab.ntk.kernel`), float64.

    ``nodes`` per dimension of (w, b): default 128 for 1D problems (the Poisson kernel then agrees with
    256 nodes to ~5e-8 relative), 32 for 2D ones (32^3 nodes).
    """
    dims = {np.shape(x)[-1] for x in points}
    if len(dims) != 1 or len(terms) != len(points):
        raise ValueError("need one (n, d) point set per term, all of one dimension d")
    (d,) = dims
    nodes_, weights = gauss_hermite(nodes or (128 if d == 1 else 32), d + 1)
    with jax.enable_x64(True):
        theta = jnp.asarray(nodes_, jnp.float64)
        sw = jnp.sqrt(jnp.asarray(weights, jnp.float64))
        rows, bias = [], []
        for term, x in zip(terms, points):
            x = jnp.asarray(x, jnp.float64)
            g = jax.jit(lambda x, term=term: _neuron_rows(term, activation, x, theta))(x)
            rows.append((g * sw[None, :, None]).reshape(len(x), -1))
            bias.append(jax.vmap(lambda p, term=term: _linear(term, lambda y: jnp.ones(()), p))(x))
        g = jnp.concatenate(rows)
        c = jnp.concatenate(bias)
        return np.asarray(g @ g.T + c[:, None] * c[None, :])
