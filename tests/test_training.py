"""Trainer: determinism, live controls without recompiling, Algorithm 1 inside the scan, divergence, config."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinnlab import make_problem, nets, ntk
from pinnlab.training import TrainConfig, Trainer, ntk_weights_at_init

NET = nets.convention("paper_code", "lecun_normal", width=10, depth=1)


@pytest.fixture(scope="module")
def poisson():
    return make_problem("poisson", n_b=10, n_r=20, n_eval=50)


def _leaves(params):
    return [np.asarray(x) for x in jax.tree.leaves(params)]


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))


def _explicit_traces(h, apply, params, terms, points) -> np.ndarray:
    """Tr K_ii from an explicit float64 Jacobian: sum of squares of its rows, term by term."""
    with h.float64():
        pts = [jnp.asarray(x, jnp.float64) for x in points]
        jac = h.explicit_jacobian(apply, h.to64(params), terms, pts)
    offsets = np.cumsum([0] + [len(x) for x in points])
    return np.array([np.sum(jac[a:b] ** 2) for a, b in zip(offsets[:-1], offsets[1:], strict=True)])


def _rule(name, traces, counts, previous, momentum) -> np.ndarray:
    """The trace-based rules in float64 numpy: Algorithm 1 and the mean-diagonal EMA."""
    traces, counts, previous = (np.asarray(x, np.float64) for x in (traces, counts, previous))
    if name == "ntk":
        return traces.sum() / traces
    mean_diag = traces / counts
    return momentum * previous + (1 - momentum) * mean_diag.mean() / mean_diag


def test_same_seed_is_bitwise_reproducible_and_seeds_differ():
    """On the wave problem, which draws fresh points every step and uses the NTK weights."""
    wave = make_problem("wave", n_u=12, n_ut=6, n_r=12, n_ntk=6, n_eval=10)
    net = nets.convention("paper_code", "glorot_normal", width=8, depth=1)

    def run(seed):
        config = TrainConfig(optimizer="adam", lr=1e-3, steps=10, chunk=5, weighting="ntk", update_every=3, seed=seed)
        trainer = Trainer(wave, net, config)
        trainer.advance(10)
        return trainer.history.curve("losses"), trainer.history.curve("weights"), trainer.state.params

    (l1, w1, p1), (l2, w2, p2), (l3, w3, p3) = run(0), run(0), run(1)
    assert np.array_equal(l1, l2) and np.array_equal(w1, w2) and _same(p1, p2)
    assert not np.array_equal(l1, l3) and not np.array_equal(w1, w3) and not _same(p1, p3)
    assert np.all(np.isfinite(l1)) and l1.shape == (10, 3)


def test_live_controls_never_recompile_and_refresh_exactly_on_schedule(poisson):
    config = TrainConfig(optimizer="sgd", lr=1e-4, steps=100, chunk=6, weighting="ntk", update_every=4, ntk_every=0)
    trainer = Trainer(poisson, NET, config)
    compiled = None  # compiled chunks are shared by trainers of one structure: count from the first call
    phases = [  # (steps, rule, update_every, ntk_every): refreshes fall inside chunks, not on their edges
        (12, "ntk", 4, 0), (18, "ntk", 5, 3), (6, "none", 5, 4), (12, "ntk_mean", 7, 0),
    ]
    for n, rule, update_every, ntk_every in phases:
        trainer.rule, trainer.update_every, trainer.ntk_every = rule, update_every, ntk_every
        start = trainer.step
        snap = trainer.advance(n)
        compiled = trainer.compilations if compiled is None else compiled
        assert snap.diverged is None and trainer.compilations == compiled
        step = np.arange(start, start + n)  # the step whose weights row k holds
        weights_due = (step % update_every == 0) if rule != "none" else np.zeros(n, bool)
        traces_due = weights_due | ((step % ntk_every == 0) if ntk_every else False)
        prev_w = trainer.history.curve("weights")[start - 1] if start else np.ones(2)
        prev_t = trainer.history.curve("traces")[start - 1] if start else np.zeros(2)
        w = np.vstack([prev_w, snap.weights])
        t = np.vstack([prev_t, snap.traces])
        np.testing.assert_array_equal(np.any(w[1:] != w[:-1], axis=1), weights_due, err_msg=rule)
        np.testing.assert_array_equal(np.any(t[1:] != t[:-1], axis=1), traces_due, err_msg=rule)
        for k in np.flatnonzero(weights_due):
            counts = np.array([t.n_ntk for t in poisson.terms], np.float32)
            np.testing.assert_allclose(snap.weights[k], _rule(rule, snap.traces[k], counts, w[k], trainer.momentum),
                                       rtol=1e-5)
    assert compiled >= 1
    np.testing.assert_array_equal(trainer.history.curve("steps"), np.arange(48))  # rows are 0-based steps


def test_switching_on_the_weights_mid_run_changes_them_without_recompiling(poisson):
    trainer = Trainer(poisson, NET, TrainConfig(lr=1e-4, chunk=10, weighting="none", ntk_every=0))
    first = trainer.advance(10)
    compiled = trainer.compilations
    assert np.all(first.weights == 1.0) and np.all(first.traces == 0.0)
    trainer.rule, trainer.update_every, trainer.lr_scale = "ntk", 10, 0.5
    second = trainer.advance(10)
    assert np.all(second.weights != 1.0) and second.weights[0, 0] > second.weights[0, 1]  # lambda_u > lambda_r
    trainer.lr_scale = 0.0
    before = trainer.state.params
    third = trainer.advance(10)
    assert _same(before, trainer.state.params)  # lr_scale = 0 freezes the parameters ...
    assert np.all(third.losses == third.losses[0])  # ... so the losses stay put
    trainer.lr_scale = 1.0
    assert trainer.advance(10).diverged is None
    assert not _same(before, trainer.state.params)
    assert trainer.compilations == compiled
    trainer.advance(1)  # a new chunk length is a new function: the counter does count compilations
    assert trainer.compilations == compiled + 1


def test_changing_momentum_acts_at_the_next_refresh_without_recompiling(poisson):
    """The rule's factory closes over the traced ``Controls.momentum``: a new value is a new argument of
    the same compiled chunk, not a new constant."""
    config = TrainConfig(lr=1e-4, chunk=4, weighting="ntk_mean", update_every=2, ntk_every=0, momentum=0.9)
    trainer = Trainer(poisson, NET, config)
    trainer.advance(4)
    compiled, chunk = trainer.compilations, trainer._compiled.chunk(4)
    cache = chunk._cache_size()
    counts = np.array([t.n_ntk for t in poisson.terms])
    for momentum in (0.2, 0.0, 0.65):
        trainer.momentum = momentum
        previous = trainer.state.weights
        snap = trainer.advance(4)  # refreshes at the chunk's steps 0 and 2
        np.testing.assert_allclose(snap.weights[0], _rule("ntk_mean", snap.traces[0], counts, previous, momentum),
                                   rtol=1e-5)
        np.testing.assert_allclose(snap.weights[2], _rule("ntk_mean", snap.traces[2], counts, snap.weights[1],
                                                          momentum), rtol=1e-5)
    assert trainer.compilations == compiled and chunk._cache_size() == cache == 1


def test_lr_scale_zero_freezes_adam(poisson):
    trainer = Trainer(poisson, NET, TrainConfig(optimizer="adam", lr=1e-2, chunk=5, weighting="ntk", update_every=2))
    trainer.advance(5)
    compiled = trainer.compilations
    trainer.lr_scale, before = 0.0, trainer.state.params
    trainer.advance(5)
    assert _same(before, trainer.state.params)
    trainer.lr_scale = 1.0
    trainer.advance(5)
    assert not _same(before, trainer.state.params) and trainer.compilations == compiled


def test_algorithm_1_weights_equal_ntk_of_independent_traces(h, poisson):
    config = TrainConfig(optimizer="sgd", lr=1e-3, chunk=4, weighting="ntk", update_every=4, ntk_every=0)
    trainer = Trainer(poisson, NET, config)
    for _ in range(2):  # at the initial parameters, then at the parameters after 4 steps
        params = trainer.state.params
        snap = trainer.advance(4)
        traces = _explicit_traces(h, trainer.apply, params, poisson.terms, trainer.probe)
        np.testing.assert_allclose(snap.traces[0], traces, rtol=1e-4)
        np.testing.assert_allclose(snap.weights[0], traces.sum() / traces, rtol=1e-4)
        if trainer.step == 4:
            first = snap.weights[0]
    assert np.all(np.abs(snap.weights[0] / first - 1) > 1e-3)  # the second refresh saw different parameters
    np.testing.assert_allclose(ntk_weights_at_init(poisson, NET, seed=0), first, rtol=1e-5)
    assert not np.allclose(ntk_weights_at_init(poisson, NET, seed=1), first, rtol=1e-3)


def test_sgd_step_is_gradient_of_weighted_loss_with_decay(poisson):
    config = TrainConfig(optimizer="sgd", lr=1e-3, decay_steps=2, decay_rate=0.5, chunk=1, initial_weights=(2.0, 0.5))
    trainer = Trainer(poisson, NET, config)

    @jax.jit
    def losses(p):
        return jnp.stack([t.loss(trainer.apply, p, x) for t, x in zip(poisson.terms, trainer.data, strict=True)])

    weighted_grad = jax.jit(jax.grad(lambda p: jnp.sum(jnp.asarray([2.0, 0.5]) * losses(p))))
    params = trainer.state.params
    for step in range(3):
        snap = trainer.advance(1)
        np.testing.assert_allclose(snap.losses[0], losses(params), rtol=1e-5)
        grads = weighted_grad(params)
        lr = 1e-3 * 0.5 ** (step / 2)  # continuous exponential decay
        params = jax.tree.map(lambda p, g, lr=lr: p - lr * g, params, grads)
        for a, b in zip(_leaves(trainer.state.params), _leaves(params), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(trainer.history.curve("weights"), [[2.0, 0.5]] * 3)


def _diverge(problem, chunk):
    trainer = Trainer(problem, NET, TrainConfig(optimizer="sgd", lr=1.0, steps=300, chunk=chunk))
    return trainer, list(trainer.snapshots())


def test_divergence_is_caught_replayed_and_recorded(poisson):
    trainer, snaps = _diverge(poisson, 10)
    history, diverged = trainer.history, snaps[-1].diverged
    assert diverged is not None and all(s.diverged is None for s in snaps[:-1])
    assert diverged % 10 > 1  # this set-up blows up inside a chunk, so the replay is exercised
    assert history.status == "diverged" and f"step {diverged}" in history.message
    # The state is replayed to the last step whose loss was finite; the record ends with its row.
    assert trainer.step == diverged - 1
    np.testing.assert_array_equal(history.curve("steps"), np.arange(diverged))
    assert np.all(np.isfinite(history.curve("losses")))
    assert all(np.all(np.isfinite(x)) for x in _leaves(trainer.state.params))
    assert np.all(np.isfinite(history.prediction))
    # Taking the steps one at a time finds the same step.
    assert _diverge(poisson, 1)[1][-1].diverged == diverged
    # Training goes on from the replayed state (here frozen, so every recorded loss is the state's own,
    # finite one) with one record row per step, no repeats.
    trainer.lr_scale = 0.0
    assert trainer.advance(10).diverged is None
    np.testing.assert_array_equal(history.curve("steps"), np.arange(trainer.step))


def test_run_records_evaluations_spectra_and_prediction(poisson):
    config = TrainConfig(lr=1e-4, steps=20, chunk=5, eval_every=10, spectra_at=(0, 15), weighting="ntk")
    trainer = Trainer(poisson, NET, config)
    history = trainer.run()
    assert history.status == "completed" and history.message == ""
    np.testing.assert_array_equal(history.curve("steps"), np.arange(20))
    assert history.eval_step == [0, 10, 20] and len(history.rel_l2) == len(history.param_drift) == 3
    assert history.param_drift[0] == 0.0 and history.param_drift[-1] > 0
    assert history.rel_l2[-1] == pytest.approx(float(poisson.rel_l2(trainer.apply, trainer.state.params)), rel=1e-6)
    assert history.spectra_step == [0, 15] and history.ntk_drift[0] == 0.0 and history.ntk_drift[1] > 0
    assert set(history.spectra[0]) == {"K", "K_u", "K_r"}
    k0 = ntk.kernel(trainer.apply, trainer.params0, poisson.terms, trainer.probe)
    np.testing.assert_allclose(history.spectra[0]["K"], ntk.eigenvalues(k0), rtol=1e-4, atol=1e-4 * np.trace(k0))
    np.testing.assert_allclose(history.spectra[0]["K_u"], ntk.eigenvalues(k0[:10, :10]), rtol=1e-4,
                               atol=1e-4 * np.trace(k0))
    # The trainer predicts with a jitted apply: compare with the same computation, jitted (eager float32
    # differs from jitted in the last bits).
    predict = jax.jit(lambda p: trainer.apply(p, jnp.asarray(poisson.grid)))
    np.testing.assert_allclose(history.prediction, predict(trainer.state.params))
    assert history.final["steps"] == trainer.step == 20 and history.final["status"] == "completed"


def test_large_probe_sets_get_top_spectra_by_lanczos(poisson, monkeypatch, tmp_path):
    """Above DENSE_SPECTRA_MAX probe points the spectra are the top eigenvalues, without forming K."""
    import pinnlab.training as training

    monkeypatch.setattr(training, "DENSE_SPECTRA_MAX", 10)
    monkeypatch.setattr(training, "SPECTRA_TOP_K", 4)
    trainer = Trainer(poisson, NET, TrainConfig(lr=1e-4, steps=5, chunk=5, spectra_at=(0, 5)))
    history = trainer.run()
    k = ntk.kernel(trainer.apply, trainer.state.params, poisson.terms, trainer.probe)
    top = history.spectra[-1]
    assert {name: v.shape for name, v in top.items()} == {"K": (4,), "K_u": (4,), "K_r": (4,)}
    scale = np.trace(k)
    np.testing.assert_allclose(top["K"], ntk.eigenvalues(k)[:4], rtol=1e-4, atol=1e-6 * scale)
    np.testing.assert_allclose(top["K_u"], ntk.eigenvalues(k[:10, :10])[:4], rtol=1e-4, atol=1e-6 * scale)
    assert np.isnan(history.ntk_drift[-1])
    history.save(tmp_path)
    loaded = type(history).load(tmp_path)
    np.testing.assert_array_equal(loaded.spectra[-1]["K"], top["K"])


def test_advance_zero_steps_and_bad_live_controls(poisson):
    trainer = Trainer(poisson, NET, TrainConfig(chunk=5))
    snap = trainer.advance(0)
    assert len(snap.steps) == 0 and snap.losses.shape == (0, 2) and trainer.step == 0
    trainer.update_every = 0
    with pytest.raises(ValueError, match="update_every.*0"):
        trainer.advance(5)
    trainer.update_every, trainer.rule = 10, "adaptive"
    with pytest.raises(ValueError, match="'adaptive'"):
        trainer.advance(5)
    with pytest.raises(ValueError, match=r"initial_weights.*\(1\.0,\)"):
        Trainer(poisson, NET, TrainConfig(initial_weights=(1.0,)))


@pytest.mark.parametrize("kwargs, pattern", [
    ({"steps": 0}, r"steps .*got 0"), ({"steps": -5}, r"steps .*got -5"), ({"lr": math.nan}, r"lr .*got nan"),
    ({"lr": -1e-3}, r"lr .*got -0\.001"), ({"lr": 0.0}, r"lr .*got 0\.0"), ({"lr": math.inf}, r"lr .*got inf"),
    ({"optimizer": "lbfgs"}, r"optimizer 'lbfgs'"), ({"weighting": "softadapt"}, r"weighting 'softadapt'"),
    ({"update_every": 0}, r"update_every .*got 0"), ({"chunk": 0}, r"chunk .*got 0"),
    ({"decay_steps": 0}, r"decay_steps .*got 0"), ({"ntk_every": -1}, r"ntk_every .*got -1"),
    ({"spectra_at": (5, -1)}, r"spectra_at .*-1"),
])
def test_train_config_validation_names_the_value(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        TrainConfig(**kwargs)


def test_configs_accept_numpy_scalars(poisson):
    """Values from numpy (sweeps, sliders) are valid and end up as plain numbers in the run's JSON config."""
    config = TrainConfig(lr=np.float32(1e-3), steps=np.int64(10), chunk=np.int32(5), seed=np.int64(1))
    assert type(config.lr) is float and type(config.steps) is int and config.lr == pytest.approx(1e-3)
    net = nets.NetConfig(width=np.int64(6), depth=np.int32(1))
    assert type(net.width) is int and type(net.depth) is int
    history = Trainer(poisson, net, config).history
    assert history.config["train"]["steps"] == 10 and history.config["net"]["width"] == 6


def test_divergence_on_a_chunks_first_step_rewinds_into_the_chunk_before(poisson):
    trainer, snaps = _diverge(poisson, 10)
    diverged = snaps[-1].diverged
    # chunks that start exactly at the bad step: the last finite state lies in the previous chunk
    for chunk in (diverged, diverged // 2 if diverged % 2 == 0 else 1):
        other, other_snaps = _diverge(poisson, chunk)
        assert other_snaps[-1].diverged == diverged and other.step == diverged - 1
        np.testing.assert_array_equal(other.history.curve("steps"), np.arange(diverged))
        np.testing.assert_array_equal(other.history.curve("losses"), trainer.history.curve("losses"))
        for a, b in zip(_leaves(other.state.params), _leaves(trainer.state.params), strict=True):
            np.testing.assert_array_equal(a, b)  # the same replayed state as with any other chunk length


def test_set_rule_acts_at_once_none_restores_the_fixed_weights_and_is_recorded(h, poisson):
    trainer = Trainer(poisson, NET, TrainConfig(initial_weights=(100.0, 1.0), chunk=5))
    trainer.advance(10)
    np.testing.assert_allclose(trainer.state.weights, [100.0, 1.0])  # "none": the fixed weights
    trainer.set_rule("ntk")
    traces = _explicit_traces(h, trainer.apply, trainer.state.params, poisson.terms, trainer.probe)
    np.testing.assert_allclose(trainer.state.weights, traces.sum() / traces, rtol=1e-4)
    trainer.advance(5)
    trainer.set_rule("none")
    np.testing.assert_allclose(trainer.state.weights, [100.0, 1.0])
    assert trainer.history.events == [{"step": 10, "field": "rule", "value": "ntk"},
                                      {"step": 15, "field": "rule", "value": "none"}]
    with pytest.raises(ValueError, match="weighting"):
        trainer.set_rule("magic")
    with pytest.raises(ValueError, match="positive finite"):
        trainer.set_weights([1.0, float("nan")])


def test_weights_never_refresh_at_or_past_refresh_until(poisson):
    trainer = Trainer(poisson, NET, TrainConfig(weighting="ntk", update_every=10, chunk=7))
    trainer.refresh_until = 20
    trainer.advance(40)
    weights, steps = trainer.history.curve("weights"), trainer.history.curve("steps")
    assert not np.allclose(weights[steps == 9], weights[steps == 10])  # refreshed at 10
    np.testing.assert_array_equal(weights[steps >= 10], np.broadcast_to(weights[10], weights[steps >= 10].shape))


@pytest.mark.parametrize("rule", ["ntk", "ntk_mean"])
def test_trains_in_float64_under_jax_x64(poisson, h, rule):
    """With jax x64 on, the params, losses and traces are float64 (the carried weights and records stay
    float32) and the rule's weights are Algorithm 1's of the float64 traces: every lax.switch/cond branch
    returns the carried dtypes."""
    with jax.enable_x64(True):
        trainer = Trainer(poisson, NET, TrainConfig(lr=1e-4, chunk=5, weighting=rule, update_every=5))
        trainer.advance(10)
        traces = _explicit_traces(h, trainer.apply, trainer.state.params, poisson.terms, trainer.probe)
        trainer.set_rule("none")
        trainer.set_rule("ntk")
    assert all(x.dtype == np.float64 for x in _leaves(trainer.state.params))
    assert np.all(np.isfinite(trainer.history.curve("losses")))
    np.testing.assert_allclose(trainer.state.weights, traces.sum() / traces, rtol=1e-5)
