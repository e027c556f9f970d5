"""The record of a run, and its safe on-disk form (``history.json`` + ``history.npz``, no pickle)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from pinnlab.files import to_json, write_files

FORMAT = "pinnlab-history/1"


@dataclasses.dataclass
class Snapshot:
    """What one call of :meth:`Trainer.advance` produced.

    ``steps`` are the optimiser steps (0-based) at which each row's ``losses``, ``weights`` and
    ``traces`` were used; those have one row per step and one column per term. ``rel_l2``,
    ``param_drift``, ``spectra`` and ``ntk_drift`` are filled when measured at the end of the
    snapshot. ``diverged`` is the first step whose loss was non-finite, if any.
    """

    steps: np.ndarray
    losses: np.ndarray
    weights: np.ndarray
    traces: np.ndarray
    diverged: int | None = None
    rel_l2: float | None = None
    param_drift: float | None = None
    spectra: dict | None = None
    ntk_drift: float | None = None

    @property
    def step(self) -> int:
        return int(self.steps[-1]) if len(self.steps) else 0


@dataclasses.dataclass
class History:
    """All of a run: per-step curves, evaluations, spectra, the final prediction and the config."""

    config: dict
    terms: tuple[str, ...]
    coords: tuple[str, ...]
    grid: np.ndarray
    grid_shape: tuple[int, ...]
    exact: np.ndarray
    steps: list = dataclasses.field(default_factory=list)
    losses: list = dataclasses.field(default_factory=list)
    weights: list = dataclasses.field(default_factory=list)
    traces: list = dataclasses.field(default_factory=list)
    eval_step: list = dataclasses.field(default_factory=list)
    rel_l2: list = dataclasses.field(default_factory=list)
    param_drift: list = dataclasses.field(default_factory=list)
    spectra_step: list = dataclasses.field(default_factory=list)
    spectra: list = dataclasses.field(default_factory=list)
    ntk_drift: list = dataclasses.field(default_factory=list)
    events: list = dataclasses.field(default_factory=list)
    prediction: np.ndarray | None = None
    seconds: float = 0.0
    status: str = "running"
    message: str = ""

    @classmethod
    def empty(cls, problem, net_config, train_config, num_params: int) -> History:
        import jax.numpy as jnp

        config = {
            "problem": problem.name, "problem_params": problem.params,
            "net": dataclasses.asdict(net_config), "train": dataclasses.asdict(train_config),
            "num_params": num_params,
        }
        return cls(config=json.loads(json.dumps(config)), terms=problem.term_names, coords=problem.coords,
                   grid=np.asarray(problem.grid), grid_shape=tuple(problem.grid_shape),
                   exact=np.asarray(problem.exact(jnp.asarray(problem.grid))))

    # -- recording ----------------------------------------------------------------------------
    def append(self, snap: Snapshot) -> None:
        if len(snap.steps):
            self.steps.append(snap.steps)
            self.losses.append(snap.losses)
            self.weights.append(snap.weights)
            self.traces.append(snap.traces)

    def add_event(self, step: int, field: str, value) -> None:
        """A live control changed at ``step`` (``field`` e.g. ``"rule"``), kept in order for the report."""
        self.events.append({"step": int(step), "field": str(field), "value": value})

    def truncate(self, step: int, keep_row: bool = False) -> None:
        """Forget what came after the state at ``step``: evaluations and spectra past it, and the per-step
        rows from ``step`` on (with ``keep_row``, the row of ``step`` itself stays: the loss at that state).
        Training from ``step`` records them again."""
        if self.steps and self.steps[-1][-1] >= step + keep_row:
            keep = np.concatenate(self.steps) < step + keep_row
            for name in ("steps", "losses", "weights", "traces"):
                full = np.concatenate(getattr(self, name))[keep]
                setattr(self, name, [full] if len(full) else [])
        for names in (("eval_step", "rel_l2", "param_drift"), ("spectra_step", "spectra", "ntk_drift")):
            kept = [i for i, s in enumerate(getattr(self, names[0])) if s <= step]
            for name in names:
                values = getattr(self, name)
                setattr(self, name, [values[i] for i in kept])

    def rows(self) -> int:
        """How many per-step rows are recorded."""
        return sum(len(part) for part in self.steps)

    def thin_rows(self) -> None:
        """Keep every other per-step row and the newest (bounds the memory of a run that goes on for hours)."""
        for name in ("steps", "losses", "weights", "traces"):
            if getattr(self, name):
                full = np.concatenate(getattr(self, name))
                keep = np.zeros(len(full), bool)
                keep[::2] = keep[-1] = True
                setattr(self, name, [full[keep]])

    def thin_records(self, limit: int) -> list[str]:
        """Halve the spectra and the evaluations (the first and newest kept) wherever more than ``limit``
        are held; returns the groups thinned (``"spectra"``, ``"evaluations"``)."""
        thinned = []
        for group, names in (("spectra", ("spectra_step", "spectra", "ntk_drift")),
                             ("evaluations", ("eval_step", "rel_l2", "param_drift"))):
            n = len(getattr(self, names[0]))
            if n > limit:
                keep = [0, *range(2, n - 1, 2), n - 1]
                for name in names:
                    values = getattr(self, name)
                    setattr(self, name, [values[i] for i in keep])
                thinned.append(group)
        return thinned

    def add_eval(self, step: int, rel_l2: float, drift: float) -> None:
        self.eval_step.append(step)
        self.rel_l2.append(rel_l2)
        self.param_drift.append(drift)

    def add_spectra(self, step: int, eigenvalues: dict, drift: float) -> None:
        self.spectra_step.append(step)
        self.spectra.append(eigenvalues)
        self.ntk_drift.append(drift)

    def finish(self, prediction, seconds: float, status: str, message: str) -> None:
        self.prediction, self.seconds, self.status, self.message = prediction, seconds, status, message

    # -- views --------------------------------------------------------------------------------
    def curve(self, name: str) -> np.ndarray:
        """Per-step array ``steps`` (n,) or ``losses``/``weights``/``traces`` (n, m)."""
        parts = getattr(self, name)
        if not parts:
            return np.zeros((0,) if name == "steps" else (0, len(self.terms)))
        return np.concatenate(parts)

    @property
    def final(self) -> dict:
        """The numbers a summary needs: steps taken, error, last weights and traces per term."""
        steps, weights, traces = self.curve("steps"), self.curve("weights"), self.curve("traces")
        last = lambda a: {t: float(v) for t, v in zip(self.terms, a[-1])} if len(a) else {}  # noqa: E731
        return {
            "steps": int(steps[-1]) + 1 if len(steps) else 0,  # steps taken: rows are 0-based step indices
            "rel_l2": self.rel_l2[-1] if self.rel_l2 else None,
            "weights": last(weights), "traces": last(traces),
            "losses": last(self.curve("losses")),
            "seconds": self.seconds, "status": self.status, "message": self.message,
        }

    # -- files --------------------------------------------------------------------------------
    def save(self, directory) -> Path:
        """Write ``history.json`` and ``history.npz`` into ``directory`` (created if needed), as one set."""
        write_files(directory, self.files())
        return Path(directory)

    def files(self) -> dict:
        """The contents of ``history.npz`` and ``history.json`` (for :func:`pinnlab.files.write_files`)."""
        arrays = {name: self.curve(name) for name in ("steps", "losses", "weights", "traces")}
        arrays.update(grid=self.grid, exact=self.exact, eval_step=np.asarray(self.eval_step, np.int64),
                      rel_l2=np.asarray(self.rel_l2, np.float64), param_drift=np.asarray(self.param_drift),
                      spectra_step=np.asarray(self.spectra_step, np.int64),
                      ntk_drift=np.asarray(self.ntk_drift, np.float64))
        if self.prediction is not None:
            arrays["prediction"] = np.asarray(self.prediction)
        blocks = sorted(self.spectra[0]) if self.spectra else []
        for name in blocks:
            arrays[f"spectra/{name}"] = np.stack([s[name] for s in self.spectra])
        # one token in both files: they are renamed one by one, so a reader may meet a json beside another save's npz
        token = np.frombuffer(os.urandom(SAVE_ID_BYTES), np.uint8)
        arrays["save_id"] = token
        npz = io.BytesIO()
        np.savez_compressed(npz, **arrays)
        meta = {"format": FORMAT, "config": self.config, "terms": list(self.terms), "coords": list(self.coords),
                "grid_shape": list(self.grid_shape), "seconds": self.seconds, "status": self.status,
                "message": self.message, "spectra_blocks": blocks, "events": self.events,
                "save_id": token.tobytes().hex(), "npz_sha256": hashlib.sha256(npz.getvalue()).hexdigest()}
        return {"history.npz": npz.getvalue(), "history.json": to_json(meta)}

    @classmethod
    def load(cls, directory) -> History:
        """Read a history written by :meth:`save`.

        Anything else (missing, empty, truncated or corrupt files, fields of the wrong type, arrays of the wrong
        dtype or shape) raises :class:`HistoryFileError`, a ``ValueError`` whose one-line message names the file
        and the fault. Every array's npy header is checked, against the metadata, the other arrays and
        :data:`MAX_ARRAY_BYTES`, before any array data is read, so a damaged or crafted file cannot make ``load``
        allocate much; members of ``history.npz`` that a history does not have are never read.
        """
        json_path, npz_path = _history_paths(Path(directory))
        for attempt in range(LOAD_TRIES):
            meta = _read_meta(json_path)
            try:
                a = _read_arrays(npz_path, meta)
                _check_pair(json_path, npz_path, meta, a.pop("save_id", None))
                _check_digest(npz_path, meta)
                break
            except HistoryFileError:
                # a save renames its two files one by one: a reader between the renames waits for the second
                if attempt + 1 == LOAD_TRIES or meta.get("save_id") is None or _npz_token(npz_path) == meta["save_id"]:
                    raise
                time.sleep(LOAD_WAIT)
        spectra = [{name: a[f"spectra/{name}"][i] for name in meta["spectra_blocks"]}
                   for i in range(len(a["spectra_step"]))]
        one = lambda name: [a[name]] if len(a[name]) else []  # noqa: E731
        return cls(config=meta["config"], terms=tuple(meta["terms"]), coords=tuple(meta["coords"]),
                   grid=a["grid"], grid_shape=tuple(meta["grid_shape"]), exact=a["exact"],
                   steps=one("steps"), losses=one("losses"), weights=one("weights"), traces=one("traces"),
                   eval_step=a["eval_step"].tolist(), rel_l2=a["rel_l2"].tolist(),
                   param_drift=a["param_drift"].tolist(), spectra_step=a["spectra_step"].tolist(),
                   spectra=spectra, ntk_drift=a["ntk_drift"].tolist(), prediction=a.get("prediction"),
                   seconds=meta["seconds"], status=meta["status"], message=meta["message"],
                   events=list(meta["events"]))


class HistoryFileError(ValueError):
    """A saved history that :meth:`History.load` refuses; the message is one line naming the file and the fault.

    A ``ValueError``, so callers that already catch ``ValueError`` around a load (``pinnlab report``) print it.
    """


SAVE_ID_BYTES = 16  # the token that pairs a history.json with its history.npz
ZIP_OVERHEAD = 1024  # more than the headers, names and zip64 records np.savez writes per member, and the end record
LOAD_TRIES, LOAD_WAIT = 20, 0.05  # how long a load waits for a save in progress to rename its second file (1 s)

MAX_ARRAY_BYTES = 4 * 2**30
"""The most array data a ``history.npz`` may declare in all. A real run holds a few MB; more means a damaged or
crafted file, refused from the npy headers before anything is allocated."""

MAX_JSON_BYTES = 256 * 2**20
"""The largest ``history.json`` that is read (the config and events of a real run are a few kB)."""

_HINT = "pass a directory written by pinnlab train"
_INTEGER_ARRAYS = ("steps", "eval_step", "spectra_step")
_REQUIRED_ARRAYS = ("steps", "losses", "weights", "traces", "grid", "exact", *_INTEGER_ARRAYS[1:], "rel_l2",
                    "param_drift", "ntk_drift")
_OPTIONAL_ARRAYS = ("prediction", "save_id")  # saved when there is one (histories before the token have none)
# What a damaged file raises while zipfile, zlib and numpy read it (a ValueError covers bad npy headers).
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)


def _history_paths(directory: Path) -> tuple[Path, Path]:
    """``history.json`` and ``history.npz`` in ``directory``, which must both be there."""
    if not directory.is_dir():
        raise HistoryFileError(f"{directory}: no such directory: {_HINT}")
    paths = directory / "history.json", directory / "history.npz"
    for path in paths:
        if not path.is_file():
            raise HistoryFileError(f"no {path.name} in {directory}: {_HINT}")
    return paths


def _brief(error: BaseException) -> str:
    """``Type: text`` of an exception, on one short line (its text may hold newlines or a long header)."""
    name = "zlib.error" if isinstance(error, zlib.error) else type(error).__name__
    text = " ".join(str(error).split())
    return f"{name}: {text[:157] + '...' if len(text) > 160 else text}"


@contextlib.contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    """Turn what a damaged file raises while it is read into one :class:`HistoryFileError` naming it."""
    try:
        yield
    except HistoryFileError:
        raise
    except _READ_ERRORS as e:
        raise HistoryFileError(f"{path}: {what} ({_brief(e)})") from e


# -- history.json -------------------------------------------------------------------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true/false are not numbers here


def _is_event(value) -> bool:
    """An entry of ``events`` as :meth:`History.add_event` writes it (the report formats all three)."""
    return isinstance(value, dict) and _is_int(value.get("step")) and isinstance(value.get("field"), str) \
        and "value" in value  # any JSON value, null included (to_json writes a non-finite number as null)


# name -> (JSON type of the field, check of each item for a list or None, what the field should be)
_META_FIELDS: dict[str, tuple[type | tuple[type, ...], Callable[[object], bool] | None, str]] = {
    "config": (dict, None, "a JSON object"),
    "terms": (list, lambda v: isinstance(v, str), "a list of strings"),
    "coords": (list, lambda v: isinstance(v, str), "a list of strings"),
    "grid_shape": (list, lambda v: _is_int(v) and v > 0, "a list of positive integers"),
    "seconds": ((int, float, type(None)), None, "a number"),
    "status": (str, None, "a string"),
    "message": (str, None, "a string"),
    "spectra_blocks": (list, lambda v: isinstance(v, str), "a list of strings"),
    "events": (list, _is_event, "a list of objects with an integer 'step', a string 'field' and a 'value'"),
}


def _show(value) -> str:
    """A JSON value, shortened, for a message."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_kind(value) -> str:
    kinds = ((dict, "an object"), (list, "a list"), (str, "a string"), (bool, "a boolean"),
             ((int, float), "a number"), (type(None), "null"))
    return next(name for types, name in kinds if isinstance(value, types))


def _read_meta(path: Path) -> dict:
    """``history.json``, checked field by field; ``events`` defaults to [] and ``seconds`` is a float."""
    with _reading(path, "cannot be read"):
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise HistoryFileError(f"{path}: {_bytes(size)}, more than a history.json has ({_bytes(MAX_JSON_BYTES)})")
        data = path.read_bytes()
    if not data.strip():
        raise HistoryFileError(f"{path}: empty file")
    try:
        meta = json.loads(data)  # bare NaN is accepted: histories written before to_json have it
    except UnicodeDecodeError as e:
        raise HistoryFileError(f"{path}: not UTF-8 text ({_brief(e)})") from None
    except (ValueError, RecursionError) as e:
        raise HistoryFileError(f"{path}: not valid JSON ({_brief(e)})") from None
    if not isinstance(meta, dict):
        raise HistoryFileError(f"{path}: expected a JSON object, got {_json_kind(meta)}")
    if meta.get("format") != FORMAT:
        raise HistoryFileError(f"{path}: not a pinnlab history (format {meta.get('format')!r}, expected {FORMAT!r})")
    meta.setdefault("events", [])  # histories saved before events were recorded
    for name, (kind, item_ok, expected) in _META_FIELDS.items():
        if name not in meta:
            raise HistoryFileError(f"{path}: missing key {name!r}")
        value = meta[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise HistoryFileError(f"{path}: {name!r} is {_show(value)}, expected {expected}")
        bad = next((i for i, item in enumerate(value) if not item_ok(item)), None) if item_ok else None
        if bad is not None:
            raise HistoryFileError(f"{path}: {name}[{bad}] is {_show(value[bad])}, expected {expected}")
    # to_json writes a non-finite number as null; NaN ("not known") rather than 0.0, which would claim the run
    # took no time.
    meta["seconds"] = math.nan if meta["seconds"] is None else float(meta["seconds"])
    digest = meta.get("npz_sha256")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64
                                   and all(c in "0123456789abcdef" for c in digest)):
        raise HistoryFileError(f"{path}: 'npz_sha256' is {_show(digest)}, expected 64 lower-case hex digits")
    return meta


# -- history.npz --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Header:
    """What an npz member's npy header declares, read without reading the array."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _bytes(n: int) -> str:
    """``n`` bytes for a message: ``512 B``, ``3.0 MiB``, ``7.3 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _check_pair(json_path: Path, npz_path: Path, meta: dict, token) -> None:
    """``history.npz`` must be the one ``history.json`` was saved with (histories saved before the token name none)."""
    want = meta.get("save_id")
    if want is None and token is None:
        return
    ok = (isinstance(want, str) and token is not None and token.dtype == np.uint8 and token.shape == (SAVE_ID_BYTES,)
          and token.tobytes().hex() == want)
    if not ok:
        raise HistoryFileError(f"{json_path}: {npz_path.name} is not the one saved with it (a save in progress, or "
                               "files of two runs); load again, or re-run into a fresh directory")


def _check_digest(path: Path, meta: dict) -> None:
    """``history.npz`` must hash to the SHA-256 that ``history.json`` recorded at the save, so a byte changed anywhere
    after it (even in a part of the zip that no reader uses) is found; histories saved before the digest record none.

    An archive with members a save never writes (someone added arrays) cannot match: its own members were read
    with their CRCs checked, the others are left unread, and the digest is not checked. A file with more bytes than
    its members take is refused unhashed (hashing it could mean reading gigabytes).
    """
    want = meta.get("npz_sha256")
    if want is None:
        return
    written = {f"{key}.npy" for key in (*_keys(meta), *_OPTIONAL_ARRAYS)}
    with _reading(path, "truncated or not an npz archive"), zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        size = path.stat().st_size
    if any(info.filename not in written for info in members):
        return
    held = sum(info.compress_size for info in members) + ZIP_OVERHEAD * (len(members) + 1)
    if size > held:
        raise HistoryFileError(f"{path}: {_bytes(size)}, more than its members take ({_bytes(held)}): the file was "
                               "changed after it was saved; re-run into a fresh directory")
    with _reading(path, "cannot be read"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != want:
        raise HistoryFileError(f"{path}: its SHA-256 is not the one recorded in history.json: the file was changed "
                               "after it was saved (damaged on disk or in a copy); re-run into a fresh directory")


def _npz_token(path: Path) -> str | None:
    """The save token in ``history.npz`` as hex, or None if it has none or cannot be read."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("save_id.npy") as f:
            if np.lib.format.read_magic(f) != (1, 0):
                return None
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            if shape != (SAVE_ID_BYTES,) or dtype != np.uint8:  # checked before any data is read
                return None
            return f.read(SAVE_ID_BYTES).hex()
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None


def _keys(meta: dict) -> list[str]:
    """The arrays every saved history has, with the spectra blocks ``meta`` names."""
    return [*_REQUIRED_ARRAYS, *(f"spectra/{block}" for block in meta["spectra_blocks"])]


def _read_arrays(path: Path, meta: dict) -> dict[str, np.ndarray]:
    """The arrays of ``history.npz`` that the history has (``meta`` names the spectra), all headers checked first."""
    keys = _keys(meta)
    with _reading(path, "truncated or not an npz archive"):
        archive = zipfile.ZipFile(path)  # reads only the directory at the end of the file
    with archive:
        # Member names as np.load sees them (``steps.npy`` -> ``steps``); members are only opened below.
        members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
        missing = [key for key in keys if key not in members]
        if missing:
            raise HistoryFileError(f"{path}: missing key {missing[0]!r}")
        keys += [key for key in _OPTIONAL_ARRAYS if key in members]  # no prediction while a run runs
        headers = {key: _read_header(path, archive, key, members[key]) for key in keys}
        total = sum(h.nbytes for h in headers.values())
        if total > MAX_ARRAY_BYTES:
            raise HistoryFileError(f"{path}: the arrays declare {_bytes(total)} in all, more than a history may hold "
                                   f"({_bytes(MAX_ARRAY_BYTES)})")
        _check_shapes(path, meta, headers)
        return {key: _read_data(path, archive, key, header) for key, header in headers.items()}


def _read_header(path: Path, archive: zipfile.ZipFile, key: str, info: zipfile.ZipInfo) -> _Header:
    """The npy header of member ``key``; its dtype must be numeric and the data it declares must be what the member
    holds (so a header claiming terabytes is refused here, before anything is allocated)."""
    if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise HistoryFileError(f"{path}: {key!r} is encrypted or compressed in a way np.savez never writes")
    with _reading(path, f"{key!r} is corrupt"), archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):  # 3.0 only holds non-latin-1 field names: never a numeric array
            raise HistoryFileError(f"{path}: {key!r} is in npy format {version[0]}.{version[1]}, expected 1.0 or 2.0")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        stored = info.file_size - f.tell()
    header = _Header(info, shape, dtype)
    _check_dtype(path, key, header)
    if header.nbytes != stored:
        raise HistoryFileError(f"{path}: {key!r} declares shape {shape} {dtype} ({_bytes(header.nbytes)}) but holds "
                               f"{_bytes(max(stored, 0))} of data")
    return header


def _check_dtype(path: Path, key: str, header: _Header) -> None:
    """Steps are integers, everything else real numbers; objects (a pickle) are never loaded."""
    dtype, integer = header.dtype, key in _INTEGER_ARRAYS
    # History.curve gives an empty float64 'steps' when no rows were recorded
    allowed = "iuf" if not integer or math.prod(header.shape) == 0 else "iu"
    if dtype.hasobject:
        raise HistoryFileError(f"{path}: {key!r} has dtype object (pickled Python objects), which is never loaded")
    if dtype.kind not in allowed:  # also refuses structured and sub-array dtypes (kind 'V')
        raise HistoryFileError(f"{path}: {key!r} has dtype {dtype.str}, expected {'integers' if integer else 'reals'}")


def _check_shapes(path: Path, meta: dict, headers: dict[str, _Header]) -> None:
    """Each array's shape against the metadata and the arrays it goes with (what the views and plots index)."""
    def expect(key: str, *dims: tuple[int | None, str]) -> None:
        shape = headers[key].shape
        if len(shape) != len(dims):
            expected = ", ".join(noun for _, noun in dims) + ("," if len(dims) == 1 else "")
            raise HistoryFileError(f"{path}: {key!r} has shape {shape}, expected ({expected})")
        for size, (want, noun) in zip(shape, dims, strict=True):
            if want is not None and size != want:
                raise HistoryFileError(f"{path}: {key!r} has shape {shape} but the history has {want} {noun}")

    for key, noun in (("steps", "steps"), ("eval_step", "evaluations"), ("spectra_step", "spectra")):
        expect(key, (None, noun))
    steps, evals, spectra = (headers[key].shape[0] for key in _INTEGER_ARRAYS)
    terms, coords, points = len(meta["terms"]), len(meta["coords"]), math.prod(meta["grid_shape"])
    for key in ("losses", "weights", "traces"):
        expect(key, (steps, "steps"), (terms, "terms"))
    for key in ("rel_l2", "param_drift"):
        expect(key, (evals, "evaluations"))
    expect("ntk_drift", (spectra, "spectra"))
    for block in meta["spectra_blocks"]:
        expect(f"spectra/{block}", (spectra, "spectra"), (None, "eigenvalues"))
    expect("grid", (points, "grid points"), (coords, "coordinates"))
    for key in ("exact", "prediction"):
        if key in headers:
            expect(key, (points, "grid points"))


def _read_data(path: Path, archive: zipfile.ZipFile, key: str, header: _Header) -> np.ndarray:
    """The array of a checked member; reading it to the end also checks the member's CRC."""
    with _reading(path, f"{key!r} is corrupt"), archive.open(header.info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)
