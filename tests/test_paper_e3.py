"""Paper experiment E3 (Sec. 7.2, Fig. 4): Poisson u = sin(4 pi x) with and without NTK-derived weights.

Paper: relative L2 error 2.40e-1 with lambda_b = lambda_r = 1 and 1.63e-3 with lambda_b = 100, lambda_r = 1,
the ratio taken from the NTK at initialisation (Algorithm 1). Released-code conventions: one hidden layer of
100 tanh units, LeCun-normal weights with N(0, 1) biases, z-scored inputs, full-batch GD with lr 1e-5 for
40,000 steps. Seed 0 is the only seed used for the error thresholds; it was not chosen to pass.
"""

from __future__ import annotations

import numpy as np
import pytest

from pinnlab import make_problem, nets
from pinnlab.training import TrainConfig, Trainer, ntk_weights_at_init

pytestmark = pytest.mark.slow

PROBLEM = dict(a=4)
NET = nets.convention("paper_code", "lecun_normal", width=100, depth=1)


def _train(initial_weights=None, seed=0) -> float:
    problem = make_problem("poisson", **PROBLEM)
    config = TrainConfig(optimizer="sgd", lr=1e-5, steps=40_000, chunk=1000, weighting="none",
                         initial_weights=initial_weights, seed=seed)
    history = Trainer(problem, NET, config).run()
    assert history.status == "completed"
    assert history.eval_step[-1] == 40_000
    return history.rel_l2[-1]


def test_ntk_weight_ratio_at_initialisation(h):
    """Algorithm 1's weights lambda_i = (Tr K_uu + Tr K_rr) / Tr K_ii against traces from an explicit float64
    Jacobian (jacfwd of the stacked residuals, Tr K_ii = ||J_i||_F^2) of the same initial net and probe points."""
    problem = make_problem("poisson", **PROBLEM)
    ratios = []
    for seed in range(5):
        weights = ntk_weights_at_init(problem, NET, seed=seed)
        trainer = Trainer(problem, NET, TrainConfig(seed=seed))  # the initial params and probe points it uses
        with h.float64():
            probe = [h.to64(x) for x in trainer.probe]
            jac = h.explicit_jacobian(trainer.apply, h.to64(trainer.state.params), problem.terms, probe)
        ends = np.cumsum([0, *(len(x) for x in probe)])
        traces = np.array([np.sum(jac[a:b] ** 2) for a, b in zip(ends[:-1], ends[1:], strict=True)])
        np.testing.assert_allclose(weights, traces.sum() / traces, rtol=1e-5, err_msg=f"seed {seed}")
        lam_b, lam_r = weights
        ratios.append(lam_b / lam_r)
    assert 50 <= ratios[0] <= 200, ratios  # paper: 100
    assert 50 <= np.median(ratios) <= 200, ratios


def test_ntk_weights_fix_the_poisson_failure():
    weights = tuple(ntk_weights_at_init(make_problem("poisson", **PROBLEM), NET, seed=0))
    plain = _train(None)
    weighted = _train(weights)
    assert plain > 0.1, plain  # paper: 2.40e-1
    assert weighted < 1e-2, weighted  # paper: 1.63e-3
