"""JAX's persistent compilation cache under the user cache directory, shared by the CLI and the lab.

``$XDG_CACHE_HOME/pinnlab/jax`` (or ``~/.cache/pinnlab/jax``): a second start of the same run or lab
skips its XLA compiles. Only jax is imported, so the core stays free of the Jupyter stack.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import platform
from pathlib import Path


def directory() -> Path:
    """pinnlab's user cache directory."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pinnlab"


def host_tag() -> str:
    """A short tag of this machine's CPU (architecture and instruction-set flags).

    Why: JAX 0.10's CPU cache keys do not include the host's instruction set. A home directory shared
    by machines of different CPUs (a cluster's nodes, a laptop and a workstation) would load code
    compiled for another CPU: XLA then logs one "could lead to execution errors such as SIGILL" line
    per compiled function, and an instruction this CPU lacks would crash the process.
    """
    flags = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):  # x86, arm
                flags = line.split(":", 1)[1]
                break
    ident = f"{platform.machine()}|{platform.processor()}|{' '.join(sorted(flags.split()))}"
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


def enable_compilation_cache() -> None:
    """Turn on JAX's persistent compilation cache under :func:`directory` (never fails a run over it).

    Every compile is kept, not only those over JAX's default 1 s: a run or a lab starts with dozens of
    small compiles (initialisers, samplers, the chunk, NTK panels) that together take seconds and
    ~0.3 MB on disk per configuration. JAX bounds the cache (256 MB, least recently used first) only
    when ``filelock`` is installed. The cache is re-initialised, so this works after earlier compiles.
    """
    try:
        import jax
        from jax.experimental.compilation_cache import compilation_cache

        path = directory() / "jax" / host_tag()
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
