"""Where a number was produced: the machine and the library versions, recorded in every results JSON.

jaxlib is named separately from jax because a miscompiling jaxlib (jax-ml/jax#39103, 0.10.2 on CPU) gives
wrong NTK traces with no error: a saved result must say which one computed it.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata


def versions() -> dict[str, str | None]:
    """Versions of pinnlab and the core libraries (``None`` for one not installed)."""

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {name: version(name) for name in ("pinnlab", "jax", "jaxlib", "flax", "optax", "numpy")}


def machine() -> dict:
    """The platform, Python, devices and core count, with :func:`versions` (numbers are only comparable on
    the same machine)."""
    import jax

    return {"platform": platform.platform(), "python": platform.python_version(), **versions(),
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "cpu_count": os.cpu_count()}
