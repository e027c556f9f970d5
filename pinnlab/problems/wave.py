"""1D wave equation u_tt = c^2 u_xx on (x, t) in (0, 1)^2 (paper Sec. 7.3)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from pinnlab.problems.base import Linear, Problem, linear, space_time, stacked, uniform
from pinnlab.problems.registry import Entry, Recipe, register

T, X = 0, 1  # input order of the released code: (t, x)


def Wave1D(
    c: float = 2.0, a: float = 0.5, n_u: int = 300, n_ut: int = 100, n_r: int = 300,
    n_ntk: int = 300, n_eval: int = 200,
) -> Problem:
    """u_tt - c^2 u_xx = 0, u(0,t) = u(1,t) = 0, u(x,0) = sin(pi x) + a sin(2 c pi x), u_t(x,0) = 0.

    Exact: u = sin(pi x) cos(c pi t) + a sin(2 c pi x) cos(2 c^2 pi t). The released code writes the
    second time factor as cos(4 c pi t), which is the same for the paper's c = 2 only.

    Follows the released code: inputs (t, x); every step draws fresh uniform batches; the ``u`` term
    stacks a third of its points on t = 0, x = 0 and x = 1 and, like the code's sum of three means,
    carries loss scale 3; ``ut`` uses ``n_ut`` initial points; NTK blocks use ``n_ntk`` fresh points
    per term; inputs are standardised with the exact mean 0.5 and std 1/sqrt(12) of U[0, 1] (the code
    estimates them from 1e5 samples); Glorot-normal weights, zero biases.
    """
    c, a = float(c), float(a)
    if not (np.isfinite(c) and c > 0):
        raise ValueError(f"c must be a positive number, got {c!r}")

    def exact(p):
        t, x = p[..., T], p[..., X]
        slow = jnp.sin(jnp.pi * x) * jnp.cos(c * jnp.pi * t)
        fast = a * jnp.sin(2 * c * jnp.pi * x) * jnp.cos(2 * c**2 * jnp.pi * t)
        return slow + fast

    initial = uniform([0.0, 0.0], [0.0, 1.0])
    left = uniform([0.0, 0.0], [1.0, 0.0])
    right = uniform([0.0, 1.0], [1.0, 1.0])
    inside = uniform([0.0, 0.0], [1.0, 1.0])
    terms = (
        linear("u", Linear(u=1.0), exact, stacked((initial, 1 / 3), (left, 1 / 3), (right, 1 / 3)), n_u, n_ntk,
               scale=3.0),
        linear("ut", Linear(d={T: 1.0}), None, initial, n_ut, n_ntk),
        linear("r", Linear(dd={T: 1.0, X: -(c**2)}), None, inside, n_r, n_ntk),
    )
    return Problem(
        name="wave",
        terms=terms,
        exact=exact,
        **space_time(n_eval),
        default_init="glorot_normal",
        params={"c": c, "a": a, "n_u": n_u, "n_ut": n_ut, "n_r": n_r, "n_ntk": n_ntk},
    )


register(Entry(
    name="wave", factory=Wave1D,
    summary="paper E4 code setup on a CPU-sized net: c=2; 3x100 tanh, adam 1e-3 decaying 0.9 per 1000 steps, "
            "2000 steps, Algorithm 1 weights every 100 steps (the paper: 3x500, 80000 steps)",
    params_help={"c": "wave: wave speed (default 2)", "a": "wave: amplitude of the fast mode (default 0.5)"},
    param="c",
    # the paper's Sec. 7.3 (its code: the decay schedule, Algorithm 1 every 100 steps)
    recipe=Recipe(width=500, depth=3, optimizer="adam", lr=1e-3, decay_steps=1000, decay_rate=0.9, steps=80_000,
                  weighting="ntk", update_every=100, chunk=100),
    cli=dict(width=100, steps=2000),  # a CPU-sized run
    lab=dict(width=50, n_b=300, n_r=300, n_ntk=100),  # laptop size, the paper's budget
    lab_caption="Wave u_tt = 4 u_xx (paper Sec. 7.3) at laptop size: 3×50 tanh, Adam 1e-3 ×0.9/1000 steps",
    # the code's 300 / 100 split of u and u_t points; a 101 x 101 grid keeps a live prediction under ~10 ms
    lab_points=lambda n_b, n_r, n_ntk: dict(n_u=n_b, n_ut=max(1, n_b // 3), n_r=n_r, n_ntk=n_ntk, n_eval=101),
))
