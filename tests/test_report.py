"""Figures of :mod:`pinnlab.plots` and the self-contained HTML report of :mod:`pinnlab.report`."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

pytest.importorskip("plotly")

from pinnlab import make_problem, plots  # noqa: E402
from pinnlab.history import History, Snapshot  # noqa: E402
from pinnlab.nets import NetConfig  # noqa: E402
from pinnlab.report import render, summary, write_report  # noqa: E402
from pinnlab.training import TrainConfig  # noqa: E402

N_STEPS = 5000


@pytest.fixture
def history_1d() -> History:
    """A synthetic 1D run: long curves, spectra with zero and negative eigenvalues."""
    x = np.linspace(0, 1, 50, dtype=np.float32)[:, None]
    exact = np.sin(4 * np.pi * x[:, 0])
    steps = np.arange(0, N_STEPS)  # rows are 0-based step indices
    losses = np.stack([1.0 / (steps + 1), 10.0 / np.sqrt(steps + 1)], axis=1)
    spectrum = lambda scale: {"K": scale * np.array([1e3, 1e1, 1e-2, 0.0, -1e-6]),  # noqa: E731
                              "K_u": scale * np.array([1e2, 1.0]), "K_r": scale * np.array([1e3, -1.0])}
    return History(
        config={"problem": "poisson", "problem_params": {"a": 4.0}, "net": {"width": 8, "depth": 1},
                "train": {"optimizer": "sgd", "lr": 1e-5}, "num_params": 25},
        terms=("u", "r"), coords=("x",), grid=x, grid_shape=(50,), exact=exact,
        steps=[steps], losses=[losses], weights=[np.ones_like(losses) * [100.0, 1.0]],
        traces=[np.ones_like(losses) * [10.0, 1000.0]],
        eval_step=[0, N_STEPS], rel_l2=[1.0, 0.01], param_drift=[0.0, 0.1],
        spectra_step=[0, N_STEPS], spectra=[spectrum(1.0), spectrum(2.0)], ntk_drift=[0.0, 0.05],
        prediction=exact + 0.01, seconds=2.0, status="completed", message="fine <b>bold</b>",
    )


@pytest.fixture(scope="module")
def history_2d() -> History:
    """A 2D run record (the wave problem's real grid, 16 x 16) with a made-up prediction."""
    problem = make_problem("wave", n_eval=16)
    history = History.empty(problem, NetConfig(), TrainConfig(), num_params=0)
    steps = np.arange(0, 10)
    ones = np.ones((10, 3))
    history.append(Snapshot(steps=steps, losses=ones / (steps[:, None] + 1), weights=ones, traces=ones))
    history.add_eval(10, 0.5, 0.1)
    history.add_spectra(0, {"K": np.array([3.0, 1.0]), "K_u": np.array([1.0]), "K_ut": np.array([1.0]),
                            "K_r": np.array([2.0])}, 0.0)
    t, x = problem.grid[:, 0], problem.grid[:, 1]
    history.finish(history.exact + 0.1 * t * x, 1.0, "completed", "")
    return history


def test_all_figures_present(history_1d, history_2d):
    for history in (history_1d, history_2d):
        assert list(plots.figures(history)) == list(plots.FIGURES)


def test_long_curves_downsampled_keep_ends(history_1d):
    for fig in (plots.losses(history_1d), plots.weights(history_1d), plots.traces(history_1d)):
        for trace in (t for t in fig.data if t.name != "relative L2 error"):  # that one is at the evaluations
            assert len(trace.x) <= plots.MAX_POINTS
            assert trace.x[0] == 0 and trace.x[-1] == N_STEPS - 1
    assert plots.losses(history_1d).layout.yaxis.type == "log"
    assert plots.weights(history_1d).layout.yaxis.type == "log"


def test_losses_one_line_per_term_with_values(history_1d):
    fig = plots.losses(history_1d)
    assert [t.name for t in fig.data] == ["L_u (boundary)", "L_r (residual)", "relative L2 error"]
    np.testing.assert_allclose(fig.data[0].y, 1.0 / (np.asarray(fig.data[0].x) + 1))
    assert [t.line.color for t in fig.data[:2]] == ["#1f77b4", "#d62728"]  # the palette of every panel


def test_trace_shares(history_1d):
    fig = plots.traces(history_1d)
    raw = {t.meta: t.y[0] for t in fig.data if t.meta.startswith("raw-share:")}
    assert raw == pytest.approx({"raw-share:u": 1 / 101, "raw-share:r": 100 / 101})  # 1 / Algorithm 1's weight
    weights, traces = history_1d.curve("weights")[0], history_1d.curve("traces")[0]
    weighted = {t.meta: t.y[0] for t in fig.data if t.meta.startswith("share:")}
    expected = weights * traces / np.sum(weights * traces)
    assert weighted == pytest.approx({"share:u": expected[0], "share:r": expected[1]}, rel=1e-6)


def test_prediction_1d_is_a_line_plot(history_1d):
    fig = plots.prediction(history_1d)
    assert [t.type for t in fig.data] == ["scatter", "scatter"]
    np.testing.assert_allclose(fig.data[0].y, history_1d.exact)
    np.testing.assert_allclose(fig.data[1].y, history_1d.prediction)
    err = plots.error(history_1d).data[0].y
    np.testing.assert_allclose(err, 0.01, rtol=1e-4)


def test_prediction_2d_heat_maps(history_2d):
    fig = plots.prediction(history_2d)
    assert [t.type for t in fig.data] == ["heatmap"] * 3
    exact, pred = history_2d.exact.reshape(16, 16), history_2d.prediction.reshape(16, 16)
    # first coordinate (t) on the horizontal axis, second (x) vertical: z[i_x, i_t]
    np.testing.assert_allclose(fig.data[0].x, np.linspace(0, 1, 16), atol=1e-6)
    np.testing.assert_allclose(fig.data[0].z, exact.T, rtol=1e-6)
    np.testing.assert_allclose(fig.data[1].z, pred.T, rtol=1e-6)
    np.testing.assert_allclose(fig.data[2].z, np.abs(pred - exact).T, rtol=1e-5, atol=1e-7)
    # the error is 0.1 t x: largest at t = x = 1, i.e. the last row and column
    assert fig.data[2].z[-1][-1] == pytest.approx(0.1, rel=1e-4) and fig.data[2].z[0][-1] == pytest.approx(0, abs=1e-6)
    assert plots.error(history_2d).data[0].type == "heatmap"


def test_spectra_positive_only_one_panel_per_block(history_1d, history_2d):
    fig = plots.spectra(history_1d)
    eig = [t for t in fig.data if t.name.startswith("step")]
    assert len(eig) == 2 * 3  # two recorded steps x blocks K, K_u, K_r
    assert all(np.all(np.asarray(t.y) > 0) for t in eig)
    assert list(eig[0].y) == [1e3, 1e1, 1e-2]  # 0 and the negative one dropped
    floors = [t for t in fig.data if t.name == "float32 noise floor"]
    assert floors[0].y[0] == pytest.approx(1e-7 * 1e3)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    titles = [a.text for a in plots.spectra(history_2d).layout.annotations]
    assert titles == ["K", "K_u", "K_ut", "K_r"]


def test_convergence_curves(history_1d):
    fig = plots.convergence(history_1d)
    assert list(fig.data[0].y) == [1.0, 0.01] and list(fig.data[2].x) == [0, N_STEPS]
    assert list(fig.data[1].y) == [None, 0.1]  # zero drift at step 0 is a gap on the log axis


def test_write_report_self_contained(history_1d, tmp_path):
    path = write_report(history_1d, tmp_path / "sub" / "report.html")
    html = path.read_text()
    assert path == tmp_path / "sub" / "report.html"
    assert html.count("window.PlotlyConfig") == 1  # plotly.js embedded exactly once
    assert html.count("Plotly.newPlot") == len(plots.FIGURES)
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)
    assert "fine &lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold" not in html
    assert "0.01" in html and "completed" in html
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_write_report_is_atomic(history_1d, tmp_path, monkeypatch):
    path = tmp_path / "report.html"
    path.write_text("old report")

    def broken(history):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(plots, "figures", broken)
    with pytest.raises(RuntimeError):
        write_report(history_1d, path)
    assert path.read_text() == "old report"
    assert list(tmp_path.iterdir()) == [path]


def test_report_of_empty_history(history_1d):
    empty = History(config=history_1d.config, terms=("u", "r"), coords=("x",), grid=history_1d.grid,
                    grid_shape=(50,), exact=history_1d.exact)
    html = render(empty)
    assert "running" in html and "Plotly.newPlot" not in html


def test_summary_is_strict_json(history_1d):
    history_1d.rel_l2[-1] = float("nan")
    s = summary(history_1d)
    json.dumps(s, allow_nan=False)
    assert s["rel_l2"] is None and s["steps"] == N_STEPS
    assert s["steps_per_second"] == pytest.approx(N_STEPS / 2.0)
    assert s["weights"] == {"u": 100.0, "r": 1.0}
