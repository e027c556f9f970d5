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

from pinnlab import ntk, training  # noqa: E402
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


def trace(lab: Lab, key: str, run: int = 0):
    """The figure's trace with panel key ``key`` (e.g. ``"loss:u"``, ``"share:r"``, ``"eig:K"``) of run ``run``."""
    (index,) = [i for (_, r, k), i in lab._model.index.items() if r == run and k == key]
    return lab.figure.data[index]


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
    for name in PRESETS:  # every preset's config string reads back as the same state
        assert LabState.from_string(preset(name).to_string()) == preset(name), name


# name: (problem, its parameter, width, depth, optimizer, lr, lr decay per 1000 steps (None: constant), rule,
# update_every, ntk_every, NTK probe points per term, budget), from each preset's description and the paper
PRESET_SETTINGS = {
    "poisson": ("poisson", 4.0, 100, 1, "sgd", 1e-5, None, "none", 100, 100, 100, 40_000),
    "wave": ("wave", 2.0, 50, 3, "adam", 1e-3, 0.9, "none", 100, 100, 100, 80_000),
    "heat": ("heat", 0.1, 50, 3, "adam", 1e-3, None, "none", 100, 100, 100, 0),
    "fig1": ("poisson", 1.0, 100, 1, "sgd", 1e-5, None, "none", 100, 1000, 100, 10_000),
    "fig2": ("poisson", 1.0, 500, 1, "sgd", 1e-5, None, "none", 100, 100, 100, 10_000),
    "fig3": ("poisson", 1.0, 500, 3, "sgd", 1e-5, None, "none", 100, 100, 100, 10_000),
    "fig4": ("poisson", 4.0, 100, 1, "sgd", 1e-5, None, "ntk", 40_000, 100, 100, 40_000),
    "wave_paper": ("wave", 2.0, 500, 3, "adam", 1e-3, 0.9, "ntk", 100, 100, 300, 80_000),
    "fig6": ("wave", 2.0, 500, 3, "adam", 1e-3, 0.9, "ntk", 100, 100, 300, 80_000),
}


@pytest.mark.parametrize("name", sorted(PRESET_SETTINGS))  # a new problem's own test checks its preset
def test_presets_build_the_runs_their_descriptions_name(name):
    """Each preset, through :func:`build`, gives the engine the problem, net and schedule its description
    (and the paper) names: sin(a pi x) with a = 4 or 1, the wave speed c = 2, the diffusivity 0.1, ..."""
    problem_name, param, width, depth, optimizer, lr, decay, rule, update_every, ntk_every, n_ntk, budget = (
        PRESET_SETTINGS[name])
    state = preset(name)
    problem, net, train = build(state, chunk=100)
    assert problem.name == problem_name and problem.params[state.param_name] == param
    assert (net.width, net.depth, net.activation) == (width, depth, "tanh")
    assert (train.optimizer, train.lr, train.weighting) == (optimizer, lr, rule)
    assert (train.decay_steps, train.decay_rate) == ((None, 1.0) if decay is None else (1000, decay))
    assert (train.update_every, train.ntk_every, state.budget) == (update_every, ntk_every, budget)
    assert {t.n_ntk for t in problem.terms} == {n_ntk}


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
    ref = trace(lab, "eig0:K")
    assert len(ref.y) > 10 and ref.y.dtype == np.float32  # the faint step-0 reference spectrum
    lab.run(3 * lab.runs[0].chunk)
    assert lab.step >= 3 * lab.runs[0].chunk
    loss = trace(lab, "loss:u")
    assert len(loss.x) > 10 and loss.x[-1] == lab.history.curve("steps")[-1] >= lab.step - 1
    np.testing.assert_allclose(loss.y[-1], lab.history.curve("losses")[-1, 0], rtol=1e-6)
    assert len(trace(lab, "eig:K").y) > 10
    assert len(trace(lab, "pred").y) == len(lab.runs[0].exact)
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
        before_weights = np.array(trace(lab, "weight:u").y)
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
    drawn = trace(lab, "weight:u")
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


def test_the_first_switch_to_algorithm_1_was_compiled_off_the_event_loop_after_the_first_chunk(monkeypatch):
    lab = Lab("poisson", **SMALL)
    run = lab.runs[0]
    assert run.warming is None  # nothing competes with the first chunk's compile
    lab.run(run.chunk)
    assert not run.warming.daemon  # joined at exit: a daemon thread killed inside XLA aborted the process
    run.warming.join(timeout=120)
    assert not run.warming.is_alive()
    assert lab.trainer.rule == "none" and np.all(np.asarray(lab.trainer.state.weights) == 1)  # it changed nothing
    jitted = training._jitted_traces(lab.trainer.apply, lab.trainer.problem)
    compiled = jitted._cache_size()
    assert compiled >= 1
    # the click's switch finds the probe traces compiled: tracing them again would call ntk.traces
    monkeypatch.setattr(ntk, "traces", lambda *a, **k: pytest.fail("the rule switch traced the probe traces"))
    lab.set(rule="ntk")
    assert jitted._cache_size() == compiled
    assert lab.trainer.rule == "ntk" and lab.trainer.state.weights[0] > 10  # Poisson's lambda_u, as in training


def test_pause_stops_within_a_chunk_and_run_resumes():
    lab = Lab("poisson", **SMALL)

    async def scenario():
        lab.play()
        await until(lambda: lab.step > 0)
        lab.controls.run.click()  # Run/Pause toggles
        await until(lambda: not lab.running)
        paused_at = lab.step
        await asyncio.sleep(0.2)
        assert lab.step == paused_at and lab.status.startswith("paused")
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
    assert trace(lab, "loss:r").x[-1] == lab.history.curve("steps")[-1]


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

    def failing(limit=None):
        calls["n"] += 1
        if calls["n"] > 2:
            raise FloatingPointError("boom in chunk 3")
        return advance(limit)

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
    assert np.allclose(trace(lab, "weight:u").y, 1.0)
    assert trace(lab, "weight:u", 1).y[-1] > 10  # B weighted, on the same axes
    assert trace(lab, "loss:u", 1).line.dash == "dash"
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
    np.testing.assert_allclose(trace(lab, "eig:K").y, trace(lab, "eig0:K").y)
    np.testing.assert_allclose(trace(lab, "pred").y, frames[0].prediction)
    # the replay marker on the three per-step panels, beside the three lines of the step budget
    assert len(lab.figure.layout.shapes) == 6 and "replay" in lab.controls.replay_label.value
    lab.controls.replay.value = lab.controls.replay.max
    np.testing.assert_allclose(trace(lab, "pred").y, frames[-1].prediction)
    assert len(lab.figure.layout.shapes) == 3 and "live" in lab.controls.replay_label.value
    lab.controls.replay.value = 0
    lab.reset()  # a rebuild forgets the replay: no marker, the slider back at the start
    assert len(lab.figure.layout.shapes) == 3 and lab.controls.replay.max == 0 and lab._replay is None


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
    assert trace(lab, "loss:u").x[-1] == lab.history.curve("steps")[-1]
    after = lab._output.outputs[0]["data"]["application/vnd.plotly.v1+json"]
    assert after != before["application/vnd.plotly.v1+json"]  # re-rendered with the trained curves
    with pytest.raises(ValueError, match="backend"):
        Lab("poisson", backend="svg")


def test_a_2d_problem_draws_heat_maps():
    lab = Lab("heat", width=8, depth=2, n_b=24, n_r=24, n_ntk=12)  # 2D like the wave, cheaper to compile
    frame = lab.runs[0].keyframes[-1]
    error = (frame.prediction - lab.runs[0].exact).reshape(101, 101).T  # signed
    np.testing.assert_allclose(np.asarray(trace(lab, "err").z), error, rtol=1e-6)
    assert np.asarray(trace(lab, "pred").z).shape == (101, 101)
    assert set(frame.spectra) == {"K", "K_u", "K_r"} and len(frame.spectra["K"]) == 24
    assert lab.figure.layout.coloraxis.colorscale and lab.figure.layout.coloraxis2.cmid == 0
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
    # spectra, the training step's traces and the rule switch's traces (compiled once per structure)
    assert len(resolved) >= 3 and set(resolved) == {"structured"}
    assert lab.runs[0].ntk_method == "structured" and lab.runs[0].spectra_seconds > 0
    counter = lab.controls.counter.value
    assert "NTK structured" in counter and "ms</span>" in counter
    assert "K = J J^T from each layer&#x27;s Taylor-stream factors" in counter  # the tooltip stays quoted


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


def _ack(lab: Lab) -> None:
    """The front end's acknowledgement of the newest edit, as its message sets the widget's trait."""
    lab.figure._js2py_traceDeltas = {"trace_edit_id": lab.figure._last_trace_edit_id}


def test_a_click_while_running_is_drawn_at_once_or_right_after_the_frame_in_flight_never_behind_it(monkeypatch):
    lab = Lab("poisson", **SMALL)
    lab.run(lab.runs[0].chunk)
    monkeypatch.setattr(Lab, "running", property(lambda self: True))
    lab._last_frame, lab._frame_cost = time.perf_counter(), 0.02  # just drew; 20 ms frames: one per 0.4 s
    assert lab.figure.edits_in_flight() > 0 and not lab.frame_due()  # no front end has drawn the last frame
    drawn = lab.frames_drawn
    lab.set(rule="ntk")  # a frame is in flight: none goes out behind it
    assert lab.frames_drawn == drawn and lab._urgent and not lab.frame_due()
    _ack(lab)  # the front end drew it: the click's frame goes out now, not after the next chunk
    assert lab.frames_drawn == drawn + 1 and not lab._urgent
    shares = [np.asarray(trace(lab, f"share:{t}").y)[-1] for t in ("u", "r")]
    np.testing.assert_allclose(shares[0], shares[1], rtol=1e-5)  # the frame shows Algorithm 1's balance
    _ack(lab)
    assert lab.figure.edits_in_flight() == 0 and not lab.frame_due()  # the rate limit holds plain frames back
    lab.set(rule="none")  # nothing in flight: drawn at once, between chunks
    assert lab.frames_drawn == drawn + 2 and not lab._urgent
    shares = [np.asarray(trace(lab, f"share:{t}").y)[-1] for t in ("u", "r")]
    assert max(shares) > 10 * min(shares)  # apart again, at once
    _ack(lab)
    assert lab.frames_drawn == drawn + 2  # an acknowledgement with no click waiting draws nothing


def test_after_a_click_while_running_the_loop_trains_nothing_until_the_clicks_frame_is_drawn():
    async def main():
        lab = Lab("poisson", **SMALL)
        browser = {"draws": True, "frames": 0}

        async def front_end():  # draws (acknowledges) whatever is in flight, when it is allowed to
            while True:
                if browser["draws"] and lab.figure.edits_in_flight():
                    browser["frames"] += 1
                    _ack(lab)
                await asyncio.sleep(0.01)

        drawing = asyncio.ensure_future(front_end())
        lab.play()
        await until(lambda: browser["frames"] >= 2 and lab.step >= 3 * lab.runs[0].chunk)
        browser["draws"] = False  # the browser is busy with the frame now in flight
        await until(lambda: lab.figure.edits_in_flight() > 0)
        lab.set(rule="ntk")  # the click, handled between chunks
        step, frames = lab.step, lab.frames_drawn
        await asyncio.sleep(0.3)
        assert lab.step == step and lab.frames_drawn == frames and lab.running  # held; no frame queued behind
        browser["draws"] = True
        await until(lambda: lab.frames_drawn == frames + 1)  # the frame in flight drawn: the click's goes out
        assert lab.step == step
        await until(lambda: lab.step > step)  # its frame drawn too: training goes on
        shares = [np.asarray(trace(lab, f"share:{t}").y)[-1] for t in ("u", "r")]
        np.testing.assert_allclose(shares[0], shares[1], rtol=1e-5)
        lab.pause()
        await until(lambda: lab.scheduler.task.done())
        drawing.cancel()

    asyncio.run(main())


def test_a_click_with_no_front_end_attached_holds_nothing():
    async def main():
        lab = Lab("poisson", **SMALL)
        lab.play()
        await until(lambda: lab.step >= 2 * lab.runs[0].chunk)
        assert not lab.figure.acknowledged  # no browser: nothing will ever acknowledge the click's frame
        lab.set(rule="ntk")
        step, started = lab.step, time.perf_counter()
        await until(lambda: lab.step > step)
        assert time.perf_counter() - started < 1.0  # not the hold's 1.5 s timeout
        lab.pause()
        await until(lambda: lab.scheduler.task.done())

    asyncio.run(main())


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


# -- the paper's story on screen ------------------------------------------------------------------------------------
def shares(lab: Lab, run: int = 0) -> np.ndarray:
    """The newest weighted trace share of every term, as drawn."""
    return np.array([trace(lab, f"share:{t}", run).y[-1] for t in lab.runs[run].terms], np.float64)


@pytest.mark.parametrize("name", ["poisson", "wave"])
def test_algorithm_1_makes_the_drawn_weighted_trace_shares_equal(name):
    small = SMALL if name == "poisson" else dict(width=16, n_b=30, n_r=30, n_ntk=12)
    lab = Lab(name, **small)
    lab.run(lab.runs[0].chunk)
    m = len(lab.runs[0].terms)
    assert np.ptp(shares(lab)) > 0.1  # unweighted: the residual holds nearly all of Tr K
    raw_before = np.array([trace(lab, f"raw-share:{t}").y[-1] for t in lab.runs[0].terms])
    lab.set(rule="ntk")  # what the toggle does; acts at once, drawn at once while paused
    np.testing.assert_allclose(shares(lab), 1.0 / m, atol=1e-5)
    lab.run(lab.runs[0].chunk)
    np.testing.assert_allclose(shares(lab), 1.0 / m, atol=1e-5)
    raw = np.array([trace(lab, f"raw-share:{t}").y[-1] for t in lab.runs[0].terms])
    assert np.ptp(raw) > 0.1 and np.ptp(raw_before) > 0.1  # the raw shares stay as they were: faint reference
    # the weighted spectra are lambda_i times the raw ones (the paper's Fig. 8b)
    frame = lab.runs[0].keyframes[-1]
    lam = lab.trainer.state.weights
    for j, term in enumerate(lab.runs[0].terms):
        weighted, raw_eig = trace(lab, f"eig-w:{term}").y, trace(lab, f"eig:{term}").y
        np.testing.assert_allclose(weighted, float(lam[j]) * raw_eig, rtol=1e-5)
        assert raw_eig[0] == pytest.approx(np.max(frame.spectra[f"K_{term}"]), rel=1e-6)


def test_one_colour_per_term_in_every_panel_and_nothing_else_shares_it():
    from pinnlab.panels import TERM_COLORS

    for name, small in (("poisson", SMALL), ("wave", dict(width=8, n_b=30, n_r=30, n_ntk=12))):
        lab = Lab(name, **small)
        for (_, _, key), index in lab._model.index.items():
            data = lab.figure.data[index]
            color = getattr(getattr(data, "line", None), "color", None)
            term = key.split(":")[1] if ":" in key else None
            if term in TERM_COLORS:
                assert color == TERM_COLORS[term], key
            else:
                assert color not in TERM_COLORS.values(), key
        names = {d.name for d in lab.figure.data}
        assert "λ·K_uu (boundary + initial)" in names if name == "wave" else "λ·K_uu (boundary)" in names
        assert any("K_rr (residual)" in n for n in names)
        assert name == "poisson" or "λ·K_ut (initial velocity)" in names


def test_log_axes_label_ticks_with_their_values():
    lab = Lab("poisson", **SMALL)
    logs = [a for a in (lab.figure.layout[f"yaxis{i if i > 1 else ''}"] for i in range(1, 7)) if a.type == "log"]
    assert len(logs) == 4 and all(a.tickformat == ".0e" for a in logs)  # never a bare "5" meaning 500


def test_the_1d_error_is_signed_with_its_best_line():
    lab = Lab("poisson", **SMALL)
    lab.run(2 * lab.runs[0].chunk)
    frame, exact = lab.runs[0].keyframes[-1], lab.runs[0].exact
    x = np.asarray(lab.runs[0].problem.grid)[:, 0]
    err = frame.prediction.astype(np.float64) - exact
    np.testing.assert_allclose(trace(lab, "err").y, err, rtol=1e-5, atol=1e-7)
    beta, alpha = np.polyfit(x, err, 1)
    np.testing.assert_allclose(trace(lab, "err-line").y, alpha + beta * x, rtol=1e-4, atol=1e-6)


# -- the step budget and the demo ----------------------------------------------------------------------------------
def test_play_pauses_exactly_at_the_budget_and_weights_never_refresh_past_it():
    lab = Lab("fig4", budget=1000, **SMALL)  # Algorithm 1's weights from step 0, refreshed every 40,000 steps

    async def scenario():
        lab.set(update_every=500)  # a refresh falls on the budget: it must not happen
        lab.play()
        await until(lambda: not lab.running)
        assert lab.step == 1000 and lab.status.startswith("paused at the step budget")
        at_budget = np.array(lab.trainer.state.weights)
        lab.play()  # Run again: trains on past the budget, with the weights frozen
        await until(lambda: lab.step >= 2000)
        lab.pause()
        await until(lambda: not lab.running)
        return at_budget

    at_budget = asyncio.run(scenario())
    weights, steps = lab.history.curve("weights"), lab.history.curve("steps")
    assert not np.allclose(weights[steps == 499], weights[steps == 500])  # the refresh at 500 happened
    np.testing.assert_array_equal(weights[steps >= 500], np.broadcast_to(at_budget, weights[steps >= 500].shape))
    assert len(lab.figure.layout.shapes) == 3 and lab.figure.layout.shapes[0].x0 == 1000  # the budget line


def test_the_demo_tells_the_story_in_two_clicks():
    lab = Lab("poisson", budget=1500, **SMALL)
    lab.run(64)  # a student played first: the demo starts from step 0 all the same

    async def scenario():
        lab.controls.demo.click()
        assert lab.step == 0 and lab.state.rule == "none" and "1/2" in lab.controls.caption.value
        await until(lambda: not lab.running, timeout=60)
        assert lab.step == 1500 and "Predict" in lab.controls.caption.value
        assert np.ptp(shares(lab)) > 0.1
        lab.controls.demo.click()
        assert lab.state.rule == "ntk" and "2/2" in lab.controls.caption.value
        np.testing.assert_allclose(shares(lab), 0.5, atol=1e-5)
        await until(lambda: not lab.running, timeout=60)

    asyncio.run(scenario())
    assert lab.step == 3000 and "Done" in lab.controls.caption.value
    np.testing.assert_allclose(shares(lab), 0.5, atol=1e-5)
    plain = lab.runs[0].keyframes  # the error fell after the switch
    at_switch = [k.rel_l2 for k in plain if k.step == 1500][0]
    assert plain[-1].rel_l2 < at_switch
    assert [e["value"] for e in lab.history.events if e["field"] == "rule"] == ["ntk"]


# -- nothing crashes -------------------------------------------------------------------------------------------------
def test_divergence_restores_finite_parameters_and_run_works_again():
    lab = Lab("poisson", **SMALL)
    lab.run(lab.runs[0].chunk)
    lab.set(lr_scale=1e5)  # the loss overflows within a few steps

    async def scenario():
        lab.play()
        await until(lambda: not lab.running)

    asyncio.run(scenario())
    assert lab.status.startswith("diverged") and "diverged" in lab.controls.caption.value and lab.error is None
    params = jax.tree.leaves(lab.trainer.state.params)
    assert all(np.isfinite(np.asarray(p)).all() for p in params)
    steps = lab.history.curve("steps")
    assert steps[-1] == lab.step - 1 and np.all(np.diff(steps) == 1)  # rows up to the restored step
    assert np.isfinite(lab.runs[0].keyframes[-1].rel_l2)
    lab.set(lr_scale=1.0)
    before = lab.step
    outcome = lab.run(lab.runs[0].chunk)  # no Reset needed
    assert outcome.reason == "done" and lab.step > before and lab.error is None
    assert lab.runs[0].keyframes[-1].spectra is not None


def test_the_spectra_of_a_non_finite_kernel_are_skipped_not_raised(monkeypatch):
    live = LiveRun(LabState(**SMALL))
    live.advance()
    monkeypatch.setattr(live.trainer, "spectra", lambda: (_ for _ in ()).throw(np.linalg.LinAlgError("no")))
    assert live.keyframe(spectra=True).spectra is None and live.spectra_at(len(live.keyframes) - 1) is not None


def test_concurrent_aruns_share_one_loop_and_each_gets_its_outcome():
    lab = Lab("poisson", budget=0, **SMALL)

    async def scenario():
        a = asyncio.ensure_future(lab.arun(1000))
        b = asyncio.ensure_future(lab.arun(1000))
        first, second = await a, await b
        assert len(tasks.alive()) == 0
        return first, second

    first, second = asyncio.run(scenario())
    assert first.reason == second.reason == "done"
    # whole chunks: the first caller is answered at the first chunk boundary at or past its target
    assert 1000 <= first.step < 1000 + lab.runs[0].chunk and 2000 <= second.step == lab.step
    with pytest.raises(ValueError, match="steps"):
        asyncio.run(lab.arun(True))


def test_reset_during_arun_ends_it_with_reset_and_leaves_no_loop():
    lab = Lab("poisson", budget=0, **SMALL)

    async def scenario():
        pending = asyncio.ensure_future(lab.arun(10**7))
        await until(lambda: lab.step > 500)
        lab.reset(seed=4)
        outcome = await pending
        await until(lambda: not tasks.alive())
        return outcome

    outcome = asyncio.run(scenario())
    assert outcome.reason == "reset" and lab.step == 0 and not lab.running and lab.state.seed == 4


def test_pause_then_run_before_the_chunk_ends_keeps_running():
    lab = Lab("poisson", budget=0, **SMALL)

    async def scenario():
        lab.play()
        await until(lambda: lab.step > 0)
        lab.controls.run.click()  # Pause
        lab.controls.run.click()  # Run, before the loop has seen the pause
        assert lab.running and lab.controls.run.description == "Pause"
        at = lab.step
        await until(lambda: lab.step > at + 500)
        lab.pause()
        await until(lambda: not tasks.alive())

    asyncio.run(scenario())


def test_any_number_of_labs_draw():
    labs = [Lab("poisson", **SMALL), Lab("poisson", seed=1, **SMALL), Lab("heat", width=8, n_b=24, n_r=24, n_ntk=12)]
    for lab in labs:
        lab.run(lab.runs[0].chunk)
        assert len(trace(lab, "loss:u").x) > 0 and len(trace(lab, "eig:K").y) > 0 and lab.frames_drawn >= 1


def test_the_exported_report_records_each_rule_change_with_its_step(tmp_path):
    pytest.importorskip("plotly")
    lab = Lab("poisson", **SMALL)
    lab.run(lab.runs[0].chunk)
    lab.set(rule="ntk")
    at = lab.step
    lab.run(lab.runs[0].chunk)
    out = lab.export(tmp_path / "run")
    assert History.load(out).events == [{"step": at, "field": "rule", "value": "ntk"}]
    assert f"step {at:,}: rule → ntk" in (out / "report.html").read_text()


def test_the_presentation_layout_puts_the_key_controls_in_one_row():
    lab = Lab("poisson", layout="presentation", **SMALL)
    c = lab.controls
    row = lab.widget.children[1]
    assert {c.run, c.step, c.live["rule"], c.demo} <= set(row.children)
    assert lab.figure.layout.width <= 1280 and lab.figure.layout.height <= 600 and lab.figure.layout.font.size >= 16
    assert "pinnlab-presentation" in lab.widget._dom_classes
    c.presenting.value = False  # the toggle switches back
    assert lab.layout == "notebook" and lab.figure.layout.font.size < 16
    assert "pinnlab-presentation" not in lab.widget._dom_classes
    with pytest.raises(ValueError, match="layout"):
        Lab("poisson", layout="slides")


def test_no_axis_measures_its_tick_labels_on_each_replot():
    # plotly_white sets automargin and plotly.js defaults ticklabeloverflow to "hide past div": both measure
    # every tick label's box on each frame's replot (benchmarks/profile_page.py: 42-54 % of a redraw in JupyterLab).
    lab = Lab("poisson", **SMALL)
    lab.controls.presenting.value = True  # the other layout keeps it too
    axes = [*lab.figure.select_xaxes(), *lab.figure.select_yaxes()]
    assert len(axes) == 12
    for axis in axes:
        assert axis.automargin is False and axis.ticklabeloverflow == "allow", axis.plotly_name


def test_a_control_changed_on_another_thread_acts_on_the_loop_between_chunks():
    import threading

    lab = Lab("poisson", budget=0, **SMALL)
    applied = []
    set_rule = lab.trainer.set_rule
    lab.trainer.set_rule = lambda rule: applied.append(threading.get_ident()) or set_rule(rule)

    async def scenario():
        lab._loop, lab._thread = asyncio.get_running_loop(), threading.get_ident()  # as built in a kernel
        lab.play()
        await until(lambda: lab.step > 500)
        worker = threading.Thread(target=lambda: setattr(lab.controls.live["rule"], "value", "ntk"))
        worker.start()  # as a widget message on a kernel subshell
        worker.join()
        await until(lambda: lab.trainer.rule == "ntk")
        await until(lambda: lab.history.curve("weights")[-1, 0] > 10)
        lab.pause()
        await until(lambda: not tasks.alive())

    asyncio.run(scenario())
    assert applied == [threading.get_ident()]  # applied on the loop's thread, not the widget's
    assert lab.trainer.state.weights[0] > 10 and lab.status.startswith("paused")


def test_the_kernel_solve_is_chosen_with_a_step_scale_and_shows_its_damping_live():
    lab = Lab("poisson", **SMALL)
    c = lab.controls
    c.reset["optimizer"].value = "lm"
    assert (c.reset["lr"].value, c.reset["decay"].value) == (1.0, 1.0)  # a step scale, not sgd's 1e-5
    c.reset_button.click()
    assert lab.state.optimizer == "lm" and lab.runs[0].trainer.config.lr == 1.0
    lab.run(20)
    solver = lab.runs[0].trainer.solver_state()
    assert solver["accepted"] + solver["rejected"] == lab.step
    assert f"μ {solver['mu']:.1e} ρ {solver['rho']:.2f}" in c.counter.value
    first, last = lab.history.curve("losses")[[0, -1]].sum(axis=1)
    assert last < 1e-2 * first  # twenty kernel-solve steps do what sgd does in thousands
    c.reset["optimizer"].value = "sgd"  # back to the recipe's optimiser: its learning rate again
    assert c.reset["lr"].value == preset("poisson").lr


def test_the_kernel_solve_from_code_takes_its_step_scale_too():
    # lab.reset(optimizer="lm") and Lab(optimizer="lm") kept sgd's lr 1e-5: a solve that crawled at rel. L2 2
    assert Lab("poisson", optimizer="lm", **SMALL).state.lr == 1.0
    assert Lab("poisson", optimizer="lm", lr=0.5, **SMALL).state.lr == 0.5  # a given lr is kept
    lab = Lab("poisson", **SMALL)
    lab.reset(optimizer="lm")
    assert (lab.state.optimizer, lab.state.lr, lab.runs[0].trainer.config.lr) == ("lm", 1.0, 1.0)
    lab.reset(optimizer="sgd")
    assert lab.state.lr == preset("poisson").lr
    lab.reset(optimizer="adam")  # not the recipe's optimiser, no preset of its own: the lr stays
    assert lab.state.lr == preset("poisson").lr


def test_a_stalled_kernel_solve_pauses_the_lab_and_says_why():
    # float32 Poisson: the solve reaches rounding within a few hundred steps; then every step is a rejected solve
    lab = Lab("poisson", optimizer="lm", budget=0, width=100)

    async def main():
        lab.play()
        await until(lambda: not lab.running, timeout=120)

    asyncio.run(main())
    assert lab.scheduler.last.reason == "stalled" and lab.step < 5000
    assert lab.runs[0].trainer.solver_state()["mu"] == 1e10
    assert "damping reached its cap" in lab.status and "float32" in lab.status
    assert lab.runs[0].keyframes[-1].rel_l2 < 1e-4


# -- the modes panel (pinnlab.lab.decay) ------------------------------------------------------------------
def _independent_modes(run: LiveRun):
    """Eigenpairs of D^1/2 K_0 D^1/2 in float64 from an explicit Jacobian at the initial parameters, with
    D = 2 lambda_i s_i / n_i written out here (not pinnlab.linearized), and the probe residuals' projector."""
    from tests.conftest import explicit_jacobian

    t = run.trainer
    jac = explicit_jacobian(t.apply, t.params0, t.problem.terms, t.probe).astype(np.float64)
    w0 = np.asarray(t.fixed_weights, np.float64)
    d = np.concatenate([np.full(len(x), 2 * w * term.scale / len(x))
                        for term, x, w in zip(t.problem.terms, t.probe, w0)])
    values, vectors = np.linalg.eigh(np.sqrt(d)[:, None] * (jac @ jac.T) * np.sqrt(d)[None, :])
    order = np.argsort(values)[::-1]

    def coefficients(params):
        r = np.concatenate([np.asarray(term.residuals(t.apply, params, x), np.float64)
                            for term, x in zip(t.problem.terms, t.probe)])
        return np.abs(vectors[:, order].T @ (np.sqrt(d) * r))

    return values[order], coefficients


def test_the_modes_panel_projects_the_probe_residuals_on_the_modes_of_k0_d():
    lab = Lab("poisson", backend="static", modes=True, **SMALL)
    lab.run(600)
    run = lab.runs[0]
    m = lab._views()[0].modes
    values, coefficients = _independent_modes(run)
    top = m["index"][:3] - 1  # the well-separated leading modes (the float32 kernel's rounding spares them)
    np.testing.assert_allclose(m["values"][:3], values[top], rtol=1e-3)
    np.testing.assert_allclose(m["coeffs"][0][:3], coefficients(run.trainer.params0)[top], rtol=1e-2, atol=1e-6)
    np.testing.assert_allclose(m["coeffs"][-1][:3], coefficients(run.trainer.state.params)[top], rtol=1e-2, atol=1e-6)
    assert m["steps"][-1] == lab.step and len(m["steps"]) == len(run.keyframes)
    # gradient descent on the linearised net: |c_k(0)| (1 - lr lambda_k)^t, with this module's eigenvalues
    grid, predicted = m["predicted"]
    lr = run.trainer.config.lr
    want = coefficients(run.trainer.params0)[top] * np.abs(1 - lr * values[top])[None, :] ** grid[:, None]
    np.testing.assert_allclose(predicted[:, :3], want, rtol=2e-2, atol=1e-6)
    assert grid[-1] == lab.step
    names = {trace(lab, f"mode:{j}").name for j in range(len(m["index"]))}
    assert all("steps" in name for name in names)  # "mode k: λ = ..., ~S steps" (the steps to learn)


def test_the_gd_prediction_stops_at_a_rule_change_and_is_absent_under_adam():
    lab = Lab("poisson", backend="static", modes=True, **SMALL)
    lab.run(300)
    switched = lab.step
    lab.set(rule="ntk")
    lab.run(300)
    grid, _ = lab._views()[0].modes["predicted"]
    assert grid[-1] == switched < lab.step
    wave = Lab("wave", backend="static", modes=True, width=16, n_b=30, n_r=30, n_ntk=20)
    wave.run(20)
    m = wave._views()[0].modes
    assert m["predicted"] is None and "adam" in m["note"] and len(m["steps"]) == len(wave.runs[0].keyframes)


def test_the_modes_toggle_swaps_the_prediction_panel_and_back():
    lab = Lab("poisson", **SMALL)
    names = lambda: {t.name for t in lab.figure.data}  # noqa: E731
    assert "prediction û" in names() and not any(n.startswith("mode 1") for n in names())
    lab.controls.modes.value = True
    assert lab.modes and "prediction û" not in names() and any(n.startswith("mode 1:") for n in names())
    assert len(trace(lab, "mode:0").y) == 1  # step 0's coefficients, before any training
    lab.modes = False
    assert "prediction û" in names() and not lab.controls.modes.value
    with pytest.raises(ValueError, match="modes"):
        Lab("poisson", modes="yes", **SMALL)


# -- a clicked eigenvalue's eigenvector (pinnlab.lab.eigenmode) --------------------------------------------
def _click(lab: Lab, key: str, rank: int) -> None:
    """What plotly's front end sends when eigenvalue ``rank`` of trace ``key`` is clicked: every listening
    trace is called, only the clicked one with points."""
    from plotly.callbacks import InputDeviceState, Points

    clicked = trace(lab, key)
    for i, t in enumerate(lab.figure.data):
        inds = [int(np.flatnonzero(clicked.x == rank)[0])] if t is clicked else []
        t._dispatch_on_click(Points(inds, [float(rank)] * len(inds), [], t.name, i), InputDeviceState())


def test_a_clicked_block_eigenvalue_draws_its_eigenvector_with_its_steps_to_learn():
    from tests.conftest import explicit_jacobian

    lab = Lab("poisson", **SMALL)
    lab.run(300)
    _click(lab, "eig-w:r", 3)
    assert lab.shown_mode == ("r", 3) and lab.error is None
    t = lab.trainer
    jac = explicit_jacobian(t.apply, t.state.params, t.problem.terms, t.probe).astype(np.float64)
    n_u, n_r = (len(x) for x in t.probe)
    values, vectors = np.linalg.eigh((jac @ jac.T)[n_u:, n_u:])  # K_rr, float64, from the Jacobian
    lam, v = values[-3], vectors[:, -3]
    w_r, s_r = float(t.state.weights[1]), t.problem.terms[1].scale
    drawn = trace(lab, "vec:r")
    order = np.argsort(np.asarray(t.probe[1])[:, 0], kind="stable")
    got = np.asarray(drawn.y, np.float64)
    want = v[order] / v[np.argmax(np.abs(v))]  # scaled to a largest entry of +1, as drawn
    assert np.max(np.abs(got - want)) < 2e-3
    np.testing.assert_allclose(np.asarray(drawn.x), np.asarray(t.probe[1])[order, 0], rtol=1e-6)
    assert len(trace(lab, "vec:u").y) == 0  # the residual block's mode has no boundary rows
    m = lab.runs[0].eigenmode
    np.testing.assert_allclose(m.value, w_r * lam, rtol=1e-3)  # the eigenvalue the spectra panel shows
    steps = 1.0 / (t.config.lr * 2 * w_r * s_r / n_r * lam)  # GD: 1 / (eta lambda_k(K-tilde_rr))
    np.testing.assert_allclose(m.steps_to_learn, steps, rtol=1e-3)
    assert f"{steps:.2g}" in drawn.name and f"{steps:.2g}" in lab.controls.caption.value
    _click(lab, "eig-w:r", 3)  # again: hidden, the prediction is back
    assert lab.shown_mode is None and trace(lab, "pred") is not None and lab.controls.caption.value == ""


def test_the_whole_kernel_mode_spans_every_term_and_reset_hides_it():
    lab = Lab("poisson", **SMALL)
    lab.show_mode("K", 1)
    assert len(trace(lab, "vec:u").y) + len(trace(lab, "vec:r").y) == sum(len(x) for x in lab.trainer.probe)
    assert max(np.max(np.abs(trace(lab, "vec:u").y)), np.max(np.abs(trace(lab, "vec:r").y))) == 1.0
    with pytest.raises(ValueError, match="mode rank"):
        lab.show_mode("u", 10_000)
    with pytest.raises(ValueError, match="unknown block"):
        lab.show_mode("q", 1)
    assert lab.shown_mode == ("K", 1)  # a bad request changes nothing
    before = list(lab.figure.data)
    lab.show_mode("r", 2)  # another mode while one is shown: the same traces, restyled, no new figure
    assert all(a is b for a, b in zip(before, lab.figure.data, strict=True))
    assert len(trace(lab, "vec:u").y) == 0 and len(trace(lab, "vec:r").y) == len(lab.trainer.probe[1])
    assert not trace(lab, "vec:u").showlegend and trace(lab, "vec:r").showlegend
    assert trace(lab, "vec:r").name.startswith("mode 2 of λ·K_rr") and "mode 2 of" in lab.controls.caption.value
    lab.reset()
    assert lab.shown_mode is None and trace(lab, "pred") is not None


def test_a_2d_mode_colours_the_probe_points_and_a_compare_shows_a():
    lab = Lab.compare("wave", width=16, n_b=30, n_r=30, n_ntk=20)
    lab.show_mode("ut", 2)
    drawn = trace(lab, "vec:ut")
    assert len(drawn.x) == 20 and np.max(np.abs(drawn.marker.color)) == 1.0
    lab.show_mode("ut", 1)  # restyled in place: the colours are mode 1's
    want = lab.runs[0].eigenmode.vectors[lab.trainer.problem.term_names.index("ut")]
    np.testing.assert_allclose(np.asarray(trace(lab, "vec:ut").marker.color), want, rtol=1e-6)
    assert not [k for (_, r, k) in lab._model.index if r == 1 and k.startswith("vec:")]  # A's points only


# -- the linearised network beside the real one (pinnlab.lab.linear) ---------------------------------------
def _linear_reference(run: LiveRun, steps: int) -> np.ndarray:
    """f_lin on the grid after ``steps`` steps of gradient descent, in float64 from explicit Jacobians at
    theta_0: delta <- delta - lr J^T D_t (r_0 + J delta), D_t from the weights the real run recorded at step t."""
    from jax.flatten_util import ravel_pytree

    from tests.conftest import explicit_jacobian

    t = run.trainer
    flat0, unravel = ravel_pytree(t.params0)
    jac = explicit_jacobian(t.apply, t.params0, t.problem.terms, t.data).astype(np.float64)
    grid = np.asarray(t.problem.grid)
    jac_grid = np.asarray(jax.jacfwd(lambda th: t.apply(unravel(th), grid))(flat0), np.float64)
    r0 = np.concatenate([np.asarray(term.residuals(t.apply, t.params0, x), np.float64)
                         for term, x in zip(t.problem.terms, t.data)])
    f0 = np.asarray(t.apply(t.params0, grid), np.float64)
    weights = t.history.curve("weights").astype(np.float64)
    sizes = [len(x) for x in t.data]
    scales = [term.scale for term in t.problem.terms]
    delta = np.zeros(len(flat0))
    for step in range(steps):
        d = np.concatenate([np.full(n, 2 * w * s / n) for n, w, s in zip(sizes, weights[step], scales)])
        delta -= t.config.lr * jac.T @ (d * (r0 + jac @ delta))
    return f0 + jac_grid @ delta, f0


def test_the_linearised_twin_is_gradient_descent_on_the_linearised_loss_through_a_rule_switch():
    lab = Lab("poisson", backend="static", linear=True, **SMALL)
    lab.run(300)
    lab.set(rule="ntk")  # the twin takes the run's weights step by step
    lab.run(300)
    run = lab.runs[0]
    assert run.twin.step == lab.step and not run.twin.note
    want, f0 = _linear_reference(run, lab.step)
    got = run.twin.prediction().astype(np.float64)
    moved = np.max(np.abs(want - f0))
    assert moved > 1e-3 and np.max(np.abs(got - want)) < 2e-3 * moved
    view = lab._views()[0].linear
    assert view["steps"][0] == 0 and view["steps"][-1] == lab.step
    exact = run.exact.astype(np.float64)
    np.testing.assert_allclose(view["rel_l2"][-1], np.linalg.norm(got - exact) / np.linalg.norm(exact), rtol=1e-5)
    assert "linearised network f_lin" in {t.name for t in lab.figure.data}


def test_a_twin_switched_on_mid_run_replays_to_the_same_state():
    ahead = Lab("poisson", backend="static", linear=True, **SMALL)
    ahead.run(600)
    late = Lab("poisson", backend="static", **SMALL)
    late.run(600)
    assert late.runs[0].twin is None and lab_run.LiveRun is type(late.runs[0])
    late.linear = True
    np.testing.assert_allclose(late.runs[0].twin.prediction(), ahead.runs[0].twin.prediction(), rtol=1e-5, atol=1e-6)
    late.controls.linear.value = False
    assert late.runs[0].twin is None and not late.linear


def test_the_twin_says_why_it_cannot_follow_a_run():
    wave = Lab("wave", backend="static", width=16, n_b=30, n_r=30, n_ntk=20)
    wave.linear = True
    assert "new training points every step" in wave.controls.caption.value
    solve = Lab("poisson", backend="static", optimizer="lm", **SMALL)
    solve.linear = True
    assert "kernel solve" in solve.controls.caption.value
    with pytest.raises(ValueError, match="linear"):
        Lab("poisson", linear=1, **SMALL)
