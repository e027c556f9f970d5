"""The PINN NTK of an MLP from Taylor streams, without per-point parameter gradients.

For a dense layer ``z = s (h W) + b`` the residual's derivative is a sum of outer products, one per
Taylor stream of the operator (the value, d/dx_i and d^2/dx_i^2 of every hidden state are carried
forward as their own streams ``h_k``): per point ``dr/dW = s * sum_k a_k g_k^T`` with ``a_k`` the
layer's input in stream k and ``g_k = dr/dz_k``; the bias sees the primal stream only. So

    K_ij^(W) = s^2 sum_{k, m} (A_k^i A_m^j^T) o (G_k^i G_m^j^T),     K_ij^(b) = G_p^i G_p^j^T,

with the A's from one forward pass and the G's from one batched backward pass (points do not
interact). The cost per layer and stream pair is N_i N_j (in + out) instead of N_i N_j in out, and J
is never formed. This module is the first part of the structured-NTK work (issue 5): exact blocks,
tested against :mod:`pinnlab.ntk`'s Jacobian path; it is not yet the default path.

A term takes this path when it declares its ``operator`` (a dict from stream to constant coefficient:
``"u"``, ``"d<i>"``, ``"dd<i>"``) and the net is a pinnlab MLP (its ``apply`` carries ``mlp_spec``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pinnlab.nets import ACTIVATIONS

PRIMAL = "u"


def reason_not_structured(apply, term) -> str | None:
    """Why the structured path does not apply (None when it does)."""
    if getattr(apply, "mlp_spec", None) is None:
        return "the network is not a pinnlab MLP (its apply function has no mlp_spec)"
    if getattr(term, "operator", None) is None:
        return f"term {term.name!r} declares no linear operator (Term.operator)"
    return None


def _parse(key: str) -> tuple[int, int]:
    """``"d1"`` -> (1, 1), ``"dd0"`` -> (2, 0): derivative order and input direction."""
    order = 2 if key.startswith("dd") else 1
    return order, int(key[order:])


def _streams(operator: dict) -> tuple:
    """Streams a term needs: the primal, d/dx_i for every direction used, d2/dx_i2 where asked."""
    parsed = [_parse(k) for k in operator if k != PRIMAL]
    keys = [PRIMAL]
    for i in sorted({i for _, i in parsed}):
        keys.append(f"d{i}")
        if (2, i) in parsed:
            keys.append(f"dd{i}")
    return tuple(keys)


def _derivatives(activation):
    phi = ACTIVATIONS[activation]
    d1 = lambda z: jax.jvp(phi, (z,), (jnp.ones_like(z),))[1]
    d2 = lambda z: jax.jvp(d1, (z,), (jnp.ones_like(z),))[1]
    return phi, d1, d2


def _forward(spec, params, x, keys, offsets):
    """Streams through the MLP for one point: the inputs of every layer and the output streams."""
    config, mean, std = spec
    phi, dphi, d2phi = _derivatives(config.activation)
    inv = 1.0 / jnp.asarray(std, x.dtype) if config.standardize else jnp.ones_like(x)
    h = {PRIMAL: (x - jnp.asarray(mean, x.dtype)) * inv if config.standardize else x}
    for k in keys[1:]:
        order, i = _parse(k)
        h[k] = jnp.zeros_like(x).at[i].set(inv[i]) if order == 1 else jnp.zeros_like(x)
    layers = [params["layers"][i] for i in sorted(params["layers"])]
    inputs = []
    for depth, layer in enumerate(layers):
        w, b = layer["w"], layer["b"]
        s = 1.0 / np.sqrt(w.shape[0]) if config.parameterization == "ntk" else 1.0
        inputs.append(h)
        z = {k: s * (v @ w) + (b if k == PRIMAL else 0.0) + offsets[depth][k] for k, v in h.items()}
        if depth == len(layers) - 1:
            return inputs, {k: v[0] for k, v in z.items()}
        f1, f2 = dphi(z[PRIMAL]), d2phi(z[PRIMAL])
        h = {PRIMAL: phi(z[PRIMAL])}
        for k in keys[1:]:
            order, i = _parse(k)
            h[k] = f1 * z[k] if order == 1 else f2 * z[f"d{i}"] ** 2 + f1 * z[k]
    raise AssertionError("unreachable")


def operator_value(spec, params, x, operator: dict):
    """sum_k c_k (stream k of the output) at one point: the residual without its forcing."""
    keys = _streams(operator)
    offsets = _zero_offsets(params, keys, x.dtype)
    _, out = _forward(spec, params, x, keys, offsets)
    return sum(c * out[k] for k, c in operator.items())


def _zero_offsets(params, keys, dtype):
    layers = [params["layers"][i] for i in sorted(params["layers"])]
    return [{k: jnp.zeros(layer["b"].shape, dtype) for k in keys} for layer in layers]


def factors(spec, params, term, points):
    """Per layer: the streams' layer inputs A_k (n, in) and residual gradients G_k = dr/dz_k (n, out)."""
    keys = _streams(term.operator)

    def one(x):
        offsets = _zero_offsets(params, keys, x.dtype)

        def r(offs):
            _, out = _forward(spec, params, x, keys, offs)
            return sum(c * out[k] for k, c in term.operator.items())

        inputs, _ = _forward(spec, params, x, keys, offsets)
        return inputs, jax.grad(r)(offsets)

    return jax.vmap(one)(points)


def block(apply, params, term_i, x_i, term_j=None, x_j=None) -> jax.Array:
    """K_ij = J_i J_j^T assembled from the stream factors (never forms J)."""
    for t in (term_i, term_j or term_i):
        why = reason_not_structured(apply, t)
        if why:
            raise ValueError(f"structured NTK does not apply: {why}; use pinnlab.ntk.block")
    if term_j is None:
        term_j, x_j = term_i, x_i
    spec = apply.mlp_spec
    a_i, g_i = factors(spec, params, term_i, jnp.asarray(x_i))
    a_j, g_j = factors(spec, params, term_j, jnp.asarray(x_j))
    config = spec[0]
    total = 0.0
    for depth, layer in enumerate(params["layers"][i] for i in sorted(params["layers"])):
        s2 = 1.0 / layer["w"].shape[0] if config.parameterization == "ntk" else 1.0
        for k in a_i[depth]:
            for m in a_j[depth]:
                aa = a_i[depth][k] @ a_j[depth][m].T
                gg = g_i[depth][k] @ g_j[depth][m].T
                total = total + s2 * aa * gg
        total = total + g_i[depth][PRIMAL] @ g_j[depth][PRIMAL].T
    return total


def kernel(apply, params, terms, points) -> jax.Array:
    """The full K from structured blocks, blocks in term order (as :func:`pinnlab.ntk.kernel`)."""
    rows = [jnp.concatenate([block(apply, params, ti, xi, tj, xj) for tj, xj in zip(terms, points)], axis=1)
            for ti, xi in zip(terms, points)]
    return jnp.concatenate(rows, axis=0)
