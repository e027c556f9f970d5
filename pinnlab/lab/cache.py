"""What the lab remembers between kernel starts: XLA compilations (:mod:`pinnlab.cache`) and the chunk
length that fit ~30 ms.

Both live under the user cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``)``/pinnlab``, the same
place the CLI keeps its JAX cache, so a second start of the same lab skips the compile of its chunk.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pinnlab.cache import directory, enable_compilation_cache
from pinnlab.files import write_file

__all__ = ["directory", "enable_compilation_cache", "estimate_chunk", "pow2_chunk", "remember_chunk",
           "remembered_chunk"]

TARGET_SECONDS = 0.03  # one chunk: long enough to amortise the call, short enough for Pause to feel instant
MAX_CHUNK = 4096


def estimate_chunk(num_params: int, points: int) -> int:
    """A first guess of the chunk length from a cost model fitted on a 2-core laptop CPU.

    One step costs about ``2e-5 + 1.5e-9 * P * N`` seconds (P parameters, N training points); the
    lab corrects the guess after a few chunks (see :func:`pow2_chunk`) and remembers the result.
    """
    return pow2_chunk(2e-5 + 1.5e-9 * num_params * points)


def pow2_chunk(seconds_per_step: float) -> int:
    """The power of two nearest to ``TARGET_SECONDS / seconds_per_step`` (powers of two share compiles)."""
    steps = TARGET_SECONDS / max(seconds_per_step, 1e-9)
    return int(min(MAX_CHUNK, 2 ** round(max(0.0, math.log2(steps)))))


def _memo_path() -> Path:
    return directory() / "lab_chunks.json"


def remembered_chunk(key: str) -> int | None:
    """The chunk length measured for ``key`` in an earlier session, if any."""
    try:
        value = json.loads(_memo_path().read_text()).get(key)
        return int(value) if value else None
    except (OSError, ValueError, AttributeError):
        return None


def remember_chunk(key: str, chunk: int) -> None:
    """Store a measured chunk length (atomic replace; a failure only costs a re-measurement)."""
    path = _memo_path()
    try:
        memo = json.loads(path.read_text()) if path.exists() else {}
        memo[key] = int(chunk)
        write_file(path, json.dumps(memo, indent=0, sort_keys=True))
    except (OSError, ValueError, AttributeError):
        pass
