"""One preset per experiment of the paper (paper.md E1-E4), at three scales.

``smoke`` finishes in seconds (tests, notebooks under CI), ``cpu`` is the largest setting that
finishes in about ten minutes per figure on a 2-core laptop, ``full`` is the paper's exact setup.
Defaults follow the released code's conventions (``paper_code``); ``convention="paper_text"``
switches to the paper's text. Each preset returns an :class:`Experiment`: the run histories and the
numbers behind its figures; ``experiment.figures()`` builds the plotly figures (plotly is imported
only then, so presets run on machines without the Jupyter stack).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np
from jax.sharding import Mesh

from pinnlab.ensemble import Ensemble, Member, make_mesh, run_ensemble
from pinnlab.history import History, Snapshot
from pinnlab.nets import NetConfig
from pinnlab.nets import convention as make_convention
from pinnlab.problems import ENTRIES, Problem, make_problem
from pinnlab.training import TrainConfig, Trainer, ntk_weights_at_init

SCALES = ("smoke", "cpu", "full")
# The paper's set-ups, stated once in the problems' recipes (pinnlab.problems.registry.Recipe).
POISSON, WAVE = ENTRIES["poisson"].recipe, ENTRIES["wave"].recipe
# (label, run, snapshot): the Fig. 5 sweep passes its Ensemble, whose config, problem and step a bar reads
Progress = Callable[[str, Trainer | Ensemble, Snapshot], None]


@dataclasses.dataclass
class Experiment:
    """The outcome of a preset: histories by run label, the reported numbers, and its figures."""

    name: str
    scale: str
    histories: dict[str, History]
    numbers: dict

    def figures(self) -> dict:
        """``{"figN": plotly Figure}`` for the paper figures this experiment reproduces."""
        from pinnlab import paper_figures

        return paper_figures.build(self)


def default_scale() -> str:
    """``smoke`` when ``PINNLAB_SMOKE=1`` (notebooks under test), else ``cpu``."""
    return "smoke" if os.environ.get("PINNLAB_SMOKE") == "1" else "cpu"


def check_scale(scale: str | None) -> str:
    """``scale``, or the default (:func:`default_scale`) for None; an unknown one is a ValueError."""
    scale = default_scale() if scale is None else scale
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    return scale


def _train(label, problem, net_config, train_config, progress) -> tuple[Trainer, History]:
    trainer = Trainer(problem, net_config, train_config)
    for snap in trainer.snapshots():
        if progress is not None:
            progress(label, trainer, snap)
    return trainer, trainer.history


def _poisson_net(problem, width, depth, convention):
    return make_convention(convention, problem.default_init, width=width, depth=depth)


def _poisson_config(steps: int, **fields) -> TrainConfig:
    """The paper's Poisson optimiser (gradient descent at its learning rate) for ``steps`` steps."""
    return TrainConfig(optimizer=POISSON.optimizer, lr=POISSON.lr, steps=steps, **fields)


# -- E1: the NTK barely moves for wide nets (Figs. 2 and 3) ---------------------------------------
E1_WIDTHS, E1_STEPS = (10, 100, 500), 10_000  # the paper's Figs. 2-3: three widths, 10,000 GD steps
E1_SCALES = {
    "smoke": dict(widths=(10, 50), steps=200, every=50),
    "cpu": dict(widths=E1_WIDTHS, steps=E1_STEPS, every=500),
    "full": dict(widths=E1_WIDTHS, steps=E1_STEPS, every=100),
}


def e1(depth: int = 1, scale: str | None = None, convention: str = "paper_code", seed: int = 0,
       progress: Progress | None = None) -> Experiment:
    """Fig. 2 (``depth=1``) or Fig. 3 (``depth=3``): relative change of the parameters and of the
    full 200 x 200 NTK over 10,000 GD steps for widths 10/100/500 on u = sin(pi x), and the spectrum
    of K at the first and last step for the widest net."""
    scale = check_scale(scale)
    s = E1_SCALES[scale]
    problem = make_problem("poisson", a=1.0)
    histories, numbers = {}, {"widths": list(s["widths"]), "steps": s["steps"], "depth": depth}
    for width in s["widths"]:
        config = _poisson_config(s["steps"], chunk=s["every"], eval_every=s["every"],
                                 spectra_at=tuple(range(0, s["steps"] + 1, s["every"])), seed=seed)
        _, h = _train(f"width {width}", problem, _poisson_net(problem, width, depth, convention), config, progress)
        histories[f"width {width}"] = h
        numbers[f"width {width}"] = {
            "param_change": h.param_drift[-1], "ntk_change": h.ntk_drift[-1],
            "lambda_max_start": float(h.spectra[0]["K"][0]), "lambda_max_end": float(h.spectra[-1]["K"][0]),
        }
    return Experiment(f"e1_depth{depth}", scale, histories, numbers)


# -- E2: spectra of K, K_uu, K_rr for sin(a pi x) (Fig. 1) ------------------------------------------
E2_SCALES = {"smoke": 200, "cpu": POISSON.steps, "full": POISSON.steps}


def e2(scale: str | None = None, a_values=(1.0, 2.0, 4.0), width: int = POISSON.width, convention: str = "paper_code",
       seed: int = 0, progress: Progress | None = None) -> Experiment:
    """Fig. 1: eigenvalues of K, K_uu, K_rr at initialisation and after GD training, for a = 1, 2, 4.

    At initialisation the NTK does not depend on the target, so with one seed the three initial
    spectra coincide; the a-dependence the paper describes appears after training.
    """
    scale = check_scale(scale)
    steps = E2_SCALES[scale]
    histories, numbers = {}, {"steps": steps, "width": width}
    for a in a_values:
        problem = make_problem("poisson", a=float(a))
        config = _poisson_config(steps, chunk=min(POISSON.chunk, steps), spectra_at=(0, steps), seed=seed)
        _, h = _train(f"a={a:g}", problem, _poisson_net(problem, width, 1, convention), config, progress)
        histories[f"a={a:g}"] = h
        first, last = h.spectra[0], h.spectra[-1]
        numbers[f"a={a:g}"] = {
            "trace_ratio_rr_uu_init": float(np.sum(first["K_r"]) / np.sum(first["K_u"])),
            "lambda_max_init": {k: float(v[0]) for k, v in first.items()},
            "lambda_max_trained": {k: float(v[0]) for k, v in last.items()},
            "rel_l2": h.rel_l2[-1],
        }
    return Experiment("e2", scale, histories, numbers)


# -- E3: Poisson sin(4 pi x) with NTK weights (Fig. 4) and the lambda_b sweep (Fig. 5) -------------
E3_STEPS = {"smoke": 300, "cpu": POISSON.steps, "full": POISSON.steps}


def e3(scale: str | None = None, width: int = POISSON.width, convention: str = "paper_code", seed: int = 0,
       progress: Progress | None = None) -> Experiment:
    """Fig. 4: the PINN without weights, with Algorithm 1's weights fixed from the NTK at
    initialisation (as the paper computes them), and with the paper's rounded lambda_b = 100."""
    scale = check_scale(scale)
    steps = E3_STEPS[scale]
    problem = make_problem("poisson", a=4.0)
    net = _poisson_net(problem, width, 1, convention)
    ntk_w = ntk_weights_at_init(problem, net, seed=seed)
    runs = {"no weights": (1.0, 1.0), "NTK weights": tuple(ntk_w), "lambda_b=100": (100.0, 1.0)}
    histories, numbers = {}, {"steps": steps, "width": width, "ntk_weights": ntk_w.tolist(),
                              "lambda_b_over_lambda_r": float(ntk_w[0] / ntk_w[1])}
    for label, weights in runs.items():
        config = _poisson_config(steps, chunk=min(POISSON.chunk, steps), initial_weights=weights,
                                 spectra_at=(0, steps), seed=seed)
        _, h = _train(label, problem, net, config, progress)
        histories[label] = h
        numbers[label] = {"rel_l2": h.rel_l2[-1], "weights": [float(w) for w in weights]}
    return Experiment("e3", scale, histories, numbers)


E3_SWEEP_SCALES = {
    "smoke": dict(lambdas=(1.0, 100.0), trials=2, steps=200),
    "cpu": dict(lambdas=(1.0, 10.0, 50.0, 100.0, 200.0, 350.0, 500.0), trials=3, steps=POISSON.steps),
    "full": dict(lambdas=tuple(float(v) for v in np.linspace(0.0, 500.0, 11).clip(1.0)), trials=10,
                 steps=POISSON.steps),
}


def e3_sweep_runs(lambdas, trials: int, steps: int, width: int = POISSON.width, convention: str = "paper_code",
                  seed: int = 0) -> tuple[Problem, NetConfig, TrainConfig, list[Member]]:
    """The Fig. 5 grid as ensemble members: lambda_b in ``lambdas`` (lambda_r = 1) x ``trials`` seeds
    (``seed``, ``seed + 1``, ...), lambda_b slowest; plus the problem, net and config they share.

    Member ``m`` alone is ``Trainer(problem, net, replace(config, seed=m.seed, initial_weights=m.initial_weights))``.
    """
    problem = make_problem("poisson", a=4.0)
    net = _poisson_net(problem, width, 1, convention)
    config = _poisson_config(steps, chunk=min(POISSON.chunk, steps), ntk_every=0, eval_every=steps, seed=seed)
    members = [Member(seed + trial, (float(lam), 1.0), label=f"lambda_b={lam:g} trial {trial}")
               for lam in lambdas for trial in range(trials)]
    return problem, net, config, members


def e3_sweep(scale: str | None = None, width: int = POISSON.width, convention: str = "paper_code", seed: int = 0,
             progress: Progress | None = None, mesh: Mesh | None = None) -> Experiment:
    """Fig. 5: relative L2 error against a fixed lambda_b (lambda_r = 1), several seeds per value.

    The whole (lambda_b x trial) grid trains as one :class:`~pinnlab.ensemble.Ensemble`: one vmapped
    computation, its runs sharded over ``mesh`` (default: every device of ``jax.devices()``). Trial ``t``
    uses seed ``seed + t``; each run equals a lone ``Trainer`` run with that seed to float32 rounding.
    ``progress(label, ensemble, snapshot)`` gets the first run's snapshot after every chunk.
    """
    scale = check_scale(scale)
    s = E3_SWEEP_SCALES[scale]
    mesh = make_mesh() if mesh is None else mesh
    problem, net, config, members = e3_sweep_runs(s["lambdas"], s["trials"], s["steps"], width, convention, seed)
    label = f"lambda_b sweep: {len(members)} runs in one ensemble"
    report = None if progress is None else (lambda ensemble, snap: progress(label, ensemble, snap.member(0)))
    result = run_ensemble(problem, net, config, members, mesh=mesh, progress=report)
    errors = result.rel_l2.reshape(len(s["lambdas"]), s["trials"])
    errors[~np.isfinite(errors)] = np.nan
    numbers = {"lambda_b": list(s["lambdas"]), "trials": s["trials"], "steps": s["steps"],
               "rel_l2": errors.tolist(), "mean": np.nanmean(errors, 1).tolist(), "std": np.nanstd(errors, 1).tolist(),
               "status": [result.status[i:i + s["trials"]] for i in range(0, len(members), s["trials"])],
               "ensemble": {"runs": len(members), "devices": int(mesh.devices.size), "seconds": result.seconds}}
    return Experiment("e3_sweep", scale, {}, numbers)


# -- E4: the wave equation with and without Algorithm 1 (Figs. 6-8) -------------------------------
E4_SCALES = {
    "smoke": dict(width=20, depth=3, steps=300, spectra_at=(0, 100, 200, 300)),
    "cpu": dict(width=200, depth=3, steps=20_000, spectra_at=(0, 2_500, 10_000, 20_000)),
    "full": dict(width=WAVE.width, depth=WAVE.depth, steps=WAVE.steps, spectra_at=(0, 10_000, 40_000, WAVE.steps)),
}


def e4(scale: str | None = None, convention: str = "paper_code", seed: int = 0, update_every: int = WAVE.update_every,
       progress: Progress | None = None, **overrides) -> Experiment:
    """Figs. 6-8: the wave equation u_tt = 4 u_xx trained with Adam (1e-3, x0.9 per 1000 steps),
    without weights and with Algorithm 1 refreshed every ``update_every`` steps (code: 100)."""
    scale = check_scale(scale)
    s = {**E4_SCALES[scale], **overrides}
    problem = make_problem("wave")
    net = make_convention(convention, problem.default_init, width=s["width"], depth=s["depth"])
    histories, numbers = {}, {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()}
    for label, rule in (("no weights", "none"), ("Algorithm 1", "ntk")):
        config = TrainConfig(optimizer=WAVE.optimizer, lr=WAVE.lr, decay_steps=WAVE.decay_steps,
                             decay_rate=WAVE.decay_rate, steps=s["steps"],
                             weighting=rule, update_every=update_every, ntk_every=update_every,
                             spectra_at=tuple(s["spectra_at"]), seed=seed)
        _, h = _train(label, problem, net, config, progress)
        histories[label] = h
        numbers[label] = {"rel_l2": h.rel_l2[-1], "final_weights": h.final["weights"],
                          "seconds": h.seconds, "status": h.status}
    return Experiment("e4", scale, histories, numbers)


# -- figure registry for `pinnlab reproduce` --------------------------------------------------------
FIGURES = {
    "fig1": ("e2", lambda scale, progress: e2(scale, progress=progress)),
    "fig2": ("e1_depth1", lambda scale, progress: e1(1, scale, progress=progress)),
    "fig3": ("e1_depth3", lambda scale, progress: e1(3, scale, progress=progress)),
    "fig4": ("e3", lambda scale, progress: e3(scale, progress=progress)),
    "fig5": ("e3_sweep", lambda scale, progress: e3_sweep(scale, progress=progress)),
    "fig6": ("e4", lambda scale, progress: e4(scale, progress=progress)),
    "fig7": ("e4", lambda scale, progress: e4(scale, progress=progress)),
    "fig8": ("e4", lambda scale, progress: e4(scale, progress=progress)),
}


# -- the figures the lab shows live (``pinnlab.Lab("fig2")``; :data:`pinnlab.lab.state.PRESETS` reads them) --
# figure: (caption, LabState fields over the lab preset of its problem, Poisson unless "problem" is given).
# Their set-ups are the experiments' above; the budgets their step counts (Fig. 1 shows spectra from step 0:
# its live run stops with Figs. 2-3). Fig. 5 (a sweep of 70 runs) has no live version; Figs. 6-8 share one.
LAB_FIGURES: dict[str, tuple[str, dict]] = {
    "fig1": ("Fig. 1: spectra of K, K_uu, K_rr for u = sin(πx), 1×100: K_rr dwarfs K_uu",
             dict(param=1.0, ntk_every=1000, budget=E1_STEPS)),
    "fig2": (f"Fig. 2: a wide net's NTK barely moves: 1×{E1_WIDTHS[-1]}, u = sin(πx), GD 1e-5 (compare "
             "the faint step-0 spectra)", dict(param=1.0, width=E1_WIDTHS[-1], budget=E1_STEPS)),
    "fig3": (f"Fig. 3: the same with three hidden layers of {E1_WIDTHS[-1]}",
             dict(param=1.0, width=E1_WIDTHS[-1], depth=3, budget=E1_STEPS)),
    "fig4": (f"Fig. 4: u = sin(4πx) with Algorithm 1's weights from the NTK at step 0, held for the paper's "
             f"{POISSON.steps:,} steps", dict(param=4.0, rule="ntk", update_every=POISSON.steps)),
    "fig6": (f"Figs. 6-8: the wave with the paper's {WAVE.depth}×{WAVE.width} net and Algorithm 1 every "
             f"{WAVE.update_every} steps on 300 points per term (GPU-sized)",
             dict(problem="wave", width=WAVE.width, n_ntk=300, rule="ntk", update_every=WAVE.update_every)),
}
