"""1D Poisson equation u_xx = f on [0, 1] (paper Model Problems 7.1 and 7.2)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from pinnlab.problems.base import Linear, Problem, fixed, linear
from pinnlab.problems.registry import Entry, Recipe, register


def Poisson1D(a: float = 4.0, n_b: int = 100, n_r: int = 100, n_eval: int = 1000) -> Problem:
    """u_xx = f on [0, 1] with exact solution u = sin(a pi x) and u = g on {0, 1}.

    As in the released code: ``n_r`` equispaced collocation points (endpoints included), the
    boundary term on ``n_b // 2`` copies of x = 0 and the rest at x = 1, fixed full batches, inputs
    standardised with the mean and population std of the collocation points, LeCun-normal weights.
    a = 1 is Model Problem 7.1 (Figs. 1-3), a = 4 is Model Problem 7.2 (Figs. 4-5).
    """
    a = float(a)
    if not np.isfinite(a):
        raise ValueError(f"a must be a finite number, got {a!r}")
    for name, n in (("n_b", n_b), ("n_r", n_r), ("n_eval", n_eval)):
        if n < 2:
            raise ValueError(f"{name} must be at least 2, got {n!r}")

    def exact(x):
        return jnp.sin(a * jnp.pi * x[..., 0])

    def forcing(x):
        return -((a * jnp.pi) ** 2) * jnp.sin(a * jnp.pi * x[..., 0])

    x_b = np.concatenate([np.zeros(n_b // 2), np.ones(n_b - n_b // 2)])[:, None]
    x_r = np.linspace(0.0, 1.0, n_r)[:, None]
    terms = (
        linear("u", Linear(u=1.0), exact, fixed(x_b), n_b, n_b),
        linear("r", Linear(dd={0: 1.0}), forcing, fixed(x_r), n_r, n_r),
    )
    return Problem(
        name="poisson",
        coords=("x",),
        terms=terms,
        exact=exact,
        grid=np.linspace(0.0, 1.0, n_eval, dtype=np.float32)[:, None],
        grid_shape=(n_eval,),
        mean=x_r.mean(0),
        std=x_r.std(0),
        resample=False,
        default_init="lecun_normal",
        params={"a": a, "n_b": n_b, "n_r": n_r},
    )


register(Entry(
    name="poisson", factory=Poisson1D,
    summary="paper E3: u_xx = f, u = sin(a pi x), a=4; 1x100 tanh, sgd lr 1e-5, 40000 steps, chunk 1000; "
            "weights from the NTK at step 0, then fixed (paper Sec. 7.2: rel. L2 ~2e-3; --weighting none gives "
            "the plain PINN, ~0.12)",
    params_help={"a": "poisson: u = sin(a pi x) (default 4)"},
    param="a",
    # the paper's Sec. 7.2; update_every None: once, at step 0 (its weights come from the NTK at initialisation)
    recipe=Recipe(width=100, depth=1, optimizer="sgd", lr=1e-5, steps=40_000, weighting="ntk", update_every=None,
                  chunk=1000),
    cli={},
    lab={},
    lab_caption="Poisson u = sin(4πx), 1×100 tanh, gradient descent lr 1e-5 (paper Sec. 7.2), unweighted: "
                "switch the rule to ntk and watch λ_u and the boundary loss",
    lab_points=lambda n_b, n_r, n_ntk: dict(n_b=n_b, n_r=n_r),  # its NTK uses the training points
    aliases={"u": "n_b", "b": "n_b"},
))
