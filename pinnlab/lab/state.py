"""Every control of the lab as one field of one serialisable state (as TensorFlow Playground's state.ts).

A :class:`LabState` is frozen and validated; :meth:`LabState.to_string` gives the shareable config
string (``problem=poisson&param=4&width=100&...``) and :meth:`LabState.from_string` reads it back.
Fields in :data:`LIVE` act at the next chunk without recompiling; every other field is a *reset*
field: changing it rebuilds the trainer and recompiles once. :func:`build` turns a state into the
engine's ``(Problem, NetConfig, TrainConfig)``.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qsl, urlencode

from pinnlab import checks
from pinnlab.nets import CONVENTIONS, NetConfig, convention
from pinnlab.optimizers import PRESETS as OPTIMIZER_PRESETS
from pinnlab.paper import LAB_FIGURES
from pinnlab.problems import ENTRIES, PROBLEMS, Problem, make_problem
from pinnlab.training import OPTIMIZERS, TrainConfig
from pinnlab.weighting import RULES

LIVE = ("rule", "update_every", "lr_scale", "ntk_every", "budget")
# The allowed range of every integer field: the widgets' bounds and the config string's, stated once.
RANGES = {"width": (1, 8192), "depth": (1, 32), "n_b": (2, 10**6), "n_r": (2, 10**6), "n_ntk": (2, 10**5),
          "seed": (0, 2**31 - 1), "chunk": (0, 4096), "update_every": (1, 10**9), "ntk_every": (0, 10**9),
          "budget": (0, 10**9)}
DECAY_STEPS = 1000  # the wave code's schedule: lr * decay ** (step / 1000)


def recipe_fields(name: str) -> dict:
    """The lab's fields of problem ``name``'s recipe (:class:`pinnlab.problems.registry.Recipe`): its
    parameter's default, the net, the optimiser, the schedule as a factor per :data:`DECAY_STEPS` steps
    and the step budget. The lab starts unweighted whatever the recipe's rule (predict, then reveal)."""
    entry = ENTRIES[name]
    r = entry.recipe
    decay = 1.0 if r.decay_steps is None else r.decay_rate ** (DECAY_STEPS / r.decay_steps)
    return dict(problem=name, param=entry.param_default, width=r.width, depth=r.depth, optimizer=r.optimizer,
                lr=r.lr, decay=decay, budget=r.steps)


_DEFAULT = recipe_fields("poisson")  # LabState() is the paper's Poisson set-up (Sec. 7.2)


@dataclasses.dataclass(frozen=True)
class LabState:
    """All controls of one lab run.

    Reset fields: ``problem`` (``poisson`` | ``wave`` | ``heat``), ``param`` (its parameter: a of
    sin(a pi x), the wave speed c, the diffusivity k), ``width``, ``depth``, ``convention``
    (``paper_code`` | ``paper_text``), ``optimizer`` (``sgd`` | ``adam``), ``lr``, ``decay`` (lr factor
    per 1000 steps, 1 = constant), ``n_b`` (boundary/initial points; the wave's u_t term gets a third),
    ``n_r`` (residual points), ``n_ntk`` (NTK probe points per term, 2D problems; Poisson uses its
    training points as the paper), ``seed``, ``chunk`` (steps per jitted call, 0 = pick ~30 ms).

    Live fields: ``rule`` (``none`` = the fixed weights, all 1 | ``ntk`` = Algorithm 1 | ``ntk_mean``),
    ``update_every`` (weight refresh period M), ``lr_scale`` (multiplies every update), ``ntk_every``
    (period of the logged NTK traces; the spectra follow it, within a cost budget), ``budget`` (the
    step at which the lab pauses, the paper's step count in its presets; weights never refresh at or
    past it; 0 = no budget).
    """

    problem: str = _DEFAULT["problem"]
    param: float = _DEFAULT["param"]
    width: int = _DEFAULT["width"]
    depth: int = _DEFAULT["depth"]
    convention: str = "paper_code"
    optimizer: str = _DEFAULT["optimizer"]
    lr: float = _DEFAULT["lr"]
    decay: float = _DEFAULT["decay"]
    n_b: int = 100
    n_r: int = 100
    n_ntk: int = 100
    seed: int = 0
    chunk: int = 0
    rule: str = "none"
    update_every: int = 100
    lr_scale: float = 1.0
    ntk_every: int = 100
    budget: int = _DEFAULT["budget"]

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, f.type, getattr(self, f.name)))
        _choice("problem", self.problem, tuple(PROBLEMS))
        _choice("convention", self.convention, CONVENTIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("rule", self.rule, tuple(name for name, rule in RULES.items() if rule.lab))
        for name, (low, high) in RANGES.items():
            checks.integer(name, getattr(self, name), low, high)
        for name in ("lr", "lr_scale", "decay"):
            checks.number(name, getattr(self, name), positive=True)
        checks.float32_number("param", self.param)

    # -- views --------------------------------------------------------------------------------
    def replace(self, **changes) -> LabState:
        """A copy with some fields changed (validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown lab setting(s) {sorted(unknown)}; known: {', '.join(FIELDS)}")
        return dataclasses.replace(self, **changes)

    def reset_fields(self) -> dict:
        """The fields whose change needs a rebuild (everything but :data:`LIVE`)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in LIVE}

    def live_fields(self) -> dict:
        return {k: getattr(self, k) for k in LIVE}

    @property
    def param_name(self) -> str:
        """The problem's parameter that ``param`` sets (its registry entry's ``param``)."""
        return ENTRIES[self.problem].param

    # -- the shareable string -----------------------------------------------------------------
    def to_string(self) -> str:
        """``key=value&...`` of every field, in field order (paste it into :meth:`from_string`)."""
        return urlencode([(k, _fmt(v)) for k, v in dataclasses.asdict(self).items()])

    @classmethod
    def from_string(cls, text: str) -> LabState:
        """Read a config string; unknown keys are an error. Missing fields keep the defaults of the string's
        problem (its preset: ``problem=wave&width=8`` is the wave's own set-up with width 8), else Poisson's."""
        text = text.strip().lstrip("?#")
        for part in filter(None, text.split("&")):
            if "=" not in part:
                raise ValueError(f"config string parts look like key=value, got {part!r}")
        fields = dict(parse_qsl(text, keep_blank_values=True))
        base = preset(fields["problem"]) if fields.get("problem") in ENTRIES else cls()
        return base.replace(**fields)


FIELDS = tuple(f.name for f in dataclasses.fields(LabState))


def _fmt(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _coerce(name: str, kind: str, value):
    """Strings (from a config string or a text box) to the field's type, with a message naming the field."""
    try:
        if kind in ("int", "float") and isinstance(value, str):
            value = float(value)  # "8.5" stays 8.5 here, and the check below refuses it as an integer
        if kind == "int":
            return checks.integer(name, value)
        if kind == "float":
            return checks.number(name, value)
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {'an integer' if kind == 'int' else 'a finite number'}, "
                         f"got {value!r}") from None


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


# -- presets ------------------------------------------------------------------------------------
# One preset per registered problem (its recipe with its entry's ``lab`` changes), then the paper's figures
# (their changes over their problem's preset, stated beside their experiments in pinnlab.paper).
PRESETS: dict[str, tuple[str, dict]] = {name: (e.lab_caption, {**recipe_fields(name), **e.lab})
                                        for name, e in ENTRIES.items()}
PRESETS.update({name: (caption, {**PRESETS[fields.get("problem", "poisson")][1], **fields})
                for name, (caption, fields) in LAB_FIGURES.items()})
PRESETS["wave_paper"] = PRESETS["fig6"]  # Figs. 6-8 by what they show


def preset(name: str) -> LabState:
    """The state of a named preset (see :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return LabState(**PRESETS[name][1])


def optimizer_fields(problem: str, optimizer: str) -> dict:
    """The ``lr`` and ``decay`` a switch to ``optimizer`` brings: its own (:data:`pinnlab.optimizers.PRESETS`:
    the kernel solve's step scale 1, no decay), the problem recipe's for the recipe's optimiser, else none."""
    own = OPTIMIZER_PRESETS.get(optimizer)
    if own:
        return dict(lr=own["lr"], decay=own["decay_rate"])
    recipe = preset(problem)
    return dict(lr=recipe.lr, decay=recipe.decay) if optimizer == recipe.optimizer else {}


def changed(state: LabState, **changes) -> LabState:
    """``state`` with ``changes``; a new optimiser without its own ``lr``/``decay`` in ``changes`` takes
    :func:`optimizer_fields` (gradient descent's lr 1e-5 would make the kernel solve crawl)."""
    if "optimizer" in changes and changes["optimizer"] != state.optimizer:
        fields = optimizer_fields(changes.get("problem", state.problem), changes["optimizer"])
        changes = {**{k: v for k, v in fields.items() if k not in changes}, **changes}
    return state.replace(**changes) if changes else state


def resolve(config: str | LabState = "poisson", **overrides) -> LabState:
    """A preset name, a config string (``key=value&...``) or a state, with fields overridden (:func:`changed`)."""
    if isinstance(config, LabState):
        state = config
    elif "=" in config:
        state = LabState.from_string(config)
    else:
        state = preset(config)
    return changed(state, **overrides)


# -- to the engine -------------------------------------------------------------------------------
def problem_kwargs(state: LabState) -> dict:
    """Keyword arguments of the problem function for this state (the entry maps the lab's point boxes)."""
    entry = ENTRIES[state.problem]
    return {entry.param: state.param, **entry.lab_points(state.n_b, state.n_r, state.n_ntk)}


def build(state: LabState, chunk: int) -> tuple[Problem, NetConfig, TrainConfig]:
    """The engine's problem, network and training config for ``state`` with ``chunk`` steps per call."""
    problem = make_problem(state.problem, **problem_kwargs(state))
    net = convention(state.convention, problem.default_init, width=state.width, depth=state.depth)
    decay = None if state.decay == 1.0 else DECAY_STEPS
    train = TrainConfig(optimizer=state.optimizer, lr=state.lr, decay_steps=decay, decay_rate=state.decay,
                        weighting=state.rule, update_every=state.update_every, ntk_every=state.ntk_every,
                        chunk=chunk, seed=state.seed)
    return problem, net, train
