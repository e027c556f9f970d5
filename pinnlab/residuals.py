"""Residuals of linear loss terms for a whole batch, from Taylor streams through the MLP.

A term that declares its ``operator`` has ``r(x) = c_u u(x) + sum_i a_i du/dx_i + sum_j b_j d2u/dx_j^2
+ r_0(x)``, with the forcing ``r_0(x) = residual(0, x)`` (the residual is affine in ``u``). Only one
combination of the derivative streams of :mod:`pinnlab.streams` reaches the residual, so a term
carries through every hidden layer, as ``(n, width)`` matrices (one matmul per stream and layer):

* the primal ``h``,
* ``d_j h = phi'(z) d_j z`` for each direction j with a second derivative (``b_j != 0``),
* one combined stream ``S h = sum_i a_i d_i h + sum_j b_j dd_j h``, which obeys
  ``S h = phi'(z) S z + phi''(z) sum_j b_j (d_j z)^2``: linear in ``S z``, like every stream.

The wave residual u_tt - c^2 u_xx then takes 4 streams (the primal, u_t, u_x and S) where
:func:`pinnlab.streams.forward` carries 5 and nested ``jax.jvp`` 8 (4 per second derivative, of which
XLA merges the repeated primal and tangents only in part): the step of the wave benchmark is 1.5 to
1.7x faster (``benchmarks/README.md``). At the input layer the derivative streams are the same at
every point (the standardisation is affine), so that layer maps them as single rows.

A term with one derivative stream or none (``{"u": 1}``, ``{"d0": 1}``, ``{"dd0": 1}``) gains nothing:
nested ``jax.jvp`` already carries just those streams (JAX skips zero tangents, XLA merges the
repeated ones), and measured faster on the tiny Poisson step of paper E3. Such terms keep their own
residual (:func:`should_stream`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from pinnlab.streams import PRIMAL, activation_derivatives, layer_scale, layers, parse, standardized


@dataclasses.dataclass(frozen=True)
class Split:
    """An operator as ``primal * u + S`` with ``S = sum_i first[i] du/dx_i + sum_j second[j] d2u/dx_j^2``."""

    primal: float
    first: tuple[tuple[int, float], ...]
    second: tuple[tuple[int, float], ...]

    @property
    def has_s(self) -> bool:
        return bool(self.first or self.second)


def split(operator: dict) -> Split:
    """The operator's coefficients by derivative order (a direction may appear in both orders)."""
    first, second = {}, {}
    for key, c in operator.items():
        if key != PRIMAL:
            order, i = parse(key)
            (first if order == 1 else second)[i] = float(c)
    return Split(float(operator.get(PRIMAL, 0.0)), tuple(sorted(first.items())), tuple(sorted(second.items())))


def can_stream(apply, term) -> bool:
    """The net is a pinnlab MLP (``apply.mlp_spec``) and the term declares its operator."""
    return getattr(apply, "mlp_spec", None) is not None and getattr(term, "operator", None) is not None


def should_stream(apply, term) -> bool:
    """:func:`can_stream`, and the operator has two or more derivative streams (where streams pay)."""
    return can_stream(apply, term) and sum(k != PRIMAL for k in term.operator) >= 2


def operator_values(spec, params, operators, points) -> list[jax.Array]:
    """``sum_k c_k u_k(x)`` (the residual without its forcing) at every point of every batch.

    ``spec`` is ``apply.mlp_spec``; ``operators[t]`` is a term's operator dict, ``points[t]`` its
    batch ``(n_t, d)``. Returns one ``(n_t,)`` array per term.
    """
    config, mean, std = spec
    acts = activation_derivatives(config.activation)
    dense = layers(params)
    return [_operator_value(config, acts, dense, split(op), x, mean, std) for op, x in zip(operators, points)]


def _operator_value(config, acts, dense, op: Split, x, mean, std) -> jax.Array:
    phi, dphi, d2phi = acts
    w0, b0 = dense[0]["w"], dense[0]["b"]
    s0 = layer_scale(config, w0)
    x, inv = standardized((config, mean, std), x)  # as the network's own forward pass
    z = s0 * (x @ w0) + b0
    # The input's d_j = e_j / std_j and S = sum_i a_i e_i / std_i: one row each (broadcast over the
    # batch) after the input layer; S is None while it is zero (no first derivatives).
    dz = {j: s0 * (inv[j] * w0[j]) for j, _ in op.second}
    sz = s0 * sum(c * inv[i] * w0[i] for i, c in op.first) if op.first else None
    for layer in dense[1:]:
        w, b = layer["w"], layer["b"]
        s = layer_scale(config, w)
        if op.has_s:
            f1 = dphi(z)
            sh = None if sz is None else f1 * sz
            if op.second:
                curvature = d2phi(z) * sum(c * dz[j] ** 2 for j, c in op.second)
                sh = curvature if sh is None else sh + curvature
            dz = {j: s * ((f1 * v) @ w) for j, v in dz.items()}
            sz = s * (sh @ w)
        z = s * (phi(z) @ w) + b
    value = z[:, 0] if op.primal == 1.0 else op.primal * z[:, 0]
    if not op.has_s:
        return value
    return sz[:, 0] if op.primal == 0.0 else value + sz[:, 0]


def forcing(term, points: jax.Array) -> jax.Array:
    """``residual(0, x)`` at every point: the part of an affine residual that the network does not touch."""
    zero = lambda y: 0.0 * y[0]  # noqa: E731
    return jax.vmap(lambda x: term.residual(zero, x))(points)


def residuals(apply, terms, params, batches, select=should_stream) -> list[jax.Array]:
    """Every term's residuals at its batch, ``(n_t,)`` each.

    Terms for which ``select(apply, term)`` holds (it implies :func:`can_stream`) take the streams:
    operator value plus forcing; the others their own ``Term.residuals`` (nested ``jax.jvp``).
    """
    out = []
    for t, x in zip(terms, batches):
        if select(apply, t):
            (value,) = operator_values(apply.mlp_spec, params, [t.operator], [x])
            out.append(value + forcing(t, x))
        else:
            out.append(t.residuals(apply, params, x))
    return out


def losses(apply, terms, params, batches, select=should_stream) -> list[jax.Array]:
    """Every term's loss ``scale * mean(r**2)``, as :meth:`pinnlab.problems.base.Term.loss`."""
    return [t.scale * jnp.mean(r**2) for t, r in zip(terms, residuals(apply, terms, params, batches, select))]
