"""History: a lossless, pickle-free round trip through ``history.json`` + ``history.npz``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pinnlab import History, Snapshot, make_problem, nets
from pinnlab.history import FORMAT
from pinnlab.training import TrainConfig, Trainer


@pytest.fixture(scope="module")
def history():
    problem = make_problem("poisson", n_b=10, n_r=20, n_eval=50)
    config = TrainConfig(lr=1e-4, steps=12, chunk=4, eval_every=4, spectra_at=(0, 8), weighting="ntk", update_every=4)
    return Trainer(problem, nets.convention("paper_code", width=6, depth=1), config).run()


def _assert_same(a: History, b: History) -> None:
    for name in ("config", "terms", "coords", "grid_shape", "eval_step", "rel_l2", "param_drift", "spectra_step",
                 "ntk_drift", "status", "message", "events"):
        assert getattr(a, name) == getattr(b, name), name
    assert a.seconds == b.seconds or (math.isnan(a.seconds) and math.isnan(b.seconds))  # null in history.json
    for name in ("grid", "exact", "prediction"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or (np.array_equal(x, y) and x.dtype == y.dtype), name
    for name in ("steps", "losses", "weights", "traces"):
        x, y = a.curve(name), b.curve(name)
        assert np.array_equal(x, y) and x.dtype == y.dtype, name
    assert len(a.spectra) == len(b.spectra)
    for s, t in zip(a.spectra, b.spectra, strict=True):
        assert set(s) == set(t) and all(np.array_equal(s[k], t[k]) for k in s)
    assert {k: v for k, v in a.final.items() if k != "seconds"} == {k: v for k, v in b.final.items() if k != "seconds"}


def test_round_trip_of_a_real_run(history, tmp_path):
    assert history.status == "completed" and len(history.spectra) == 2 and len(history.eval_step) == 4
    history.save(tmp_path / "run")
    loaded = History.load(tmp_path / "run")
    _assert_same(history, loaded)
    assert isinstance(loaded.terms, tuple) and isinstance(loaded.grid_shape, tuple)
    assert not list((tmp_path / "run").glob("*.tmp"))  # atomic writes leave no temporary files


def test_files_are_plain_json_and_npz(history, tmp_path):
    history.save(tmp_path)
    meta = json.loads((tmp_path / "history.json").read_text())
    assert meta["format"] == FORMAT and meta["terms"] == ["u", "r"] and meta["status"] == "completed"
    assert meta["config"]["train"]["weighting"] == "ntk" and meta["config"]["net"]["width"] == 6
    with np.load(tmp_path / "history.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert all(a.dtype != object for a in arrays.values())
    assert {"steps", "losses", "weights", "traces", "grid", "exact", "prediction", "spectra/K", "spectra/K_u",
            "spectra/K_r"} <= set(arrays)
    np.testing.assert_array_equal(arrays["losses"], history.curve("losses"))
    np.testing.assert_array_equal(arrays["spectra/K"], np.stack([s["K"] for s in history.spectra]))


def test_round_trip_of_an_empty_history(tmp_path):
    empty = History(config={"problem": "x"}, terms=("u", "r"), coords=("x",), grid=np.zeros((3, 1)),
                    grid_shape=(3,), exact=np.ones(3))
    empty.save(tmp_path)
    loaded = History.load(tmp_path)
    _assert_same(empty, loaded)
    assert loaded.curve("losses").shape == (0, 2) and loaded.curve("steps").shape == (0,)
    assert loaded.final["steps"] == 0 and loaded.final["rel_l2"] is None and loaded.prediction is None


@pytest.mark.parametrize("fmt", ["pinnlab-history/0", None])
def test_load_refuses_another_format(history, tmp_path, fmt):
    history.save(tmp_path)
    meta = json.loads((tmp_path / "history.json").read_text())
    if fmt is None:
        del meta["format"]
    else:
        meta["format"] = fmt
    (tmp_path / "history.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"format {fmt!r}"):
        History.load(tmp_path)


def test_curves_final_and_snapshot_step():
    h = History(config={}, terms=("u", "ut", "r"), coords=("t", "x"), grid=np.zeros((1, 2)), grid_shape=(1, 1),
                exact=np.zeros(1))
    for start in (0, 3):
        rows = np.arange(3 * 3, dtype=np.float32).reshape(3, 3) + start
        h.append(Snapshot(steps=np.arange(start, start + 3), losses=rows, weights=rows + 1, traces=rows + 2))
    h.append(Snapshot(steps=np.arange(0), losses=np.zeros((0, 3)), weights=np.zeros((0, 3)), traces=np.zeros((0, 3))))
    assert h.curve("steps").tolist() == [0, 1, 2, 3, 4, 5] and h.curve("losses").shape == (6, 3)
    h.add_eval(5, 0.25, 0.1)
    final = h.final
    assert final["steps"] == 6 and final["rel_l2"] == 0.25  # rows are 0-based steps: 6 steps taken
    assert final["losses"] == {"u": 9.0, "ut": 10.0, "r": 11.0} and final["weights"]["u"] == 10.0
    assert Snapshot(steps=np.arange(4, 7), losses=None, weights=None, traces=None).step == 6
    assert Snapshot(steps=np.arange(0), losses=None, weights=None, traces=None).step == 0


def test_events_round_trip_and_truncate_forgets_what_came_after(history, tmp_path):
    import copy

    h = copy.deepcopy(history)
    h.add_event(4, "rule", "none")
    _assert_same(h, History.load(h.save(tmp_path)))
    h.truncate(6)
    assert list(h.curve("steps")) == list(range(6)) and h.curve("losses").shape == (6, 2)
    assert all(s <= 6 for s in h.eval_step) and len(h.eval_step) == len(h.rel_l2) == len(h.param_drift)
    assert h.spectra_step == [0] and len(h.spectra) == len(h.ntk_drift) == 1


def test_thinning_keeps_the_first_and_newest_rows_and_records(history):
    import copy

    h = copy.deepcopy(history)
    h.thin_rows()
    steps = h.curve("steps")
    assert steps[0] == 0 and steps[-1] == 11 and h.rows() == len(steps) == 7
    for i in range(5):
        h.add_eval(20 + i, 0.1, 0.1)
    assert h.thin_records(4) == ["evaluations"]
    assert h.eval_step[0] == 0 and h.eval_step[-1] == 24 and len(h.eval_step) <= 5
