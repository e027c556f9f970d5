"""Multilayer perceptrons with the conventions the paper and its code disagree on made explicit.

The paper (Sec. 2) uses the NTK parameterisation ``z = W h / sqrt(d) + b`` with every weight and bias
drawn from N(0, 1) and raw inputs. Its released code uses the standard parameterisation ``z = W h + b``,
LeCun-normal weights with N(0, 1) biases (Poisson) or Glorot-normal weights with zero biases (wave),
and z-scored inputs. Only the code's choices reproduce the paper's numbers (paper.md Sec. 8), so the
``paper_code`` convention is the default.

The module is a Flax NNX ``MLP``; everything downstream uses the pure function ``apply(params, x)``
and the params pytree that :func:`make_net` splits out of it once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pinnlab import checks

Params = Any
Apply = Callable[[Params, jax.Array], jax.Array]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "sin": jnp.sin,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
    "swish": jax.nn.swish,
}
PARAMETERIZATIONS = ("standard", "ntk")
INITS = ("lecun_normal", "glorot_normal", "normal")
CONVENTIONS = ("paper_code", "paper_text")
MAX_DEPTH = 64  # deeper tanh MLPs do not train here, and each layer is a compile-time unroll


@dataclasses.dataclass(frozen=True)
class NetConfig:
    """Architecture and conventions of an MLP.

    Attributes:
      width: neurons per hidden layer.
      depth: number of hidden layers.
      parameterization: ``"standard"`` (z = W h + b) or ``"ntk"`` (z = W h / sqrt(fan_in) + b).
      init: ``"lecun_normal"`` (W ~ N(0, 1/fan_in), b ~ N(0, 1)), ``"glorot_normal"``
        (W ~ N(0, 2/(fan_in+fan_out)), b = 0; plain, not truncated, as in the released code) or
        ``"normal"`` (W, b ~ N(0, 1); the paper's choice for the NTK parameterisation).
      standardize: z-score the inputs with the problem's mean and std before the first layer.
      activation: one of :data:`ACTIVATIONS`.
    """

    width: int = 100
    depth: int = 1
    parameterization: str = "standard"
    init: str = "lecun_normal"
    standardize: bool = True
    activation: str = "tanh"

    def __post_init__(self):
        # numpy integers -> int: the config is written to JSON with every run. Sizes beyond memory are
        # refused where they are known with the problem (Trainer), not here.
        object.__setattr__(self, "width", checks.integer("width", self.width, 1))
        object.__setattr__(self, "depth", checks.integer("depth", self.depth, 1, MAX_DEPTH))
        if not isinstance(self.standardize, bool):
            raise ValueError(f"standardize must be True or False, got {self.standardize!r}")
        _check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        _check_choice("init", self.init, INITS)
        _check_choice("activation", self.activation, tuple(ACTIVATIONS))


def convention(name: str, problem_init: str = "lecun_normal", **overrides) -> NetConfig:
    """The named set of conventions, with any field overridden.

    ``paper_code``: standard parameterisation, the problem's code initialiser, z-scored inputs.
    ``paper_text``: NTK parameterisation, N(0, 1) weights and biases, raw inputs.
    """
    _check_choice("convention", name, CONVENTIONS)
    if name == "paper_code":
        base = dict(parameterization="standard", init=problem_init, standardize=True)
    else:
        base = dict(parameterization="ntk", init="normal", standardize=False)
    base.update({k: v for k, v in overrides.items() if v is not None})
    return NetConfig(**base)


class Scaler(nnx.Variable):
    """Fixed input statistics: part of the module state but never trained, never in the NTK."""


class Dense(nnx.Module):
    def __init__(self, fan_in: int, fan_out: int, config: NetConfig, key: jax.Array):
        kw, kb = jax.random.split(key)
        if config.init == "lecun_normal":
            w_std, b_std = 1.0 / np.sqrt(fan_in), 1.0
        elif config.init == "glorot_normal":
            w_std, b_std = np.sqrt(2.0 / (fan_in + fan_out)), 0.0
        else:
            w_std, b_std = 1.0, 1.0
        self.w = nnx.Param(w_std * jax.random.normal(kw, (fan_in, fan_out)))
        self.b = nnx.Param(b_std * jax.random.normal(kb, (fan_out,)))
        # The NTK parameterisation scales in the forward pass, so gradients differ from standard.
        self.scale = 1.0 / np.sqrt(fan_in) if config.parameterization == "ntk" else 1.0

    def __call__(self, h: jax.Array) -> jax.Array:
        return self.scale * (h @ self.w[...]) + self.b[...]


class MLP(nnx.Module):
    """``in_dim -> [width] * depth -> 1`` with the activation on hidden layers and a linear output."""

    def __init__(self, in_dim: int, config: NetConfig, mean, std, *, key: jax.Array):
        sizes = [in_dim] + [config.width] * config.depth + [1]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = nnx.List(
            [Dense(a, b, config, k) for a, b, k in zip(sizes[:-1], sizes[1:], keys)]
        )
        self.activation = ACTIVATIONS[config.activation]
        self.standardize = config.standardize
        self.mean = Scaler(jnp.asarray(mean, jnp.float32).reshape(in_dim))
        self.std = Scaler(jnp.asarray(std, jnp.float32).reshape(in_dim))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Network output for one point ``x`` of shape ``(in_dim,)`` (scalar) or a batch ``(n, in_dim)``."""
        h = (x - self.mean[...]) / self.std[...] if self.standardize else x
        for layer in self.layers[:-1]:
            h = self.activation(layer(h))
        return self.layers[-1](h)[..., 0]


@dataclasses.dataclass(frozen=True)
class Net:
    """A split MLP: the pure ``apply(params, x)``, its initial ``params`` and the NNX ``module``."""

    apply: Apply
    params: Params
    module: MLP
    config: NetConfig

    @property
    def num_params(self) -> int:
        return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(self.params))


def make_net(config: NetConfig, in_dim: int, mean, std, key: jax.Array) -> Net:
    """Build an MLP and split it once into ``apply(params, x)`` and a params pytree.

    ``mean`` and ``std`` are the input statistics used when ``config.standardize`` is true.
    """
    module = MLP(in_dim, config, mean, std, key=key)
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    params = jax.tree.map(jnp.asarray, nnx.to_pure_dict(params))
    stats = (tuple(np.ravel(mean).tolist()), tuple(np.ravel(std).tolist()))
    return Net(apply=_apply_for(config, in_dim, stats, graphdef, rest), params=params, module=module, config=config)


@dataclasses.dataclass(frozen=True, eq=False)  # identity hash: jitted functions and caches key on an apply
class MLPApply:
    """``apply(params, x)`` of a pinnlab MLP, a value that carries its architecture.

    ``mlp_spec`` is ``(NetConfig, mean, std)`` with the input statistics in float32, as the module stores
    them: :func:`pinnlab.streams.forward` (the training loss and the structured NTK) builds the Taylor
    streams from it, so they must use the very numbers the module does. Any other ``apply(params, x)``
    works everywhere too, through the Jacobian path.
    """

    graphdef: Any
    rest: Any
    mlp_spec: tuple

    def __call__(self, params: Params, x: jax.Array) -> jax.Array:
        return nnx.merge(self.graphdef, nnx.State(params), self.rest)(x)


_APPLY: dict[tuple, MLPApply] = {}


def _apply_for(config, in_dim, stats, graphdef, rest) -> MLPApply:
    """One ``apply`` per architecture and input statistics, so nets that differ only in their
    random parameters share every jitted function (and its compilation) downstream."""
    key = (config, in_dim, stats)
    if key not in _APPLY:
        _APPLY[key] = MLPApply(graphdef, rest, (config, np.float32(stats[0]), np.float32(stats[1])))
    return _APPLY[key]


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
