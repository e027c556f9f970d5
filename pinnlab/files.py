"""Output files that are never half-written, mixed between runs or left behind as temporaries.

Every file pinnlab writes goes through :func:`write_files`: each file is written under a unique temporary
name in its own directory (so two writers never share one), and only when all of them are complete are
they renamed into place, each file whole (a reader that loads during a save may still find one file of
the old set beside one of the new: the renames are one per file). A failure removes the temporaries.
:class:`DirectoryLock` keeps a second run off an output directory that a run is writing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np

Content = bytes | str | Callable[[BinaryIO], None]
"""What a file holds: bytes, text (UTF-8) or a function that writes into an open binary file."""


class OutputBusy(RuntimeError):
    """Another process holds the lock of an output directory."""


class WriteError(OSError):
    """A file could not be written (disk full, read-only, a directory in the way); nothing was replaced."""


def write_files(directory, files: Mapping[str, Content]) -> list[Path]:
    """Write ``files`` (name -> content) into ``directory`` (created if needed) as one set; returns the paths.

    All contents are written to unique temporary files first; a failure there (a full disk, Ctrl-C) removes
    them and leaves the directory as it was. Then each temporary is renamed over its target. An OSError is
    raised as :class:`WriteError`, naming the file. Files get the mode ``open()`` would give them
    (0666 less the umask).
    """
    directory = Path(directory)
    written: list[tuple[str, Path]] = []
    target = directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            target = directory / name
            if target.is_dir():  # found now, not at the rename, when some files would already be replaced
                raise IsADirectoryError(errno.EISDIR, "a directory is in the way")
            written.append((_temporary(directory, name), target))
            _fill(Path(written[-1][0]), content)
        _commit(directory, written)
    except BaseException as e:
        for tmp, _ in written:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(e.errno, f"cannot write {target} ({e.strerror or e})") from e
        raise
    return [path for _, path in written]


def _commit(directory: Path, written: list[tuple[str, Path]]) -> None:
    """Rename each temporary over its target; if one rename fails, undo those done (the old files come back from
    hard links made first, new names are removed), so the set is never half replaced."""
    backups: dict[Path, str | None] = {}
    try:
        for _, target in written:
            backups[target] = _link_old(directory, target)
        done = []
        try:
            for tmp, target in written:
                os.replace(tmp, target)
                done.append(target)
        except BaseException:
            for target in done:
                with contextlib.suppress(OSError):
                    if backups[target]:
                        os.replace(backups[target], target)
                        backups[target] = None
                    elif backups[target] is None:  # it did not exist before this set
                        os.unlink(target)
            raise
    finally:
        for backup in backups.values():
            if backup:
                with contextlib.suppress(OSError):
                    os.unlink(backup)


def _link_old(directory: Path, target: Path, tries: int = 8) -> str | None:
    """A hard link to ``target`` under a unique name; None if there is no ``target``, ``""`` if the file system
    makes no hard links (FAT, some network shares: the set is then renamed without a way back)."""
    for attempt in range(tries):
        if not target.exists():
            return None
        backup = tempfile.mktemp(dir=directory, prefix=f".{target.name}.", suffix=".old")  # link() never overwrites
        try:
            os.link(target, backup)
            return backup
        except FileNotFoundError:  # Linux: another writer renamed over target while it was linked; link the new one
            if attempt + 1 == tries:
                raise
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
                raise
            return ""
    return None


def write_file(path, content: Content) -> Path:
    """Write one file atomically (see :func:`write_files`)."""
    path = Path(path)
    return write_files(path.parent, {path.name: content})[0]


def to_json(data) -> str:
    """Strict JSON text (non-finite floats become ``null``: bare NaN is not JSON)."""
    return json.dumps(_finite(data), indent=2, allow_nan=False, default=_plain) + "\n"


def _plain(value):
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, np.generic):
        return _finite(value.item())
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _finite(value):
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _temporary(directory: Path, name: str) -> str:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:  # mkstemp makes it 0600; the file it becomes gets what open() would give it: 0666 less the umask
        os.fchmod(fd, 0o666 & ~_UMASK)
    finally:
        os.close(fd)
    return tmp


def _umask() -> int:
    mask = os.umask(0)  # the only portable read sets it too: done once, at import, before any other thread writes
    os.umask(mask)
    return mask


_UMASK = _umask()


def _fill(path: Path, content: Content) -> None:
    with open(path, "wb") as f:
        if callable(content):
            content(f)
        else:
            f.write(content.encode("utf-8") if isinstance(content, str) else content)


def check_writable(directory) -> Path:
    """Create ``directory`` and prove it takes a file (a unique probe, removed at once); raises OSError."""
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    os.unlink(_temporary(directory, "write-test"))
    return directory


class DirectoryLock:
    """An exclusive advisory lock on a directory (``flock`` on the directory itself: no lock file to leave).

    ``with DirectoryLock(out):`` raises :class:`OutputBusy` at once if another process holds it; the lock
    goes with the process, so a killed run never leaves a stale one. Where ``fcntl`` does not exist
    (Windows) it does nothing.
    """

    def __init__(self, directory):
        self.directory, self._fd = Path(directory), None

    def __enter__(self) -> DirectoryLock:
        try:
            import fcntl
        except ImportError:
            return self
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputBusy(f"another pinnlab run is writing to {str(self.directory)!r}; wait for it to finish "
                             "or choose another output directory") from None
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
