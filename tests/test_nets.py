"""Networks: initial statistics, parameterisations, standardisation, conventions and config validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinnlab import nets

IN, WIDTH = 300, 1000  # wide layers: 3e5 and 1e6 weights, 1e3 biases per hidden layer


def _layers(params):
    layers = params["layers"]
    return [(np.asarray(layers[k]["w"]), np.asarray(layers[k]["b"])) for k in sorted(layers)]


@pytest.fixture(scope="module")
def wide():
    """One wide net per initialiser (same key), depth 2 so there is a hidden-to-hidden layer."""
    return {init: nets.make_net(nets.NetConfig(width=WIDTH, depth=2, init=init), IN, np.zeros(IN), np.ones(IN),
                                jax.random.key(0))
            for init in nets.INITS}


def _check_std(sample, expected, n_sigma=5.0):
    """Sample std within ``n_sigma`` standard errors (relative s.e. of a normal std is 1/sqrt(2N))."""
    tol = n_sigma / np.sqrt(2 * sample.size)
    assert abs(sample.std() / expected - 1) < tol, (sample.std(), expected)
    assert abs(sample.mean()) < n_sigma * expected / np.sqrt(sample.size)


@pytest.mark.parametrize("init", nets.INITS)
def test_initialisation_statistics(wide, init):
    layers = _layers(wide[init].params)
    assert [w.shape for w, _ in layers] == [(IN, WIDTH), (WIDTH, WIDTH), (WIDTH, 1)]
    for k, (w, b) in enumerate(layers):
        fan_in, fan_out = w.shape
        w_std = {"lecun_normal": fan_in**-0.5, "glorot_normal": np.sqrt(2.0 / (fan_in + fan_out)), "normal": 1.0}[init]
        _check_std(w, w_std)
        if k < 2:  # plain normal, not truncated: a 2-sigma truncation would cap |w| at 2 std
            assert np.abs(w).max() / w_std > 4.0
        if init == "glorot_normal":
            assert np.all(b == 0.0)
        elif k < 2:
            _check_std(b, 1.0)
        assert w.dtype == b.dtype == np.float32


def test_initialisation_depends_on_the_key_only():
    config = nets.NetConfig(width=7, depth=2)
    a, b, c = (nets.make_net(config, 2, [0.0, 0.0], [1.0, 1.0], jax.random.key(s)) for s in (3, 3, 4))
    for x, y, z in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), jax.tree.leaves(c.params), strict=True):
        assert np.array_equal(x, y) and not np.array_equal(x, z)


@pytest.mark.parametrize("standardize", [True, False])
def test_ntk_parameterisation_is_standard_with_scaled_weights(h, standardize):
    mean, std = np.array([0.3, -0.2]), np.array([0.5, 2.0])
    kw = dict(width=9, depth=3, init="normal", standardize=standardize, activation="tanh")
    ntk_net = nets.make_net(nets.NetConfig(parameterization="ntk", **kw), 2, mean, std, jax.random.key(5))
    std_net = nets.make_net(nets.NetConfig(parameterization="standard", **kw), 2, mean, std, jax.random.key(5))
    for a, b in zip(jax.tree.leaves(ntk_net.params), jax.tree.leaves(std_net.params), strict=True):
        assert np.array_equal(a, b)  # same initial values: the parameterisations differ in the forward pass only
    with h.float64():
        params = h.to64(ntk_net.params)
        scaled = {"layers": {k: {"w": v["w"] / np.sqrt(v["w"].shape[0]), "b": v["b"]}
                             for k, v in params["layers"].items()}}
        x = jax.random.uniform(jax.random.key(1), (16, 2), jnp.float64, -1.0, 2.0)
        got, ref = ntk_net.apply(params, x), std_net.apply(scaled, x)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
        assert np.max(np.abs(std_net.apply(params, x) - ref)) > 1e-2  # the scaling matters


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
def test_standardisation_is_zscoring_the_input(h, parameterization):
    mean, std = np.array([0.25, 0.6]), np.array([0.4, 0.1])
    kw = dict(width=8, depth=2, parameterization=parameterization, init="normal")
    on = nets.make_net(nets.NetConfig(standardize=True, **kw), 2, mean, std, jax.random.key(2))
    off = nets.make_net(nets.NetConfig(standardize=False, **kw), 2, mean, std, jax.random.key(2))
    with h.float64():
        params = h.to64(on.params)
        x = jax.random.uniform(jax.random.key(1), (16, 2), jnp.float64)
        # The net keeps its statistics in float32.
        z = (x - mean.astype(np.float32).astype(np.float64)) / std.astype(np.float32).astype(np.float64)
        np.testing.assert_allclose(on.apply(params, x), off.apply(params, z), rtol=1e-12, atol=1e-12)
        assert np.max(np.abs(on.apply(params, x) - off.apply(params, x))) > 1e-2


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))  # jax.nn.gelu's default (tanh form)


MANUAL = {"tanh": np.tanh, "sin": np.sin, "gelu": _gelu, "softplus": lambda x: np.log1p(np.exp(x)),
          "swish": lambda x: x / (1 + np.exp(-x))}


@pytest.mark.parametrize("activation", sorted(nets.ACTIVATIONS))
def test_forward_pass_matches_manual_numpy(h, activation):
    """apply = W_out^T act(... act(W_1^T x + b_1) ...) + b_out, for one point and for a batch."""
    assert set(MANUAL) == set(nets.ACTIVATIONS)
    config = nets.NetConfig(width=5, depth=2, activation=activation, standardize=False)
    net = nets.make_net(config, 3, np.zeros(3), np.ones(3), jax.random.key(7))
    with h.float64():
        params = h.to64(net.params)
        x = np.random.default_rng(0).normal(size=(4, 3))
        hid = x
        layers = _layers(params)
        for w, b in layers[:-1]:
            hid = MANUAL[activation](hid @ w + b)
        ref = (hid @ layers[-1][0] + layers[-1][1])[:, 0]
        batch = net.apply(params, jnp.asarray(x))
        assert batch.shape == (4,)
        np.testing.assert_allclose(batch, ref, rtol=1e-12, atol=1e-12)
        single = net.apply(params, jnp.asarray(x[1]))
        assert single.shape == () and float(single) == pytest.approx(ref[1], rel=1e-12, abs=1e-12)


@settings(max_examples=3, deadline=None, derandomize=True)  # building an NNX module takes ~1 s
@given(in_dim=st.integers(1, 3), width=st.integers(1, 20), depth=st.integers(1, 4))
def test_shapes_and_parameter_count(in_dim, width, depth):
    net = nets.make_net(nets.NetConfig(width=width, depth=depth), in_dim, np.zeros(in_dim), np.ones(in_dim),
                        jax.random.key(0))
    sizes = [in_dim] + [width] * depth + [1]
    expected = [((a, b), (b,)) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    assert [(w.shape, b.shape) for w, b in _layers(net.params)] == expected
    assert net.num_params == in_dim * width + width + (depth - 1) * (width * width + width) + width + 1


def test_conventions():
    code = nets.convention("paper_code", "glorot_normal")
    assert (code.parameterization, code.init, code.standardize) == ("standard", "glorot_normal", True)
    assert nets.convention("paper_code").init == "lecun_normal"
    text = nets.convention("paper_text", "glorot_normal")
    assert (text.parameterization, text.init, text.standardize) == ("ntk", "normal", False)
    custom = nets.convention("paper_code", "lecun_normal", width=100, depth=1, activation="sin", init=None,
                             standardize=False)
    assert (custom.width, custom.depth, custom.activation, custom.init, custom.standardize) == (
        100, 1, "sin", "lecun_normal", False)  # None overrides are ignored, False is kept
    assert nets.convention("paper_text", width=3) == nets.NetConfig(width=3, parameterization="ntk", init="normal",
                                                                    standardize=False)
    with pytest.raises(ValueError, match="'paper'"):
        nets.convention("paper")


@pytest.mark.parametrize("field, value", [
    ("width", 0), ("width", -3), ("width", 2.5), ("width", True), ("width", "10"), ("depth", 0),
    ("parameterization", "mup"), ("init", "xavier"), ("activation", "relu"),
])
def test_bad_config_values_raise_naming_the_value(field, value):
    with pytest.raises(ValueError) as err:
        nets.NetConfig(**{field: value})
    assert repr(value) in str(err.value) and field in str(err.value)
