"""Ensembles: each member equals a lone Trainer run, the member axis is really sharded, bad input is named."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from pinnlab import divergence, make_problem, nets
from pinnlab.ensemble import Ensemble, Member, _chunk, make_mesh, run_ensemble
from pinnlab.problems.base import uniform
from pinnlab.training import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
NET = nets.convention("paper_code", "lecun_normal", width=8, depth=1)
# ntk_every > 0 runs make_step's NTK-refresh lax.cond inside the vmapped scan (its predicate must stay shared)
CONFIG = TrainConfig(optimizer="sgd", lr=1e-5, steps=12, chunk=6, ntk_every=4)


@pytest.fixture(scope="module")
def poisson():
    return make_problem("poisson", n_b=10, n_r=12, n_eval=50)


def _lone(problem, member: Member, config: TrainConfig, net=NET) -> Trainer:
    weights = member.initial_weights or config.initial_weights
    return Trainer(problem, net, dataclasses.replace(config, seed=member.seed, initial_weights=weights))


def _assert_same_history(got, want):
    for name in ("steps", "losses", "weights", "traces"):
        np.testing.assert_allclose(got.curve(name), want.curve(name), rtol=2e-6, atol=0, err_msg=name)
    assert got.eval_step == want.eval_step
    np.testing.assert_allclose(got.rel_l2, want.rel_l2, rtol=2e-6)
    np.testing.assert_allclose(got.param_drift, want.param_drift, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.prediction, want.prediction, rtol=2e-6, atol=1e-6)
    assert (got.status, got.message, got.config) == (want.status, want.message, want.config)


def test_each_member_equals_a_lone_trainer_run(poisson):
    """Seeds, initial weights, a member that diverges at step 1, then Algorithm 1 (a live control: the
    same compiled chunk), and a second width, which run_ensemble trains as its own group."""
    members = [Member(0), Member(1, (100.0, 1.0)), Member(2, (1e30, 1.0)), Member(3, (10.0, 1.0), width=5)]
    result = run_ensemble(poisson, NET, CONFIG, members)
    assert result.status == ["completed", "completed", "diverged", "completed"]
    for member, history in zip(members[:3], result.histories, strict=False):
        _assert_same_history(history, _lone(poisson, member, CONFIG).run())
    assert result.histories[2].curve("losses").shape == (1, 2)  # as the lone run: the kept state's own row, step 0
    # a diverged member has no final error (its last evaluation was step 0's), the others their last one
    np.testing.assert_array_equal(result.rel_l2, [np.nan if h.status == "diverged" else h.rel_l2[-1]
                                                  for h in result.histories])
    assert np.isnan(result.rel_l2[2]) and np.isfinite(result.histories[2].rel_l2[-1])
    narrow = _lone(poisson, members[3], CONFIG, dataclasses.replace(NET, width=5))
    narrow.evaluate()  # its initial error and config: the width-5 group got member 3's own network
    assert result.histories[3].config == narrow.history.config
    assert result.histories[3].rel_l2[0] == pytest.approx(narrow.history.rel_l2[0], rel=2e-6)

    ntk = dataclasses.replace(CONFIG, weighting="ntk", update_every=5)
    for member, history in zip(members[:2], Ensemble(poisson, NET, ntk, members[:2]).run().histories, strict=True):
        _assert_same_history(history, _lone(poisson, member, ntk).run())


def test_a_member_diverging_inside_a_chunk_keeps_the_lone_trainers_state_and_rows(poisson):
    """One divergence policy (pinnlab.divergence): plain gradient descent at lr 0.2 blows up inside the
    first chunk; the member and the lone run stop at the same step and keep the same last finite state and
    rows. The blow-up amplifies the batched and lone float32 roundings to ~1e-4; a step apart, the states
    differ by orders of magnitude."""
    config = TrainConfig(optimizer="sgd", lr=0.2, steps=600, chunk=10)
    ensemble = Ensemble(poisson, NET, config, [Member(0)])
    got = ensemble.run().histories[0]
    lone = _lone(poisson, Member(0), config)
    want = lone.run()
    assert want.status == "diverged" and 0 < lone.step and (lone.step + 1) % 10 != 0
    assert (got.status, got.message) == (want.status, want.message)
    np.testing.assert_array_equal(got.curve("steps"), want.curve("steps"))
    np.testing.assert_allclose(got.curve("losses"), want.curve("losses"), rtol=1e-3, atol=0)
    np.testing.assert_allclose(got.prediction, want.prediction, rtol=1e-3, atol=1e-3 * np.abs(want.prediction).max())
    member = jax.tree.map(lambda x: np.asarray(x)[0], ensemble.params)
    for a, b in zip(jax.tree.leaves(member), jax.tree.leaves(lone.state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=0)


def test_resampling_problem_and_adam(poisson):
    """Fresh points (and NTK probe points) every step from each member's own key, Adam's per-member state,
    Algorithm 1 inside the scan: Poisson with uniform samplers, resampled every step (cheaper than the wave)."""
    fresh = tuple(dataclasses.replace(t, sampler=uniform([0.0], [1.0])) for t in poisson.terms)
    problem = dataclasses.replace(poisson, terms=fresh, resample=True)
    config = TrainConfig(optimizer="adam", lr=1e-3, steps=8, chunk=8, weighting="ntk", update_every=3)
    members = [Member(0), Member(7)]
    ensemble = Ensemble(problem, NET, config, members)
    result = ensemble.run()
    keys = np.asarray(ensemble.carry.state.key)  # raw key data outside the jitted chunk
    for i, (member, history) in enumerate(zip(members, result.histories, strict=True)):
        lone = _lone(problem, member, config)
        _assert_same_history(history, lone.run())
        np.testing.assert_array_equal(keys[i], np.asarray(jax.random.key_data(lone.state.key)))


def test_vmap_keeps_every_cond_of_the_step(poisson):
    """The step counter and controls are shared, so vmap keeps make_step's lax.cond (the NTK refresh) a
    cond; a per-member predicate would turn it into a select that computes the NTK traces at every step.
    The divergence guard's cond has a per-member predicate (each member's losses): only it becomes a select."""
    ensemble = Ensemble(poisson, NET, CONFIG, [0, 1])
    chunk = _chunk(ensemble.apply, poisson, ensemble.optimizer, ensemble.mesh, 2)
    lone = _lone(poisson, Member(0), CONFIG)
    conds = [str(jax.make_jaxpr(f)(*args)).count(" cond[") for f, args in (
        (chunk, (ensemble.carry, ensemble.controls(), ensemble.data, ensemble.probe)),
        (lone._compiled.chunk(2), (divergence.start(lone.state), lone.controls(), lone.data, lone.probe)))]
    assert conds[0] >= 1 and conds[1] == conds[0] + 1, conds


SHARDED = textwrap.dedent("""
    import json, jax, numpy as np
    from pinnlab import make_problem, nets
    from pinnlab.ensemble import Ensemble, Member, make_mesh
    from pinnlab.training import TrainConfig
    assert len(jax.devices()) == 4, jax.devices()
    problem = make_problem("poisson", n_b=10, n_r=12, n_eval=50)
    net = nets.convention("paper_code", "lecun_normal", width=8, depth=1)
    config = TrainConfig(optimizer="sgd", lr=1e-5, steps=6, chunk=6, ntk_every=3)
    members = [Member(s, (w, 1.0)) for s, w in enumerate((1.0, 10.0, 100.0, 1.0, 10.0, 100.0))]
    four = Ensemble(problem, net, config, members)
    one = Ensemble(problem, net, config, members, make_mesh(jax.devices()[:1]))
    a, b = four.run(), one.run()
    out = {"padded": [four.padded, one.padded], "shards": []}
    for leaf in jax.tree.leaves(four.params):
        spec = tuple(leaf.sharding.spec)
        devices = sorted(s.device.id for s in leaf.addressable_shards)
        rows = sorted((s.index[0].start, s.index[0].stop) for s in leaf.addressable_shards)
        out["shards"].append({"spec": spec[:1], "devices": devices, "rows": rows})
    diff = [float(np.max(np.abs(x.curve(k) - y.curve(k)) / (np.abs(y.curve(k)) + 1e-30)))
            for x, y in zip(a.histories, b.histories) for k in ("losses", "weights", "traces")]
    out["max_rel_diff"] = max(diff)
    out["rel_l2"] = [a.rel_l2.tolist(), b.rel_l2.tolist()]
    print(json.dumps(out))
""")


def test_members_are_sharded_over_four_devices():
    """6 members on 4 host devices: padded to 8, 2 rows per device, results equal the 1-device run."""
    env = dict(os.environ)  # OPENBLAS_CORETYPE and the rest pass through untouched
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"  # the flag makes host (CPU) devices: keep a GPU machine on them too
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["padded"] == [8, 6]
    for leaf in out["shards"]:
        assert leaf["spec"] == ["runs"] and leaf["devices"] == [0, 1, 2, 3], leaf
        assert leaf["rows"] == [[0, 2], [2, 4], [4, 6], [6, 8]], leaf
    assert out["max_rel_diff"] < 2e-6, out
    np.testing.assert_allclose(*out["rel_l2"], rtol=2e-6)


@pytest.mark.parametrize("members, config, match", [
    ([], CONFIG, "at least one member"),
    (3, CONFIG, "must be a sequence"),
    ([Member(0), "seed 1"], CONFIG, "Member\\(...\\) or integer seeds, got 'seed 1'"),
    ([Member(0, (1.0, 2.0, 3.0))], CONFIG, r"member 0 \(seed 0\): initial_weights needs 2 values.*\(1.0, 2.0, 3.0\)"),
    ([Member(0), Member(1, width=16)], CONFIG, "member 1 .* width 16 .* width 8.*run_ensemble"),
    ([Member(0)], dataclasses.replace(CONFIG, spectra_at=(0,)), r"spectra_at=\(0,\).*Trainer"),
])
def test_bad_members_and_configs_are_named(poisson, members, config, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Ensemble(poisson, NET, config, members)


def test_bad_member_fields_and_mesh_are_named(poisson):
    with pytest.raises(ValueError, match="seed must be an integer, got 1.5"):
        Member(1.5)
    with pytest.raises(ValueError, match="width must be a positive integer or None, got 0"):
        Member(0, width=0)
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("batch",))
    with pytest.raises(ValueError, match="axis named 'runs'.*make_mesh"):
        Ensemble(poisson, NET, CONFIG, [0], mesh)
    with pytest.raises(ValueError, match="at least one device"):
        make_mesh([])
