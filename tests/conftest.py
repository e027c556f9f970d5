"""Shared fixtures: float64 contexts, small nets and an NTK built independently of :mod:`pinnlab.ntk`.

The reference kernel is J J^T with J = jacfwd of the whole stacked residual vector with respect to the
flat parameter vector (``ravel_pytree``): no per-point gradients, no chunking, no pytree contraction,
so it shares nothing with the code under test except the residual definitions and the network.

Compilation dominates the run time of these tests, so problems and float64 NTK cases are built once
per session (the same ``apply`` and ``Term`` objects also hit :mod:`pinnlab.ntk`'s jit cache).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import shutil
import tempfile
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from pinnlab import make_problem, nets, ntk

# The CLI and the lab turn on JAX's persistent compilation cache under $XDG_CACHE_HOME/pinnlab: keep the
# tests' entries out of the user's cache (and the user's out of the tests).
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pinnlab-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)  # no leftovers in /tmp

PROBLEM_NAMES = ("poisson", "wave", "heat")
# The residuals do not depend on the point counts; small counts keep samples and grids cheap.
SMALL = {"poisson": dict(n_b=10, n_r=12, n_eval=50), "wave": dict(n_u=12, n_ut=6, n_r=12, n_ntk=9, n_eval=10),
         "heat": dict(n_u=12, n_r=12, n_ntk=9, n_eval=10)}


@contextlib.contextmanager
def float64():
    """Run JAX in double precision inside the block (jax >= 0.7: ``jax.enable_x64`` is a context manager)."""
    with jax.enable_x64(True):
        yield


def to64(tree):
    """Cast every leaf of a pytree to float64 (call inside :func:`float64`)."""
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


@functools.cache
def small_problem(name: str):
    """One shared instance per problem name."""
    return make_problem(name, **SMALL[name])


def small_net(problem, *, parameterization="standard", standardize=True, activation="tanh",
              width=6, depth=2, seed=1) -> nets.Net:
    """A small network with the problem's code initialiser (standard) or N(0, 1) (NTK parameterisation)."""
    init = problem.default_init if parameterization == "standard" else "normal"
    config = nets.NetConfig(width=width, depth=depth, parameterization=parameterization, init=init,
                            standardize=standardize, activation=activation)
    return nets.make_net(config, problem.dim, problem.mean, problem.std, jax.random.key(seed))


def sample_points(problem, n: int, seed: int = 2) -> list:
    """``n`` float64 points per term from the term's own sampler, spread over all its parts.

    Evenly spaced picks from a full batch, so stacked samplers (x = 0 and x = 1 halves, the three
    sides of a space-time box) all contribute. Call inside :func:`float64`.
    """
    keys = jax.random.split(jax.random.key(seed), len(problem.terms))
    out = []
    for t, k in zip(problem.terms, keys, strict=True):
        full = np.asarray(t.sampler(k, max(n, t.n)))
        out.append(jnp.asarray(full[np.linspace(0, len(full) - 1, n).astype(int)], jnp.float64))
    return out


def explicit_jacobian(apply, params, terms, points) -> np.ndarray:
    """J (N x P) of the stacked residuals by ``jacfwd`` w.r.t. the raveled parameters."""
    flat, unravel = ravel_pytree(params)

    def residual_vector(theta):
        p = unravel(theta)
        return jnp.concatenate([t.residuals(apply, p, x) for t, x in zip(terms, points, strict=True)])

    return np.asarray(jax.jit(jax.jacfwd(residual_vector))(flat))


@functools.cache
def _reference_case(name: str, parameterization: str, standardize: bool, activation: str,
                    n: int) -> types.SimpleNamespace:
    """The method-independent part of :func:`ntk_case`: problem, net, params, points, explicit J and J J^T.

    Shared by the cases of every ``method`` on the same architecture: the explicit Jacobian is a
    deterministic function of (net, params, points), so computing it once per architecture gives the very
    same reference a per-method copy would (and saves a jacfwd compile per method).
    """
    problem = small_problem(name)
    net = small_net(problem, parameterization=parameterization, standardize=standardize, activation=activation)
    with float64():
        params = to64(net.params)
        points = sample_points(problem, n)
        jac = explicit_jacobian(net.apply, params, problem.terms, points)
    jac.setflags(write=False)  # shared between cases: read only
    reference = jac @ jac.T
    reference.setflags(write=False)
    offsets = np.cumsum([0] + [len(x) for x in points])
    return types.SimpleNamespace(problem=problem, net=net, params=params, points=points, jac=jac,
                                 reference=reference, offsets=offsets)


@functools.cache
def ntk_case(name: str, parameterization: str = "standard", standardize: bool = True,
             activation: str = "tanh", n: int = 5, method: str = "auto") -> types.SimpleNamespace:
    """A float64 case: problem, net, params, points, explicit J, reference J J^T and ``ntk.kernel``
    computed with ``method``."""
    ref = _reference_case(name, parameterization, standardize, activation, n)
    with float64():
        full = ntk.kernel(ref.net.apply, ref.params, ref.problem.terms, ref.points, method=method)
    return types.SimpleNamespace(**vars(ref), kernel=full, method=method)


def rel_err(a, b) -> float:
    """Max-norm error of ``a`` relative to the largest entry of ``b``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


class Helpers:
    """Bundled helpers, handed to tests through the ``h`` fixture."""

    float64 = staticmethod(float64)
    to64 = staticmethod(to64)
    small_problem = staticmethod(small_problem)
    small_net = staticmethod(small_net)
    sample_points = staticmethod(sample_points)
    explicit_jacobian = staticmethod(explicit_jacobian)
    ntk_case = staticmethod(ntk_case)
    rel_err = staticmethod(rel_err)
    PROBLEM_NAMES = PROBLEM_NAMES


@pytest.fixture(scope="session")
def h() -> type[Helpers]:
    return Helpers


@pytest.fixture(params=PROBLEM_NAMES)
def problem(request):
    """Each registered problem (shared instance, small point counts)."""
    return small_problem(request.param)


CHROMIUM = "/usr/bin/chromium"  # Debian's chromium, driven by Python playwright (never `playwright install`)


def server_log_errors(text: str) -> list[str]:
    """The Python errors a Jupyter or Voila server's log shows from its kernels: traceback headers and
    ``...Error:`` lines (the plotly ValueError the lab once logged on every run, among others). XLA's C++
    "cpu_aot_loader" lines are not Python errors (see pinnlab/__main__.py)."""
    lines = [line for line in text.splitlines() if "cpu_aot_loader" not in line]
    return [line for line in lines if "Traceback (most recent call last)" in line
            or re.search(r"\b\w*(Error|Exception): ", line)]


@pytest.fixture(scope="module")
def browser():
    """A headless chromium for the browser tests (JupyterLab and Voila); skipped without chromium/playwright."""
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Python playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()
