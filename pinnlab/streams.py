"""Taylor streams through a pinnlab MLP: the network value and its input derivatives in one pass.

A residual that is linear in the network, ``r(x) = sum_k c_k u_k(x) - f(x)`` with ``u_k`` one of
``u``, ``du/dx_i`` (key ``"d<i>"``) or ``d2u/dx_i^2`` (key ``"dd<i>"``), needs only these streams of
every hidden state h: the primal ``h``, ``dh = h' (dz)`` and ``ddh = h'' (dz)^2 + h' (ddz)`` along each
direction used. Each stream goes through a dense layer as its own product ``s (h_k W)``; only the
primal adds the bias. One forward pass gives u, u_t, u_tt and u_xx at a point: the reference the
batched passes are tested against. :mod:`pinnlab.residuals` (training loss) and
:mod:`pinnlab.ntk_structured` (NTK factors: the layer inputs of the streams and their residual
gradients) carry the same streams for a whole batch, every derivative term of the operator combined
into one stream.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pinnlab.nets import ACTIVATIONS

PRIMAL = "u"


def parse(key: str) -> tuple[int, int]:
    """``"d1"`` -> (1, 1), ``"dd0"`` -> (2, 0): derivative order and input direction."""
    order = 2 if key.startswith("dd") else 1
    return order, int(key[order:])


def stream_keys(operator: dict) -> tuple[str, ...]:
    """Streams an operator needs: the primal, d/dx_i for every direction used, d2/dx_i2 where asked."""
    parsed = [parse(k) for k in operator if k != PRIMAL]
    keys = [PRIMAL]
    for i in sorted({i for _, i in parsed}):
        keys.append(f"d{i}")
        if (2, i) in parsed:
            keys.append(f"dd{i}")
    return tuple(keys)


def activation_derivatives(activation: str):
    """phi, phi' and phi'' as elementwise functions (by forward-mode autodiff of phi)."""
    phi = ACTIVATIONS[activation]
    d1 = lambda z: jax.jvp(phi, (z,), (jnp.ones_like(z),))[1]
    d2 = lambda z: jax.jvp(d1, (z,), (jnp.ones_like(z),))[1]
    return phi, d1, d2


def layers(params) -> list:
    """The dense layers of a pinnlab MLP's params, input layer first."""
    return [params["layers"][i] for i in sorted(params["layers"])]


def layer_scale(config, w) -> float:
    """The constant s of ``z = s (h W) + b``: 1/sqrt(fan_in) in the NTK parameterisation, else 1."""
    # a Python float (weakly typed): a numpy float64 would promote float32 layers to float64 under x64
    return float(1.0 / np.sqrt(w.shape[0])) if config.parameterization == "ntk" else 1.0


def standardized(spec, x):
    """``(h, inv)``: the first layer's input as the network computes it, in ``x``'s dtype (z-scored when
    the net standardises), and ``inv = dh/dx`` per input direction (1 / std, or ones)."""
    config, mean, std = spec
    if config.standardize:
        mean, std = jnp.asarray(mean, x.dtype), jnp.asarray(std, x.dtype)
        return (x - mean) / std, 1.0 / std
    return x, jnp.ones(x.shape[-1], x.dtype)


def forward(spec, params, x, keys):
    """Streams through the MLP at one point ``x`` (shape ``(d,)``): ``out[k]``, the scalar output stream
    k (``out["dd0"]`` = d2u/dx_0^2)."""
    config = spec[0]
    phi, dphi, d2phi = activation_derivatives(config.activation)
    x, inv = standardized(spec, x)
    h = {PRIMAL: x}
    for k in keys[1:]:
        order, i = parse(k)  # d/dx_i of the (standardised) input is e_i / std_i; its second derivative is 0
        h[k] = jnp.zeros_like(x).at[i].set(inv[i]) if order == 1 else jnp.zeros_like(x)
    dense = layers(params)
    for depth, layer in enumerate(dense):
        w, b = layer["w"], layer["b"]
        s = layer_scale(config, w)
        z = {k: s * (v @ w) + (b if k == PRIMAL else 0.0) for k, v in h.items()}
        if depth == len(dense) - 1:
            return {k: v[0] for k, v in z.items()}
        f1, f2 = dphi(z[PRIMAL]), d2phi(z[PRIMAL])
        h = {PRIMAL: phi(z[PRIMAL])}
        for k in keys[1:]:
            order, i = parse(k)
            h[k] = f1 * z[k] if order == 1 else f2 * z[f"d{i}"] ** 2 + f1 * z[k]
    raise ValueError("the MLP has no layers")


def operator_value(spec, params, x, operator: dict):
    """``sum_k c_k u_k(x)`` at one point: the residual without its forcing."""
    out = forward(spec, params, x, stream_keys(operator))
    return sum(c * out[k] for k, c in operator.items())
