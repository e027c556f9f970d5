"""History.load refuses every malformed saved history with one HistoryFileError naming the file and the fault.

Each case saves a small valid history (built directly, no training), damages one of its two files and checks the
error's type, that it is one line, that it names the damaged file and what is wrong.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import pinnlab.history
from pinnlab import History
from pinnlab.history import HistoryFileError
from tests.test_history import _assert_same

JSON, NPZ = "history.json", "history.npz"


def _history(**changes) -> History:
    """A finished 2D run of 4 steps, 2 terms, a 2 x 3 grid, 2 evaluations and 2 spectra (3 blocks)."""
    grid = np.stack(np.meshgrid([0.0, 1.0], [0.0, 0.5, 1.0], indexing="ij"), -1).reshape(6, 2).astype(np.float32)
    rows = np.arange(8, dtype=np.float32).reshape(4, 2)
    spectrum = lambda scale: {"K": scale * np.arange(5.0), "K_u": scale * np.arange(2.0),  # noqa: E731
                              "K_r": scale * np.arange(3.0)}
    fields = dict(config={"problem": "wave", "train": {"lr": 1e-3}}, terms=("u", "r"), coords=("t", "x"), grid=grid,
                  grid_shape=(2, 3), exact=grid.sum(1), steps=[np.arange(4)], losses=[rows], weights=[rows + 1],
                  traces=[rows + 2], eval_step=[0, 3], rel_l2=[1.0, 0.5], param_drift=[0.0, 0.1],
                  spectra_step=[0, 3], spectra=[spectrum(1.0), spectrum(2.0)], ntk_drift=[0.0, 0.2],
                  events=[{"step": 2, "field": "rule", "value": "ntk"}], prediction=grid.sum(1) + 0.1, seconds=1.5,
                  status="completed", message="")
    return History(**{**fields, **changes})


# -- ways to damage a saved history ----------------------------------------------------------------------------------
def write_json(text: str | bytes):
    def corrupt(d: Path) -> None:
        (d / JSON).write_bytes(text.encode() if isinstance(text, str) else text)
    return corrupt


def set_meta(key: str, value=None, *, delete: bool = False):
    def corrupt(d: Path) -> None:
        meta = json.loads((d / JSON).read_text())
        if delete:
            del meta[key]
        else:
            meta[key] = value
        (d / JSON).write_text(json.dumps(meta))
    return corrupt


def remove(name: str, *, as_directory: bool = False):
    def corrupt(d: Path) -> None:
        (d / name).unlink()
        if as_directory:
            (d / name).mkdir()
    return corrupt


def write_npz(data: bytes):
    return lambda d: (d / NPZ).write_bytes(data)


def cut_npz(d: Path) -> None:
    data = (d / NPZ).read_bytes()
    (d / NPZ).write_bytes(data[: len(data) // 2])


def _rewrite(d: Path, members: dict[str, bytes | None], compression: int = zipfile.ZIP_DEFLATED,
             only: str | None = None) -> None:
    """Rewrite history.npz with ``members`` (``key`` -> npy bytes, or None to drop it) replaced or added; the
    rewritten members (all of them unless ``only``) use ``compression``."""
    with zipfile.ZipFile(d / NPZ) as z:
        old = {info.filename: z.read(info) for info in z.infolist()}
    new = {**old, **{f"{key}.npy": data for key, data in members.items()}}
    with zipfile.ZipFile(d / NPZ, "w") as z:
        for name, data in new.items():
            if data is not None:
                method = compression if only in (None, name.removesuffix(".npy")) else zipfile.ZIP_DEFLATED
                z.writestr(name, data, compress_type=method)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _crafted(shape: tuple[int, ...], descr: str = "<f8", data: bytes = b"\0" * 16) -> bytes:
    """An npy member whose header declares ``shape`` but that holds only ``data``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


def member(key: str, data: bytes | np.ndarray | None):
    return lambda d: _rewrite(d, {key: _npy(data) if isinstance(data, np.ndarray) else data})


def array(key: str, value) -> object:
    return member(key, np.asarray(value))


def flip(key: str, *, stored: bool = False):
    """Invert one byte in the middle of member ``key``'s (compressed, or with ``stored`` plain) data."""
    def corrupt(d: Path) -> None:
        if stored:
            _rewrite(d, {}, zipfile.ZIP_STORED)
        data = bytearray((d / NPZ).read_bytes())
        with zipfile.ZipFile(d / NPZ) as z:
            info = z.getinfo(f"{key}.npy")
        name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
        start = info.header_offset + 30 + name_len + extra_len
        data[start + info.compress_size * 2 // 3] ^= 0xFF  # past the npy header for a stored member
        (d / NPZ).write_bytes(bytes(data))
    return corrupt


def flip_large_stored(d: Path) -> None:
    """A flipped byte far into a stored member (past the first read, so only reading the data finds it)."""
    _rewrite(d, {"spectra/K": _npy(np.arange(20_000.0).reshape(2, 10_000))})
    flip("spectra/K", stored=True)(d)


def rename_in_directory(d: Path) -> None:
    """Damage the first member name in the zip's central directory."""
    data = bytearray((d / NPZ).read_bytes())
    with zipfile.ZipFile(d / NPZ) as z:
        start = z.start_dir
    data[start + 46] ^= 0x20  # 's'teps.npy -> 'S'teps.npy
    (d / NPZ).write_bytes(bytes(data))


def npy_version_3(d: Path) -> None:
    v1 = _npy(np.arange(4))
    header_len = struct.unpack("<H", v1[8:10])[0]
    _rewrite(d, {"steps": b"\x93NUMPY\x03\x00" + struct.pack("<I", header_len) + v1[10:]})


SPOILED = np.zeros(2, dtype=[("a", "<f8"), ("b", "<f8")])

CASES = [
    # -- missing files
    pytest.param(remove(JSON), None, "no history.json in", id="no-json"),
    pytest.param(remove(NPZ), None, "no history.npz in", id="no-npz"),
    pytest.param(remove(JSON, as_directory=True), None, "no history.json in", id="json-is-a-directory"),
    # -- history.json that is not JSON, or not an object
    pytest.param(write_json(""), JSON, "empty file", id="empty-json"),
    pytest.param(write_json(" \n"), JSON, "empty file", id="blank-json"),
    pytest.param(write_json('{"format": '), JSON, "not valid JSON (JSONDecodeError", id="invalid-json"),
    pytest.param(write_json("[" * 200_000), JSON, "not valid JSON", id="deeply-nested-json"),
    pytest.param(write_json(b'{"format": "\xff"}'), JSON, "not UTF-8 text", id="not-utf8"),
    pytest.param(write_json("[1, 2]"), JSON, "expected a JSON object, got a list", id="json-list"),
    pytest.param(write_json("3.5"), JSON, "expected a JSON object, got a number", id="json-number"),
    pytest.param(write_json('"x"'), JSON, "expected a JSON object, got a string", id="json-string"),
    # -- metadata fields
    pytest.param(set_meta("format", "pinnlab-history/0"), JSON, "format 'pinnlab-history/0'", id="wrong-format"),
    pytest.param(set_meta("format", delete=True), JSON, "format None", id="no-format"),
    *(pytest.param(set_meta(key, delete=True), JSON, f"missing key {key!r}", id=f"no-{key}")
      for key in ("config", "terms", "coords", "grid_shape", "seconds", "status", "message", "spectra_blocks")),
    pytest.param(set_meta("config", []), JSON, "'config' is [], expected a JSON object", id="config-list"),
    pytest.param(set_meta("terms", "ur"), JSON, "'terms' is \"ur\", expected a list of strings", id="terms-str"),
    pytest.param(set_meta("terms", ["u", 3]), JSON, "terms[1] is 3, expected a list of strings", id="terms-int"),
    pytest.param(set_meta("coords", [None]), JSON, "coords[0] is null, expected a list of strings", id="coords"),
    pytest.param(set_meta("grid_shape", [2, 0]), JSON, "grid_shape[1] is 0, expected a list of positive integers",
                 id="grid-shape-zero"),
    pytest.param(set_meta("grid_shape", [-2, 3]), JSON, "grid_shape[0] is -2", id="grid-shape-negative"),
    pytest.param(set_meta("grid_shape", [2, 3.0]), JSON, "grid_shape[1] is 3.0", id="grid-shape-float"),
    pytest.param(set_meta("grid_shape", [2, True]), JSON, "grid_shape[1] is true", id="grid-shape-bool"),
    pytest.param(set_meta("grid_shape", "6"), JSON, "'grid_shape' is \"6\"", id="grid-shape-str"),
    pytest.param(set_meta("seconds", "fast"), JSON, "'seconds' is \"fast\", expected a number", id="seconds-str"),
    pytest.param(set_meta("seconds", True), JSON, "'seconds' is true, expected a number", id="seconds-bool"),
    pytest.param(set_meta("status", 3), JSON, "'status' is 3, expected a string", id="status-int"),
    pytest.param(set_meta("status", None), JSON, "'status' is null, expected a string", id="status-null"),
    pytest.param(set_meta("message", ["x"]), JSON, "'message' is [\"x\"], expected a string", id="message-list"),
    pytest.param(set_meta("events", {}), JSON, "'events' is {}, expected a list of objects", id="events-object"),
    pytest.param(set_meta("events", ["rule"]), JSON, "events[0] is \"rule\"", id="event-str"),
    pytest.param(set_meta("events", [{"step": 1, "field": "rule", "value": 1}, {"step": "2", "field": "r",
                                                                                "value": 1}]),
                 JSON, "events[1] is", id="event-step-str"),
    pytest.param(set_meta("events", [{"step": 2, "field": "rule"}]), JSON, "events[0] is", id="event-no-value"),
    pytest.param(set_meta("spectra_blocks", [1]), JSON, "spectra_blocks[0] is 1, expected a list of strings",
                 id="blocks-int"),
    pytest.param(set_meta("spectra_blocks", "K"), JSON, "'spectra_blocks' is \"K\"", id="blocks-str"),
    # -- metadata that the arrays contradict
    pytest.param(set_meta("terms", ["u", "ut", "r"]), NPZ, "'losses' has shape (4, 2) but the history has 3 terms",
                 id="terms-vs-losses"),
    pytest.param(set_meta("grid_shape", [3, 3]), NPZ, "'grid' has shape (6, 2) but the history has 9 grid points",
                 id="grid-shape-vs-grid"),
    pytest.param(set_meta("coords", ["x"]), NPZ, "'grid' has shape (6, 2) but the history has 1 coordinates",
                 id="coords-vs-grid"),
    pytest.param(set_meta("spectra_blocks", ["K", "K_x"]), NPZ, "missing key 'spectra/K_x'", id="block-missing"),
    # -- history.npz that is not a zip archive
    pytest.param(write_npz(b""), NPZ, "truncated or not an npz archive (BadZipFile", id="empty-npz"),
    pytest.param(cut_npz, NPZ, "truncated or not an npz archive (BadZipFile", id="truncated-npz"),
    pytest.param(write_npz(pickle.dumps({"steps": [1, 2]})), NPZ, "truncated or not an npz archive",
                 id="npz-is-a-pickle"),
    # -- damaged members
    pytest.param(flip("losses"), NPZ, "'losses' is", id="flipped-deflated-losses"),
    pytest.param(flip("spectra/K"), NPZ, "'spectra/K' is", id="flipped-deflated-spectra"),
    pytest.param(flip("grid", stored=True), NPZ, "'grid' is corrupt (BadZipFile: Bad CRC-32", id="flipped-stored"),
    pytest.param(flip_large_stored, NPZ, "'spectra/K' is corrupt (BadZipFile: Bad CRC-32", id="flipped-stored-data"),
    pytest.param(rename_in_directory, NPZ, "missing key 'steps'", id="flipped-name"),
    pytest.param(member("steps", pickle.dumps([0, 1, 2, 3])), NPZ,
                 "'steps' is corrupt (ValueError: the magic string is not correct", id="member-pickle"),
    pytest.param(member("losses", _npy(np.ones((4, 2), np.float32))[:-8]), NPZ,
                 "'losses' declares shape (4, 2) float32 (32 B) but holds 24 B of data", id="member-truncated"),
    pytest.param(member("losses", _npy(np.ones((4, 2), np.float32)) + b"junk"), NPZ,
                 "but holds 36 B of data", id="member-trailing-bytes"),
    pytest.param(npy_version_3, NPZ, "'steps' is in npy format 3.0", id="npy-version-3"),
    pytest.param(lambda d: _rewrite(d, {}, zipfile.ZIP_BZIP2, only="grid"), NPZ,
                 "'grid' is encrypted or compressed in a way np.savez never writes", id="bzip2-member"),
    # -- missing arrays
    *(pytest.param(member(key, None), NPZ, f"missing key {key!r}", id=f"no-{key.replace('/', '-')}")
      for key in ("steps", "losses", "grid", "exact", "rel_l2", "spectra_step", "spectra/K")),
    # -- wrong dtypes; object arrays stay refused (never unpickled)
    pytest.param(array("exact", np.array([{"a": 1}] * 6, dtype=object)), NPZ,
                 "'exact' has dtype object (pickled Python objects)", id="object-array"),
    pytest.param(array("steps", ["a", "b", "c", "dd"]), NPZ, "'steps' has dtype <U2, expected integers",
                 id="steps-strings"),
    pytest.param(array("steps", [0.0, 1.0, 2.0, 3.0]), NPZ, "'steps' has dtype <f8, expected integers",
                 id="steps-floats"),
    pytest.param(array("losses", np.ones((4, 2), np.complex64)), NPZ, "'losses' has dtype <c8, expected reals",
                 id="losses-complex"),
    pytest.param(array("grid", np.ones((6, 2), bool)), NPZ, "'grid' has dtype |b1, expected reals", id="grid-bool"),
    pytest.param(array("rel_l2", ["1", "2"]), NPZ, "'rel_l2' has dtype <U1, expected reals", id="rel-l2-strings"),
    pytest.param(member("ntk_drift", _npy(SPOILED)), NPZ, "'ntk_drift' has dtype |V16, expected reals",
                 id="structured"),
    # -- wrong shapes
    pytest.param(array("losses", np.ones((4, 3))), NPZ, "'losses' has shape (4, 3) but the history has 2 terms",
                 id="losses-columns"),
    pytest.param(array("weights", np.ones((3, 2))), NPZ, "'weights' has shape (3, 2) but the history has 4 steps",
                 id="weights-rows"),
    pytest.param(array("traces", np.ones(8)), NPZ, "'traces' has shape (8,), expected (steps, terms)",
                 id="traces-1d"),
    pytest.param(array("steps", np.arange(4)[:, None]), NPZ, "'steps' has shape (4, 1), expected (steps,)",
                 id="steps-2d"),
    pytest.param(array("rel_l2", np.ones(3)), NPZ, "'rel_l2' has shape (3,) but the history has 2 evaluations",
                 id="rel-l2-length"),
    pytest.param(array("param_drift", np.ones(1)), NPZ, "'param_drift' has shape (1,) but the history has 2 eval",
                 id="drift-length"),
    pytest.param(array("ntk_drift", np.ones(3)), NPZ, "'ntk_drift' has shape (3,) but the history has 2 spectra",
                 id="ntk-drift-length"),
    pytest.param(array("spectra/K", np.ones((3, 5))), NPZ, "'spectra/K' has shape (3, 5) but the history has 2 "
                 "spectra", id="spectra-rows"),
    pytest.param(array("spectra/K_u", np.ones(2)), NPZ, "'spectra/K_u' has shape (2,), expected (spectra, "
                 "eigenvalues)", id="spectra-1d"),
    pytest.param(array("grid", np.ones((5, 2))), NPZ, "'grid' has shape (5, 2) but the history has 6 grid points",
                 id="grid-rows"),
    pytest.param(array("exact", np.ones(5)), NPZ, "'exact' has shape (5,) but the history has 6 grid points",
                 id="exact-length"),
    pytest.param(array("prediction", np.ones((6, 1))), NPZ, "'prediction' has shape (6, 1), expected (grid points,)",
                 id="prediction-2d"),
    # -- a header that declares far more than the member holds: refused from the header alone
    pytest.param(member("rel_l2", _crafted((10**12,))), NPZ,
                 "'rel_l2' declares shape (1000000000000,) float64 (7.3 TiB) but holds 16 B of data", id="huge-header"),
    pytest.param(member("steps", _crafted((10**6, 10**6), "<i8")), NPZ, "'steps' declares shape (1000000, 1000000)",
                 id="huge-2d-header"),
]


@pytest.mark.parametrize(("corrupt", "file", "fragment"), CASES)
def test_load_refuses_a_damaged_history_with_one_line(tmp_path, corrupt, file, fragment):
    run = _history().save(tmp_path / "run")
    corrupt(run)
    with pytest.raises(HistoryFileError) as caught:
        History.load(run)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400, message
    assert fragment in message, message
    assert str(run / file if file else run) in message, message
    assert isinstance(caught.value, ValueError)  # what pinnlab report catches


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(HistoryFileError, match="no such directory: pass a directory written by pinnlab train"):
        History.load(tmp_path / "nowhere")


def test_a_huge_header_allocates_nothing(tmp_path):
    run = _history().save(tmp_path / "run")
    _rewrite(run, {"losses": _crafted((10**12, 2), "<f4"), "spectra/K": _crafted((2, 10**12))})
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(HistoryFileError, match="declares shape"):
            History.load(run)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20 and time.perf_counter() - start < 5


def test_arrays_over_the_size_limit_are_refused_before_reading(tmp_path, monkeypatch):
    """A member whose zip entry and npy header agree on a huge size is refused by the total cap."""
    run = _history().save(tmp_path / "run")
    monkeypatch.setattr(pinnlab.history, "MAX_ARRAY_BYTES", 256)
    read = []
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: read.append(1))
    with pytest.raises(HistoryFileError, match=r"history\.npz: the arrays declare .* more than a history may hold"):
        History.load(run)
    assert not read


def test_an_oversized_json_is_refused_unread(tmp_path, monkeypatch):
    run = _history().save(tmp_path / "run")
    monkeypatch.setattr(pinnlab.history, "MAX_JSON_BYTES", 100)
    with pytest.raises(HistoryFileError, match=r"history\.json: .* more than a history\.json has"):
        History.load(run)


def _without_digest(run: Path) -> None:
    """Make ``run`` a history saved before the npz digest was recorded."""
    meta = json.loads((run / "history.json").read_text())
    del meta["npz_sha256"]
    (run / "history.json").write_text(json.dumps(meta))


FOREIGN = {"junk": b"\x00garbage that is no npy array", "huge": _crafted((10**12,)),
           "spectra/K_old": _npy(np.array([object()] * 2, dtype=object)), "steps_backup": None}


def _opened(monkeypatch) -> list[str]:
    """The zip members opened from now on."""
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: (
        opened.append(getattr(name, "filename", name)), real_open(self, name, *a, **k))[1])
    return opened


@pytest.mark.parametrize("digest", [True, False], ids=["saved-with-digest", "older-save"])
def test_members_a_history_does_not_have_are_never_read(tmp_path, monkeypatch, digest):
    run = _history().save(tmp_path / "run")
    if not digest:
        _without_digest(run)
    _rewrite(run, FOREIGN)  # arrays someone added: the history's own members load, CRC-checked; these stay unread
    opened = _opened(monkeypatch)
    _assert_same(_history(), History.load(run))
    assert opened and not {"junk.npy", "huge.npy", "spectra/K_old.npy"} & set(opened)


def _flip_byte(fraction: float):
    def corrupt(d: Path) -> None:
        data = bytearray((d / NPZ).read_bytes())
        data[int(fraction * (len(data) - 1))] ^= 0x01
        (d / NPZ).write_bytes(bytes(data))
    return corrupt


def _flip_unused_directory_field(d: Path) -> None:
    """One bit of the first central-directory entry's "version made by", which no reader checks."""
    data = bytearray((d / NPZ).read_bytes())
    with zipfile.ZipFile(d / NPZ) as z:
        start = z.start_dir
    assert data[start:start + 4] == b"PK\x01\x02"
    data[start + 4] ^= 0x01
    (d / NPZ).write_bytes(bytes(data))


@pytest.mark.parametrize("corrupt", [_flip_unused_directory_field, _flip_byte(0.999), _flip_byte(0.995),
                                     _flip_byte(0.0001)], ids=["version-made-by", "at-99.9%", "at-99.5%", "at-0.01%"])
def test_a_byte_changed_anywhere_in_the_npz_is_found(tmp_path, corrupt):
    run = _history().save(tmp_path / "run")
    corrupt(run)
    with pytest.raises(HistoryFileError) as caught:
        History.load(run)
    message = str(caught.value)
    assert "\n" not in message and str(run / NPZ) in message, message


def test_the_unused_field_flip_is_what_the_digest_finds(tmp_path):
    """Without the digest, zipfile, zlib and numpy read that file as if nothing had changed."""
    run = _history().save(tmp_path / "run")
    _without_digest(run)
    _flip_unused_directory_field(run)
    _assert_same(_history(), History.load(run))
    run = _history().save(tmp_path / "run2")
    _flip_unused_directory_field(run)
    with pytest.raises(HistoryFileError, match=r"its SHA-256 is not the one recorded in history\.json"):
        History.load(run)


def test_bytes_beyond_the_members_are_refused_unhashed(tmp_path, monkeypatch):
    run = _history().save(tmp_path / "run")
    (run / NPZ).write_bytes(b"\0" * 2**20 + (run / NPZ).read_bytes())  # zipfile still opens a prefixed archive
    hashed = []
    monkeypatch.setattr(pinnlab.history.hashlib, "sha256", lambda *a: hashed.append(1))
    with pytest.raises(HistoryFileError, match=r"history\.npz: .* more than its members take"):
        History.load(run)
    assert not hashed


def test_a_malformed_digest_is_named(tmp_path):
    run = _history().save(tmp_path / "run")
    meta = json.loads((run / "history.json").read_text())
    meta["npz_sha256"] = "not hex"
    (run / "history.json").write_text(json.dumps(meta))
    with pytest.raises(HistoryFileError, match=r"history\.json: 'npz_sha256' is \"not hex\", expected 64"):
        History.load(run)


@pytest.mark.parametrize("changes", [{}, {"prediction": None, "status": "running", "events": []},
                                     {"steps": [], "losses": [], "weights": [], "traces": [], "eval_step": [],
                                      "rel_l2": [], "param_drift": [], "spectra_step": [], "spectra": [],
                                      "ntk_drift": [], "prediction": None}],
                         ids=["finished", "running", "empty"])
def test_a_valid_history_round_trips_exactly(tmp_path, changes):
    history = _history(**changes)
    loaded = History.load(history.save(tmp_path / "run"))
    _assert_same(history, loaded)
    assert isinstance(loaded.terms, tuple) and isinstance(loaded.grid_shape, tuple)


def test_non_finite_numbers_written_as_null_load_back(tmp_path):
    history = _history(seconds=float("nan"), ntk_drift=[float("nan"), 0.2], rel_l2=[float("inf"), 0.5],
                       events=[{"step": 2, "field": "lr", "value": float("nan")}])
    run = history.save(tmp_path / "run")
    meta = json.loads((run / JSON).read_text())  # strict JSON: no bare NaN
    assert meta["seconds"] is None and meta["events"][0]["value"] is None
    loaded = History.load(run)
    assert math.isnan(loaded.seconds)  # null seconds load as NaN ("not known"), not 0.0
    assert loaded.events == [{"step": 2, "field": "lr", "value": None}]
    assert math.isnan(loaded.ntk_drift[0]) and loaded.rel_l2[0] == math.inf  # arrays keep them exactly


def test_bare_nan_of_older_histories_is_still_read(tmp_path):
    run = _history().save(tmp_path / "run")
    meta = json.loads((run / JSON).read_text())
    meta["seconds"] = float("nan")
    (run / JSON).write_text(json.dumps(meta))  # allow_nan: what histories were written with before to_json
    assert math.isnan(History.load(run).seconds)


@pytest.mark.parametrize(("corrupt", "fragment"), [
    (cut_npz, "history.npz: truncated or not an npz archive"),
    (write_json("[1, 2]"), "history.json: expected a JSON object, got a list"),
    (array("losses", np.ones((4, 3))), "history.npz: 'losses' has shape (4, 3) but the history has 2 terms"),
    (remove(NPZ), "no history.npz in"),
], ids=["truncated-npz", "json-list", "losses-shape", "no-npz"])
def test_report_prints_one_line_for_a_damaged_history(tmp_path, capsys, corrupt, fragment):
    from pinnlab.cli import main

    run = _history().save(tmp_path / "run")
    corrupt(run)
    assert main(["report", str(run)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("pinnlab: error: cannot load a history from")
    assert fragment in err and str(tmp_path) in err
    assert not (run / "report.html").exists()


def test_a_json_beside_another_saves_npz_is_refused(tmp_path):
    a = _history().save(tmp_path / "a")
    b = _history(rel_l2=[1.0, 0.25]).save(tmp_path / "b")  # same shapes: only the pairing tells them apart
    assert History.load(a).rel_l2 == [1.0, 0.5] and History.load(b).rel_l2 == [1.0, 0.25]
    (b / "history.npz").write_bytes((a / "history.npz").read_bytes())  # what a reader meets mid-save
    with pytest.raises(HistoryFileError, match="history.npz is not the one saved with it"):
        History.load(b)


def test_a_load_during_saves_waits_for_the_pair_and_never_mixes_them(tmp_path):
    import threading

    run = tmp_path / "run"
    pair = {1.5: [1.0, 0.5], 2.5: [1.0, 0.25]}  # seconds (history.json) -> rel_l2 (history.npz), per save
    saves = [_history(seconds=s, rel_l2=r) for s, r in pair.items()]
    saves[0].save(run)
    done, seen, saved = threading.Event(), [], []

    def write():
        while not done.is_set():
            saves[len(saved) % 2].save(run)
            saved.append(1)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(300):  # without the wait, ~5 % of these met a json beside the other save's npz
            h = History.load(run)
            seen.append((h.seconds, h.rel_l2))
    finally:
        done.set()
        writer.join()
    assert len(saved) > 10, len(saved)  # the loads really met saves in progress
    assert all(pair[s] == r for s, r in seen), [x for x in seen if pair[x[0]] != x[1]][:3]
