"""Argument checks shared by the API, the CLI and the lab: each names the bad value and what would do.

Booleans are not integers here (``steps=True`` is a mistake, not 1), a float is an integer only when it
is integral (``width=8.5`` is refused, never truncated), and every float must be finite. Sizes are also
checked against an estimate of the memory they need, before anything is allocated.
"""

from __future__ import annotations

import math
import numbers
import os

MAX_STEPS = 2**31 - 1  # the step counter is an int32 inside the jitted loop
MAX_SEED = 2**32 - 1  # jax.random.key takes a uint32 seed
MAX_POINTS = 10**7  # per term; far above any PINN here, and still cheap to refuse


def integer(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``; integral floats and numpy integers pass, bools do not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not isinstance(value, numbers.Integral):
        if not (math.isfinite(value) and float(value).is_integer()):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    _within(name, value, low, high)
    return value


def number(name: str, value, low: float | None = None, high: float | None = None, positive: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (``positive``: > 0); bools and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if positive and value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    _within(name, value, low, high)
    return value


FLOAT32_MAX = 3.4028234663852886e38  # the nets train in float32: a PDE parameter past it is inf there


def float32_number(name: str, value) -> float:
    """``value`` as a finite float that float32 holds too (a PDE parameter)."""
    value = number(name, value)
    if abs(value) > FLOAT32_MAX:
        raise ValueError(f"{name} = {value!r} is past float32's largest number (3.4e38); choose a smaller one")
    return value


def seed(value, name: str = "seed") -> int:
    """A PRNG seed: an integer in 0..2**32 - 1."""
    return integer(name, value, 0, MAX_SEED)


def _within(name: str, value, low, high) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else f"{low:,}"
        hi = "inf" if high is None else f"{high:,}"
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value!r}")


def memory_limit() -> int:
    """The bytes a run may plan to use: the machine's physical memory (cgroup limits are not read)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): assume a laptop
        return 16 * 2**30


def fits_in_memory(what: str, nbytes: float) -> None:
    """Refuse a plan that needs more than :func:`memory_limit` bytes, saying how much and what to shrink."""
    limit = memory_limit()
    if nbytes > limit:
        raise ValueError(f"{what} needs about {_size(nbytes)} of memory; this machine has {_size(limit)}")


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1024
    raise AssertionError  # unreachable
