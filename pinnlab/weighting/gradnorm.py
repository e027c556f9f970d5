"""Learning-rate annealing (Wang, Teng and Perdikaris, SIAM J. Sci. Comput. 2021): inverse gradient norms.

    lambda_hat_i = max_theta |dL_r / dtheta| / mean_theta |dL_i / dtheta|,
    lambda_i <- momentum * lambda_i + (1 - momentum) * lambda_hat_i,

for every term but the PDE residual r (the last term of every pinnlab problem), whose weight stays 1.
The paper's moving-average factor alpha is 1 - momentum: its alpha = 0.1 is the default momentum 0.9.
The statistics are gradients of the unweighted term losses on the training batch, taken only at the
steps where the weights refresh. As for every rule, the state carried between refreshes is the weights.
"""

from __future__ import annotations

import jax

from pinnlab.weighting import Rule, RuleState, Stats, Transform, register


def gradnorm(momentum: jax.typing.ArrayLike = 0.9) -> Transform:
    """The annealed weights (``momentum`` is the weight on the old value; the residual, last, keeps 1)."""

    def update(stats: Stats, state: RuleState) -> tuple[jax.Array, RuleState]:
        max_abs, mean_abs = stats.gradients()
        target = (max_abs[-1] / mean_abs).at[-1].set(1.0)
        weights = momentum * state + (1.0 - momentum) * target
        return weights, weights

    return Transform(lambda weights: weights, update)


register(Rule("gradnorm", gradnorm, ("gradients",), "grad norm (LRA)",
              "λ_i = max|∇L_r| / mean|∇L_i| with a moving average (Wang, Teng & Perdikaris 2021)",
              lab=False))  # its statistics compile into the step only for runs that use it
