"""The optimiser registry: what it names is what trains, and a registered one reaches TrainConfig and the CLI."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

from pinnlab import TrainConfig, Trainer, cli, convention, make_problem, optimizers
from pinnlab.training import total_loss


@pytest.fixture
def registered():
    optimizers.register("heavy_ball", lambda lr: optax.sgd(lr, momentum=0.5))
    yield "heavy_ball"
    del optimizers.OPTIMIZERS["heavy_ball"]
    optimizers.make.cache_clear()


def test_a_registered_optimizer_trains_and_is_offered_by_the_cli(registered):
    problem = make_problem("poisson", n_b=10, n_r=12)
    trainer = Trainer(problem, convention("paper_code", width=8), TrainConfig(optimizer=registered, lr=1e-4, chunk=1))
    p0 = trainer.state.params
    grad = jax.grad(lambda p: total_loss(trainer.apply, problem, p, trainer.data, trainer.state.weights)[0])
    g0 = grad(p0)
    trainer.advance(1)
    p1 = trainer.state.params
    g1 = grad(p1)
    trainer.advance(1)
    # heavy ball with momentum 0.5: v1 = g0, v2 = 0.5 g0 + g1; theta_{k+1} = theta_k - lr v_{k+1}
    want = jax.tree.map(lambda a, x, y: a - 1e-4 * (0.5 * x + y), p1, g0, g1)
    for got, exp in zip(jax.tree.leaves(trainer.state.params), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-7)
    train = next(a for a in cli.build_parser()._subparsers._group_actions[0].choices["train"]._actions
                 if a.dest == "optimizer")
    assert registered in train.choices


def test_unknown_or_malformed_registrations_are_refused():
    with pytest.raises(ValueError, match="unknown optimizer 'nope'; choose one of sgd, adam"):
        optimizers.make("nope", 1e-3, None, 1.0)
    with pytest.raises(ValueError, match="non-empty name and a callable factory"):
        optimizers.register("", optax.sgd)
    with pytest.raises(ValueError, match="non-empty name and a callable factory"):
        optimizers.register("x", 3)
