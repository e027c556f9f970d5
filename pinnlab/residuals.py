"""Residuals of linear loss terms for a whole batch, from the Taylor streams of :mod:`pinnlab.streams`.

A term that declares its ``operator`` has ``r(x) = c_u u(x) + S u(x) + r_0(x)`` with the forcing
``r_0(x) = residual(0, x)`` (the residual is affine in ``u``): one :func:`pinnlab.streams.forward` pass
gives the operator's value for the whole batch, and the forcing is the term's own residual of zero.

A term with one derivative stream or none (``{"u": 1}``, ``{"d0": 1}``, ``{"dd0": 1}``) gains nothing:
nested ``jax.jvp`` already carries just those streams (JAX skips zero tangents, XLA merges the
repeated ones), and measured faster on the tiny Poisson step of paper E3. Such terms keep their own
residual (:func:`should_stream`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pinnlab import streams


def can_stream(apply, term) -> bool:
    """The net is a pinnlab MLP (``apply.mlp_spec``) and the term declares its operator."""
    return getattr(apply, "mlp_spec", None) is not None and getattr(term, "operator", None) is not None


def should_stream(apply, term) -> bool:
    """:func:`can_stream`, and the operator has two or more derivative streams (where streams pay)."""
    return can_stream(apply, term) and sum(k != streams.PRIMAL for k in term.operator) >= 2


def operator_values(spec, params, operators, points) -> list[jax.Array]:
    """``c_u u + S u`` (the residual without its forcing) at every point of every batch.

    ``spec`` is ``apply.mlp_spec``; ``operators[t]`` is a term's operator dict, ``points[t]`` its
    batch ``(n_t, d)``. Returns one ``(n_t,)`` array per term.
    """
    return [streams.forward(spec, params, streams.split(op), x)[0] for op, x in zip(operators, points)]


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
