"""Taylor streams through a pinnlab MLP: the network value and its input derivatives in one batched pass.

A term linear in the network, ``r(x) = c_u u(x) + S u(x) - f(x)`` with ``S = sum_i a_i d/dx_i + sum_j
b_j d2/dx_j^2`` (:class:`Split`), needs only these streams of every hidden state h, as ``(n, width)``
matrices:

* the primal ``h``,
* ``d_j h = phi'(z) d_j z`` for each direction j with a second derivative (``b_j != 0``),
* one combined stream ``S h = phi'(z) S z + phi''(z) sum_j b_j (d_j z)^2``: linear in ``S z``, like
  every stream, so W enters it as it enters the others.

A dense layer ``z = s (h W) + b`` maps every stream in one matmul, ``(S n, in) @ W``; only the primal
adds the bias. The wave residual u_tt - c^2 u_xx takes 4 streams (u, u_t, u_x and S) where one stream
per derivative would take 5 and nested ``jax.jvp`` 8. :func:`forward` is the one pass: the training
loss (:mod:`pinnlab.residuals`) reads its value, the structured NTK (:mod:`pinnlab.ntk_structured`)
also its per-layer inputs and, through ``offsets``, the gradients with respect to the pre-activations.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from pinnlab.nets import ACTIVATIONS

PRIMAL = "u"


def parse(key: str) -> tuple[int, int]:
    """``"d1"`` -> (1, 1), ``"dd0"`` -> (2, 0): derivative order and input direction."""
    order = 2 if key.startswith("dd") else 1
    return order, int(key[order:])


@dataclasses.dataclass(frozen=True)
class Split:
    """An operator as ``primal * u + S`` with ``S = sum_i first[i] du/dx_i + sum_j second[j] d2u/dx_j^2``."""

    primal: float
    first: tuple[tuple[int, float], ...]
    second: tuple[tuple[int, float], ...]

    @property
    def has_s(self) -> bool:
        return bool(self.first or self.second)

    @property
    def count(self) -> int:
        """Streams carried: the primal, d/dx_j per second-derivative direction, and S when there is one."""
        return 1 + len(self.second) + int(self.has_s)


def split(operator: dict) -> Split:
    """The operator's coefficients by derivative order (a direction may appear in both orders); a zero
    coefficient needs none of its streams and is dropped."""
    first, second = {}, {}
    for key, c in operator.items():
        if key != PRIMAL and c != 0:
            order, i = parse(key)
            (first if order == 1 else second)[i] = float(c)
    return Split(float(operator.get(PRIMAL, 0.0)), tuple(sorted(first.items())), tuple(sorted(second.items())))


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


def _input_streams(spec, op: Split, x: jax.Array, dtype) -> jax.Array:
    """The first layer's input in every stream, (S, n, d), in ``dtype``: the (standardised) x,
    ``d_j x = e_j / std_j`` and ``S x = sum_i a_i e_i / std_i`` (the same row at every point)."""
    h, inv = standardized(spec, x)  # as the network's own forward pass, in the points' dtype
    # then in the params' precision where it is higher, as x @ W promotes in the net: float32 points with
    # float64 params must not round the operator's coefficients (or the gradients) to float32
    h, inv = h.astype(dtype), inv.astype(dtype)
    unit = jnp.eye(x.shape[-1], dtype=dtype) * inv[:, None]  # row i: d/dx_i of the input
    rows = [unit[j] for j, _ in op.second]
    if op.has_s:
        rows.append(sum((c * unit[i] for i, c in op.first), jnp.zeros_like(inv)))
    return jnp.stack([h, *(jnp.broadcast_to(r, h.shape) for r in rows)])


def _next_streams(op: Split, activation, z: jax.Array) -> jax.Array:
    """A hidden layer's output in every stream from its pre-activations z (S, n, width)."""
    phi, d1, d2 = activation
    zu = z[0]
    f1 = d1(zu)
    out = [phi(zu)] + [f1 * z[1 + i] for i in range(len(op.second))]
    if op.has_s:
        curvature = sum(c * z[1 + i] ** 2 for i, (_, c) in enumerate(op.second))
        out.append(f1 * z[-1] + d2(zu) * curvature if op.second else f1 * z[-1])
    return jnp.stack(out)


def forward(spec, params, op: Split, x: jax.Array, offsets: list[jax.Array] | None = None):
    """``(value, inputs)``: ``c_u u + S u`` at every point of ``x`` (n, d) and, per layer, s times its input
    in every stream, (S, n, in), in the promoted dtype of ``x`` and the params.

    ``spec`` is the net's ``apply.mlp_spec``. ``offsets`` (zeros, (S, n, out) per layer), when given, are
    added to the pre-activations: the gradient of the summed value with respect to them is each point's
    ``dr/dz_k`` (points do not interact).
    """
    config = spec[0]
    activation = activation_derivatives(config.activation)
    dense = layers(params)
    dtype = jnp.promote_types(x.dtype, dense[0]["w"].dtype)
    h = _input_streams(spec, op, x, dtype)
    primal = (jnp.arange(h.shape[0]) == 0).astype(dtype)[:, None, None]  # only the primal adds the bias
    inputs = []
    for depth, layer in enumerate(dense):
        inputs.append(layer_scale(config, layer["w"]) * h)
        z = inputs[-1] @ layer["w"] + primal * layer["b"]
        if offsets is not None:
            z = z + offsets[depth]
        if depth < len(dense) - 1:
            h = _next_streams(op, activation, z)
    value = op.primal * z[0, :, 0]
    return (value + z[-1, :, 0] if op.has_s else value), inputs
