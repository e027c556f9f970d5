"""Canary for a JAX CPU miscompile that would corrupt pinnlab's numbers without raising.

jax-ml/jax#39103: with jax/jaxlib 0.10.2 on CPU, ``jax.jit(jax.vmap(lambda row: jnp.sum((M @ row) ** 2)))``
returns wrong values for some rows of the batch (0.10.1 is correct). The issue's reproduction: rows
``(k, 0, 0)`` for k = 0, ..., n - 1 and ``M = eye(3)``, so row k's exact value is k^2 and the last row's
is (n - 1)^2. On 0.10.2 the last row came out as

    float64, n = 16,385: 267,911,424 = 16,368^2 instead of 268,435,456 = 16,384^2 = 2^28,
    float32, n = 32,769: 1,071,645,696 = 32,736^2 instead of 1,073,741,824 = 32,768^2 = 2^30,

that is the value of a row 16 (float64) or 32 (float32) places earlier: the jitted batch reads the
wrong rows, so a checked sum or mean would not see it. The NTK code is made of this pattern (vmapped
per-point gradients contracted and reduced under jit), hence the canary.

The construction is the issue's own (a 3 x 3 matrix and an (n, 3) batch, under 1 MB): the trigger is the
batch size, not the matrix size. Every value is exact in both dtypes (k^2 < 2^53 in float64; in float32
the single rounding of k * k, which numpy reproduces), so the check is equality, not a tolerance.
pyproject.toml excludes 0.10.2 (``jax!=0.10.2``); these tests catch an environment that got it anyway.
"""

from __future__ import annotations

import importlib.metadata

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import pytest

BAD = "0.10.2"
ISSUE = "this JAX miscompiles vmapped mat-vec reductions (jax-ml/jax#39103): install jax/jaxlib != 0.10.2"


def _squares(dtype, n: int) -> np.ndarray:
    """The issue's pattern under jit(vmap) on the CPU: row k = (k, 0, 0), M = eye(3), so sum((M @ row)^2) = k^2."""
    i = jnp.arange(n, dtype=dtype)
    rows = jnp.stack((i, jnp.zeros_like(i), jnp.zeros_like(i)), axis=1)
    matrix = jnp.eye(3, dtype=dtype)
    out = jax.jit(jax.vmap(lambda row: jnp.sum((matrix @ row) ** 2)))(rows)
    assert out.dtype == dtype and out.shape == (n,)
    return np.asarray(out)


# The issue's two failing cases first; the other sizes (2^k + 1 rows, as those) cost nothing more.
@pytest.mark.parametrize("dtype,n", [("float64", 16_385), ("float32", 32_769), ("float64", 32_769),
                                     ("float32", 16_385), ("float64", 65_537), ("float32", 65_537)])
def test_jit_vmap_matvec_reduction_is_exact(dtype, n):
    if jax.default_backend() != "cpu":
        pytest.skip(f"jax-ml/jax#39103 is a CPU miscompile; the default backend is {jax.default_backend()}")
    with jax.enable_x64(dtype == "float64"):  # as tests/conftest.py's float64(); float32 runs in the default mode
        got = _squares(getattr(jnp, dtype), n)
    k = np.arange(n, dtype=dtype)
    expected = k * k  # numpy: k^2 exactly in float64, correctly rounded in float32
    last = float(n - 1) ** 2  # closed form: (2^m)^2, exact in both dtypes
    assert float(expected[-1]) == last
    assert float(got[-1]) == last, f"{ISSUE}: {dtype} n={n}: last row {float(got[-1]):,.0f}, exact {last:,.0f}"
    wrong = np.flatnonzero(got != expected)
    assert wrong.size == 0, (f"{ISSUE}: {dtype} n={n}: {wrong.size} of {n} rows wrong, first at row {wrong[0]} "
                             f"({float(got[wrong[0]]):,.0f} instead of {float(expected[wrong[0]]):,.0f})")


def test_jax_and_jaxlib_are_not_the_miscompiling_release():
    installed = {name: importlib.metadata.version(name) for name in ("jax", "jaxlib")}
    imported = {"jax": jax.__version__, "jaxlib": jaxlib.__version__}
    for versions in (installed, imported):
        bad = {name: v for name, v in versions.items() if v == BAD}
        assert not bad, f"{ISSUE}; found {bad}"
    assert installed == imported, f"the imported jax/jaxlib {imported} are not the installed ones {installed}"
