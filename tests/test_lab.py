"""The live dashboard driven without a browser: its methods, its widgets' values and its figure data.

Background training needs a running event loop, so those tests run a coroutine with ``asyncio.run``
and poll the lab between chunks, as a Jupyter kernel would run button clicks between them.
"""

from __future__ import annotations

import asyncio
import time

import jax
import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

from pinnlab import ntk  # noqa: E402
from pinnlab.history import History  # noqa: E402
from pinnlab.lab import Lab, LabState, tasks  # noqa: E402
from pinnlab.lab import run as lab_run  # noqa: E402
from pinnlab.lab.run import Curves, LiveRun  # noqa: E402
from pinnlab.lab.state import PRESETS, build, preset  # noqa: E402
from pinnlab.training import Trainer  # noqa: E402

SMALL = dict(width=16)  # the paper's Poisson problem, a narrower net: compiles and trains in a blink


async def until(condition, timeout: float = 30.0) -> None:
    """Yield to the event loop until ``condition()`` holds (the lab's task runs meanwhile)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def trace(lab: Lab, role: tuple):
    return lab.figure.data[lab._model.index[role]]


# -- the state -----------------------------------------------------------------------------------------
def test_state_string_round_trip_and_validation():
    state = LabState(problem="wave", param=2.0, width=32, depth=3, rule="ntk", lr_scale=0.5, seed=7)
    assert LabState.from_string(state.to_string()) == state
    assert LabState.from_string("width=8&rule=ntk_mean") == LabState(width=8, rule="ntk_mean")
    with pytest.raises(ValueError, match="widht"):
        LabState.from_string("widht=8")
    with pytest.raises(ValueError, match="rule"):
        LabState(rule="ntk2")
    with pytest.raises(ValueError, match="width"):
        LabState(width=0)
    with pytest.raises(ValueError, match="lr_scale"):
        LabState(lr_scale=float("nan"))
    for name in PRESETS:
        assert preset(name).to_string()
    assert preset("fig4").rule == "ntk" and preset("wave").problem == "wave"


def test_curves_keep_at_most_max_rows_evenly_and_the_newest_step():
    from pinnlab.history import Snapshot

    curves = Curves(2, max_rows=100)
    for start in range(0, 1000, 7):
        steps = np.arange(start + 1, start + 8)
        rows = np.ones((7, 2), np.float32) * steps[:, None]
        curves.extend(Snapshot(steps, rows, rows, rows))
    steps, values = curves.view()
    assert len(steps) <= 101 and steps[-1] == 1001
    gaps = np.diff(steps[:-1])
    assert gaps.min() == gaps.max() == curves.stride  # evenly spread
    assert np.all(values[:, 0, 0] == steps)


# -- construction and a blocking run ---------------------------------------------------------------------
def test_lab_draws_every_panel_after_a_blocking_run():
    lab = Lab("poisson", **SMALL)
    assert lab.step == 0 and lab.status.startswith("ready")
    ref = trace(lab, ("eig0", 0, "K_r"))
    assert len(ref.y) > 10 and ref.y.dtype == np.float32  # the faint step-0 reference spectrum
    lab.run(3 * lab.runs[0].chunk)
    assert lab.step >= 3 * lab.runs[0].chunk
    loss = trace(lab, ("loss", 0, "u"))
    assert len(loss.x) > 10 and loss.x[-1] == lab.history.curve("steps")[-1] >= lab.step - 1
    np.testing.assert_allclose(loss.y[-1], lab.history.curve("losses")[-1, 0], rtol=1e-6)
    assert len(trace(lab, ("eig", 0, "K")).y) > 10
    assert len(trace(lab, ("pred", 0)).y) == len(lab.runs[0].exact)
    assert "step" in lab.controls.counter.value and f"{lab.step:,}" in lab.controls.counter.value
    assert lab.frames_drawn >= 2
    # the spectra and traces are on the trainer's fixed probe points: K_u of the step-0 keyframe is (n_b,)
    assert lab.runs[0].keyframes[0].spectra["K_u"].shape == (lab.state.n_b,)


def test_config_string_rebuilds_the_same_lab():
    lab = Lab("poisson", rule="ntk", seed=3, **SMALL)
    again = Lab(lab.config)
    assert again.states == lab.states
    assert again.config == lab.config


# -- live controls ----------------------------------------------------------------------------------------
def test_toggling_the_weighting_mid_run_changes_weights_losses_and_figure():
    lab = Lab("poisson", **SMALL)

    async def scenario():
        lab.play()
        await until(lambda: lab.step >= 2000 and lab.frames_drawn >= 2)
        before_weights = np.array(trace(lab, ("weight", 0, "u")).y)
        assert np.allclose(before_weights, 1.0)
        toggled_at = lab.step
        lab.controls.live["rule"].value = "ntk"  # as a click on the toggle button does
        await until(lambda: lab.step >= toggled_at + 2000 and lab.frames_drawn >= 4)
        lab.pause()
        await until(lambda: not lab.running)
        return toggled_at

    toggled_at = asyncio.run(scenario())
    assert lab.state.rule == "ntk" and "rule=ntk" in lab.config
    weights = lab.history.curve("weights")
    steps = lab.history.curve("steps")
    assert np.allclose(weights[steps < toggled_at], 1.0)
    assert weights[-1, 0] > 10 * weights[-1, 1]  # Algorithm 1: lambda_u >> lambda_r (Tr K_rr >> Tr K_uu)
    drawn = trace(lab, ("weight", 0, "u"))
    assert drawn.y[-1] == pytest.approx(weights[-1, 0], rel=1e-5) and drawn.y.max() > 10
    # the boundary loss falls faster once weighted: compare its decay rate before and after
    losses = lab.history.curve("losses")[:, 0]
    before = losses[(steps > toggled_at - 1000) & (steps <= toggled_at)]
    after = losses[steps > steps[-1] - 1000]
    assert after.mean() < 0.5 * before.mean()


def test_switching_the_rule_off_restores_unit_weights_and_lr_scale_applies():
    lab = Lab("poisson", rule="ntk", **SMALL)
    lab.run(lab.runs[0].chunk)
    assert lab.trainer.state.weights[0] > 10
    lab.set(rule="none", lr_scale=0.5)
    assert np.allclose(lab.trainer.state.weights, 1.0)
    assert lab.trainer.lr_scale == 0.5 and lab.trainer.rule == "none"
    assert lab.controls.live["lr_scale"].value == pytest.approx(0.5)
    compilations = lab.trainer.compilations
    lab.run(lab.runs[0].chunk)
    assert lab.trainer.compilations == compilations  # live controls never recompile
    assert np.allclose(lab.history.curve("weights")[-1], 1.0)


def test_pause_stops_within_a_chunk_and_run_resumes():
    lab = Lab("poisson", **SMALL)

    async def scenario():
        lab.play()
        await until(lambda: lab.step > 0)
        lab.controls.run.click()  # Run/Pause toggles
        await until(lambda: not lab.running)
        paused_at = lab.step
        await asyncio.sleep(0.2)
        assert lab.step == paused_at and lab.status == "paused"
        assert lab.controls.run.description == "Run"
        lab.controls.run.click()
        assert lab.running and lab.controls.run.description == "Pause"
        await until(lambda: lab.step > paused_at)
        lab.pause()
        await until(lambda: not lab.running)

    asyncio.run(scenario())
    assert not tasks.alive()


def test_step_button_trains_one_chunk():
    lab = Lab("poisson", **SMALL)
    lab.controls.step.click()
    assert lab.step == lab.runs[0].chunk
    assert trace(lab, ("loss", 0, "r")).x[-1] == lab.history.curve("steps")[-1]


# -- one training task per kernel -------------------------------------------------------------------------------
def test_reset_during_a_run_rebuilds_and_leaves_one_task():
    lab = Lab("poisson", **SMALL)

    async def scenario():
        lab.play()
        await until(lambda: lab.step >= 1000)
        old = lab.trainer
        lab.controls.reset["seed"].value = 5  # same shapes as before: the compile comes from the cache
        assert lab.controls.reset_button.button_style == "warning"  # pending until Reset
        assert lab.trainer is old
        lab.controls.reset_button.click()
        assert lab.trainer is not old and lab.state.seed == 5 and lab.step == 0
        stopped_at = old.step
        await until(lambda: lab.step >= 500)
        assert len(tasks.alive()) == 1 and lab.running  # the old loop is gone, the new one trains
        assert old.step == stopped_at
        lab.pause()
        await until(lambda: not lab.running)

    asyncio.run(scenario())
    assert lab.trainer.config.seed == 5
    assert lab.controls.reset_button.button_style == ""


def test_a_second_lab_never_leaves_two_training_tasks():
    first = Lab("poisson", **SMALL)

    async def scenario():
        first.play()
        first.play()  # a second Run click while running starts nothing new
        await until(lambda: first.step > 0)
        assert len(tasks.alive()) == 1
        second = Lab("poisson", **SMALL)  # a new Lab in the same kernel stops the old one's loop
        await until(lambda: not tasks.alive())
        assert not first.running and "stopped" in first.status
        first.play()
        await until(lambda: first.step > 0 and first.running)
        second.play()
        assert len(tasks.running()) == 1
        await until(lambda: len(tasks.alive()) == 1 and second.step > 0)
        assert not first.running and second.running and "stopped" in first.status
        frozen = first.step
        await asyncio.sleep(0.1)
        assert first.step == frozen
        second.pause()
        await until(lambda: not tasks.alive())

    asyncio.run(scenario())


# -- errors ----------------------------------------------------------------------------------------------------------
def test_an_error_in_the_training_task_is_shown_in_the_dashboard():
    lab = Lab("poisson", **SMALL)
    calls = {"n": 0}
    advance = lab.runs[0].advance

    def failing():
        calls["n"] += 1
        if calls["n"] > 2:
            raise FloatingPointError("boom in chunk 3")
        return advance()

    lab.runs[0].advance = failing

    async def scenario():
        lab.play()
        await until(lambda: lab.error is not None)
        await until(lambda: not tasks.alive())

    asyncio.run(scenario())
    assert isinstance(lab.error, FloatingPointError)
    assert "boom in chunk 3" in lab.controls.error.value and "FloatingPointError" in lab.controls.error.value
    assert lab.status.startswith("error") and not lab.running
    assert lab.controls.run.description == "Run"
    with pytest.raises(FloatingPointError):
        asyncio.run(lab.arun(1000))


def test_a_bad_control_value_is_shown_not_raised_into_the_kernel():
    lab = Lab("poisson", **SMALL)
    lab.controls.config.value = "width=-3"
    assert "width" in lab.controls.error.value and lab.state.width == SMALL["width"]
    with pytest.raises(ValueError, match="unknown lab setting"):
        lab.set(depht=2)


# -- compare, replay, export, static --------------------------------------------------------------------------------
def test_compare_runs_two_configs_from_the_same_initial_parameters():
    lab = Lab.compare("poisson", **SMALL)
    a, b = lab.runs
    for la, lb in zip(jax.tree.leaves(a.trainer.params0), jax.tree.leaves(b.trainer.params0), strict=True):
        np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))
    assert (a.state.rule, b.state.rule) == ("none", "ntk")
    lab.run(2 * a.chunk)
    assert a.step == b.step == 2 * a.chunk
    # same start: the first step's unweighted losses agree, then B's weights pull its boundary loss down
    np.testing.assert_allclose(a.trainer.history.curve("losses")[0], b.trainer.history.curve("losses")[0], rtol=1e-6)
    assert b.trainer.history.curve("losses")[-1, 0] < a.trainer.history.curve("losses")[-1, 0]
    assert np.allclose(trace(lab, ("weight", 0, "u")).y, 1.0)
    assert trace(lab, ("weight", 1, "u")).y[-1] > 10  # B weighted, on the same axes
    assert trace(lab, ("loss", 1, "u")).line.dash == "dash"
    lab.set(rule_a="ntk")
    assert a.state.rule == "ntk" and b.state.rule == "ntk" and "||" in lab.config
    lab.set(n_b=50)  # a reset field (not "n" of run B): pending until Reset
    assert lab.controls.reset_button.button_style == "warning" and a.state.n_b == 100


def test_replay_slider_scrubs_back_to_step_zero_and_returns_to_live():
    lab = Lab("poisson", **SMALL)
    for _ in range(3):
        lab.run(lab.runs[0].chunk)
        lab._last_keyframe = -1e9  # make a keyframe due at once (normally at most a few per second)
        lab.run(lab.runs[0].chunk)
    frames = lab.runs[0].keyframes
    assert len(frames) >= 3 and lab.controls.replay.max == len(frames) - 1
    lab.controls.replay.value = 0
    np.testing.assert_allclose(trace(lab, ("eig", 0, "K")).y, trace(lab, ("eig0", 0, "K")).y)
    np.testing.assert_allclose(trace(lab, ("pred", 0)).y, frames[0].prediction)
    assert len(lab.figure.layout.shapes) == 3 and "replay" in lab.controls.replay_label.value
    lab.controls.replay.value = lab.controls.replay.max
    np.testing.assert_allclose(trace(lab, ("pred", 0)).y, frames[-1].prediction)
    assert len(lab.figure.layout.shapes) == 0 and "live" in lab.controls.replay_label.value


def test_export_writes_history_and_report(tmp_path):
    lab = Lab("poisson", **SMALL)
    lab.run(2 * lab.runs[0].chunk)
    out = lab.export(tmp_path / "run")
    assert (out / "history.json").exists() and (out / "history.npz").exists()
    assert (out / "lab_config.txt").read_text().strip() == lab.config
    loaded = History.load(out)
    np.testing.assert_array_equal(loaded.curve("steps"), lab.history.curve("steps"))
    assert len(loaded.curve("steps")) == lab.step and loaded.spectra_step[0] == 0
    assert loaded.prediction is not None and "exported from pinnlab.Lab" in loaded.message
    try:
        import pinnlab.report  # noqa: F401
    except ImportError:
        return
    page = (out / "report.html").read_text()
    assert "<html" in page and "poisson" in page
    assert str(out) in lab.controls.exported.value


def test_static_backend_updates_a_plain_figure():
    import plotly.graph_objects as go

    lab = Lab("poisson", backend="static", **SMALL)
    assert type(lab.figure) is go.Figure
    before = lab._output.outputs[0]["data"]
    assert len(before["application/vnd.plotly.v1+json"]["data"]) == len(lab.figure.data)
    assert "cdn.plot.ly" in before["text/html"]  # the fallback for front ends without plotly's renderer
    lab.run(2 * lab.runs[0].chunk)
    assert trace(lab, ("loss", 0, "u")).x[-1] == lab.history.curve("steps")[-1]
    after = lab._output.outputs[0]["data"]["application/vnd.plotly.v1+json"]
    assert after != before["application/vnd.plotly.v1+json"]  # re-rendered with the trained curves
    with pytest.raises(ValueError, match="backend"):
        Lab("poisson", backend="svg")


def test_a_2d_problem_draws_heat_maps():
    lab = Lab("heat", width=8, depth=2, n_b=24, n_r=24, n_ntk=12)  # 2D like the wave, cheaper to compile
    frame = lab.runs[0].keyframes[-1]
    error = np.abs(frame.prediction - lab.runs[0].exact).reshape(101, 101).T
    np.testing.assert_allclose(np.asarray(trace(lab, ("err", 0)).z), error, rtol=1e-6)
    assert np.asarray(trace(lab, ("pred", 0)).z).shape == (101, 101)
    assert set(frame.spectra) == {"K", "K_u", "K_r"} and len(frame.spectra["K"]) == 24
    assert lab.figure.layout.coloraxis.colorscale and lab.figure.layout.coloraxis2.cmin == 0
    assert lab.step == 0  # the step-0 keyframe is drawn before any training (no chunk compiled here)


# -- the NTK path of the spectra and traces ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["default", "wave", "heat", "wave_paper"])
def test_the_lab_presets_take_the_structured_ntk(name):
    state = LabState() if name == "default" else preset(name)
    problem, net, train = build(state, chunk=1)
    trainer = Trainer(problem, net, train)  # as LiveRun builds it (no compile: nothing is traced here)
    assert ntk.explain(trainer.apply, problem.terms) == dict.fromkeys(problem.term_names, "structured")
    assert ntk.resolve_method(trainer.apply, problem.terms) == "structured"


def test_the_lab_spectra_and_traces_never_form_per_point_gradients(monkeypatch):
    resolved = []
    resolve = ntk.resolve_method
    monkeypatch.setattr(ntk, "resolve_method", lambda *a, **k: resolved.append(resolve(*a, **k)) or resolved[-1])

    def per_point_gradient(*args, **kwargs):
        raise AssertionError("the lab took the per-point Jacobian path")

    monkeypatch.setattr(ntk, "point_gradient", per_point_gradient)
    lab = Lab("poisson", rule="ntk", **SMALL)  # the step-0 keyframe: K on the probe points and its spectra
    lab.run(lab.runs[0].chunk)  # the training step's traces (Algorithm 1), then a keyframe at the last step
    lab.set(rule="none")
    lab.set(rule="ntk")  # the lab's own traces: weights computed at once on a rule switch
    assert lab.runs[0].keyframes[-1].step == lab.step and lab.runs[0].keyframes[-1].spectra is not None
    assert len(resolved) >= 4 and set(resolved) == {"structured"}
    assert lab.runs[0].ntk_method == "structured" and lab.runs[0].spectra_seconds > 0
    counter = lab.controls.counter.value
    assert "NTK structured" in counter and "ms</span>" in counter
    assert "title='K = J J^T from each layer&#x27;s Taylor-stream factors" in counter  # the tooltip stays quoted


def test_a_cheap_ntk_refreshes_the_spectra_within_the_time_budget():
    lab = Lab("poisson", **SMALL)
    live = lab.runs[0]
    while live.step - live.keyframes[-1].step < lab.state.ntk_every:  # past the NTK period: due but for time
        live.advance()
    now = 1000.0
    lab._last_keyframe, lab._keyframe_cost = now - 0.25, 0.002  # a 2 ms keyframe 0.25 s ago: due
    assert lab._keyframe_due(now)
    lab._keyframe_cost = 0.05  # a 50 ms keyframe: at most 4 % of the time, every 1.25 s
    assert not lab._keyframe_due(now) and lab._keyframe_due(now + 1.0)


def test_the_spectra_solve_on_one_blas_thread_and_restore_the_setting(monkeypatch):
    import threadpoolctl  # in the test and jupyter extras

    blas = threadpoolctl.ThreadpoolController().select(user_api="blas")
    live = LiveRun(LabState(**SMALL))
    seen = []
    spectra = live.trainer.spectra
    monkeypatch.setattr(live.trainer, "spectra", lambda: seen.append(blas.info()[0]["num_threads"]) or spectra())
    with blas.limit(limits=2):  # as on a 2-core machine, whatever this one has
        live.keyframe(spectra=True)
        after = blas.info()[0]["num_threads"]
    assert seen == [1] and after == 2


def test_the_history_keeps_a_bounded_thinned_record_of_spectra(monkeypatch):
    monkeypatch.setattr(lab_run, "MAX_RECORDS", 6)
    live = LiveRun(LabState(**SMALL))
    for _ in range(10):
        live.advance()
        live.keyframe(spectra=True)
    h = live.trainer.history
    assert len(h.spectra) <= 6 and len(h.spectra_step) == len(h.spectra) == len(h.ntk_drift)
    assert len(h.eval_step) <= 6 and len(h.eval_step) == len(h.rel_l2) == len(h.param_drift)
    assert h.spectra_step[0] == 0 and h.spectra_step[-1] == live.step == h.eval_step[-1]
    assert np.all(np.diff(h.spectra_step) > 0)
    assert live.records_thinned["spectra"] > 1
    assert "spectra thinned" in live.finish_history().message
