"""The kernel functions run their matmuls at ``precision="highest"`` unless told otherwise.

On a GPU, JAX's default float32 matmul is TF32: the wave kernel came out 4-7e-4 off its float64 value
on an H200 (benchmarks/results_gpu_h200.json, ``check``). CPUs ignore the setting, so these tests pin
the mechanism: every matmul traced by the NTK code carries the requested precision, and the public
functions run their compiled kernels inside that context.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from pinnlab import ntk, ntk_structured, spectrum

HIGHEST = (lax.Precision.HIGHEST, lax.Precision.HIGHEST)


def _dot_precisions(jaxpr) -> list:
    """The ``precision`` of every dot_general in a (closed) jaxpr, nested jaxprs included."""
    out = []
    for eqn in jaxpr.jaxpr.eqns if hasattr(jaxpr, "jaxpr") else jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            out.append(eqn.params["precision"])
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if hasattr(sub, "eqns") or hasattr(sub, "jaxpr"):
                    out.extend(_dot_precisions(sub))
    return out


@pytest.fixture(scope="module")
def wave(h):
    problem = h.small_problem("wave")
    net = h.small_net(problem)
    points = [x[:6] for x in problem.sample(jax.random.key(1), ntk=True)]
    return problem, net, points


@pytest.mark.parametrize("method", ["structured", "jacobian"])
@pytest.mark.parametrize("precision, expected", [("highest", HIGHEST), (None, None)])
def test_traced_matmuls_carry_the_precision(wave, method, precision, expected):
    problem, net, points = wave
    kwargs = {} if precision == "highest" else {"precision": precision}  # "highest" is the default
    jaxpr = jax.make_jaxpr(lambda p: ntk.traces(net.apply, p, problem.terms, points, method=method, **kwargs))(
        net.params)
    found = _dot_precisions(jaxpr)
    assert len(found) >= 4  # the net's layers, forward and backward
    assert all(p == expected for p in found), set(map(str, found))


@pytest.mark.parametrize("method", ["structured", "jacobian"])
def test_block_and_kernel_compute_inside_the_context(wave, method, monkeypatch):
    problem, net, points = wave
    seen = []

    def recording(fn):
        def wrapped(*args, **kwargs):
            seen.append(jax.config.jax_default_matmul_precision)
            return fn(*args, **kwargs)
        return wrapped

    if method == "structured":
        original = ntk_structured.jitted_block  # a factory: record the calls of what it returns
        monkeypatch.setattr(ntk_structured, "jitted_block", lambda *a, **k: recording(original(*a, **k)))
        monkeypatch.setattr(ntk_structured, "host_kernel", recording(ntk_structured.host_kernel))
    else:
        monkeypatch.setattr(ntk, "_panel_rows", recording(ntk._panel_rows))
    k_default = ntk.kernel(net.apply, net.params, problem.terms, points, method=method)
    b_default = ntk.block(net.apply, net.params, problem.terms[0], points[0], method=method)
    k_jax = ntk.kernel(net.apply, net.params, problem.terms, points, method=method, precision=None)
    assert seen[:2] == ["highest", "highest"] and seen[-1] is None
    np.testing.assert_allclose(k_default, k_jax, rtol=1e-5)  # the CPU computes float32 in full either way
    np.testing.assert_allclose(b_default, k_default[: len(points[0]), : len(points[0])], rtol=1e-5)


def test_lanczos_products_run_at_the_precision(wave):
    problem, net, points = wave
    n = sum(len(x) for x in points)
    k = ntk.kernel(net.apply, net.params, problem.terms, points)
    seen = []

    def matvec(v):
        seen.append(jax.config.jax_default_matmul_precision)
        return jnp.asarray(k) @ v  # traced inside the jitted Lanczos step

    top = spectrum.top_eigenvalues(net.apply, net.params, problem.terms, points, k=3, matvec=matvec,
                                   iterations=n)
    assert seen and set(seen) == {"highest"}
    np.testing.assert_allclose(top, ntk.eigenvalues(k)[:3], rtol=1e-4)


def test_bad_precision_names_the_value(wave):
    problem, net, points = wave
    with pytest.raises(ValueError, match="precision='fast'"):
        ntk.kernel(net.apply, net.params, problem.terms, points, precision="fast")
