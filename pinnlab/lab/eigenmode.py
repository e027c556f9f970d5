"""One eigenvector of the NTK drawn over the domain: what the lab shows for a clicked eigenvalue.

The spectra panel draws the eigenvalues of each block lambda_i K_ii and of the whole K. Mode ``k`` of a
block is the k-th eigenvector of K_ii (the same for lambda_i K_ii and for the block of K-tilde = K D,
whose row factors ``D`` are one number per term: 2 lambda_i s_i / n_i), drawn over that term's probe
points; mode ``k`` of K spans every term's points. A block's mode is labelled with gradient descent's
steps to learn it, ``1 / (eta lambda_k(K-tilde_ii))`` (:func:`pinnlab.modes.steps_to_learn`): the steps
over which GD on the linearised network shrinks the residual along it by a factor e. Under Adam that
number is only the scale the kernel sets, not a prediction. K's own modes get no such number: K and
K D have different eigenvectors when the terms' factors differ.

Cost per click: the kernel on the probe points at the current parameters (the spectra's kernel) and
one ``eigh``; nothing while training.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pinnlab import linearized, modes, ntk
from pinnlab.training import DENSE_SPECTRA_MAX

WHOLE = "K"  # the block name of the whole kernel


@dataclasses.dataclass(frozen=True)
class Eigenmode:
    """Mode ``rank`` (1: the largest eigenvalue) of ``block`` (a term name, or :data:`WHOLE`) at ``step``.

    ``value`` is the eigenvalue as the spectra panel shows it (of lambda_i K_ii; of K for the whole
    kernel). ``points`` and ``vectors`` hold one entry per term of the problem: the term's probe points
    ``(n_i, d)`` and the mode's values there, scaled to a largest magnitude of 1 with that entry
    positive (empty for terms outside the block). ``steps_to_learn`` is None for the whole kernel.
    """

    block: str
    rank: int
    count: int
    value: float
    step: int
    lr: float
    steps_to_learn: float | None
    points: tuple[np.ndarray, ...]
    vectors: tuple[np.ndarray, ...]


def eigenmode(trainer, block: str, rank: int) -> Eigenmode:
    """Mode ``rank`` of ``block`` for ``trainer``'s current parameters, weights and learning rate."""
    t, names = trainer, trainer.problem.term_names
    if block != WHOLE and block not in names:
        raise ValueError(f"unknown block {block!r}; choose {WHOLE!r} or a term: {', '.join(names)}")
    chosen = range(len(names)) if block == WHOLE else (names.index(block),)
    terms, points = [t.problem.terms[i] for i in chosen], [t.probe[i] for i in chosen]
    count = sum(len(x) for x in points)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 1 <= rank <= count:
        raise ValueError(f"mode rank must be an integer in 1..{count} (the probe points of {block}), got {rank!r}")
    sizes = [len(x) for x in t.probe]
    if sum(sizes) > DENSE_SPECTRA_MAX:
        raise ValueError(f"{sum(sizes)} probe points: above {DENSE_SPECTRA_MAX} the lab never forms K, so it draws no "
                         "eigenvectors (lower n_ntk)")
    # the spectra's kernel (compiled already) on every term, then the block's rows
    k = np.asarray(ntk.kernel(t.apply, t.state.params, t.problem.terms, t.probe), np.float64)
    if block != WHOLE:
        a = sum(sizes[: chosen[0]])
        k = k[a: a + sizes[chosen[0]], a: a + sizes[chosen[0]]]
    if not np.all(np.isfinite(k)):
        raise ValueError(f"the kernel at step {t.step} is not finite: no modes to draw (reset the run)")
    weights = np.asarray(t.state.weights, np.float64)[list(chosen)]
    lr = float(t.config.lr) * float(t.lr_scale)
    if block == WHOLE:  # K itself, as the spectra panel draws it (unit factors)
        m = modes.decompose(0.5 * (k + k.T), np.ones(len(k)))
        value, learn = float(m.values[rank - 1]), None
    else:  # one factor per block: K-tilde_ii's modes are K_ii's
        factors = np.asarray(linearized.row_factors(terms, points, weights), np.float64)
        m = modes.decompose(k, factors)
        value = float(weights[0] * m.values[rank - 1] / factors[0])  # lambda_i times K_ii's eigenvalue
        learn = float(modes.steps_to_learn(m, lr)[rank - 1])
    vector = m.vectors[:, rank - 1]
    vector = vector / vector[np.argmax(np.abs(vector))]  # largest entry +1: a sign and scale to compare by eye
    offsets = np.cumsum([0] + [len(x) for x in points])
    parts = dict(zip(chosen, (vector[a:b] for a, b in zip(offsets[:-1], offsets[1:]))))
    d = t.problem.dim
    return Eigenmode(block, int(rank), count, value, t.step, lr, learn,
                     tuple(np.asarray(x, np.float32) if i in parts else np.zeros((0, d), np.float32)
                           for i, x in enumerate(t.probe)),
                     tuple(np.asarray(parts.get(i, np.zeros(0)), np.float32) for i in range(len(names))))
