"""What the lab remembers between kernel starts: XLA compilations and the chunk length that fit ~30 ms.

Both live under the user cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``)``/pinnlab``, the same
place the CLI keeps its JAX cache, so a second start of the same lab skips the compile of its chunk.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

TARGET_SECONDS = 0.03  # one chunk: long enough to amortise the call, short enough for Pause to feel instant
MAX_CHUNK = 4096


def directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pinnlab"


def enable_compilation_cache() -> None:
    """Turn on JAX's persistent compilation cache under :func:`directory` (never fails a lab over it).

    Every compile is kept, not only those over JAX's default 1 s: building a lab runs dozens of small
    compiles (initialisers, samplers, the NTK panels) that together take seconds and ~0.3 MB on disk
    per configuration. JAX bounds the cache (256 MB, least recently used first) only when ``filelock``
    is installed. The cache is re-initialised, so this works even after something else compiled.
    """
    try:
        import jax
        from jax.experimental.compilation_cache import compilation_cache

        path = directory() / "jax"
        path.mkdir(parents=True, exist_ok=True)
        if jax.config.jax_compilation_cache_dir == str(path):
            return
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        if importlib.util.find_spec("filelock") is not None:
            jax.config.update("jax_compilation_cache_max_size", 256 * 2**20)
        compilation_cache.reset_cache()  # JAX decides once, at its first compile, whether a cache is used
    except Exception:  # a cache is an optimisation
        pass


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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=0, sort_keys=True))
        os.replace(tmp, path)
    except (OSError, ValueError, AttributeError):
        pass
