"""Host eigenvalue solves (what a spectra frame ends with) on OpenBLAS's threads vs one thread.

``PYTHONPATH=. python benchmarks/bench_eigvalsh_threads.py [--sizes 200 900] [--repeats 11]`` prints one
JSON object: per size, the median and max milliseconds of ``np.linalg.eigvalsh`` (float64) with
OpenBLAS's own thread count, inside ``pinnlab.lab.threads.one_blas_thread()``, and of jax's jitted
``jnp.linalg.eigvalsh`` (float32, LAPACK from scipy's OpenBLAS), alternated. Run it on a busy machine
(beside a test suite or busy loops) to see why the lab solves on one thread.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from _util import environment, median, print_json

from pinnlab.lab.threads import one_blas_thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 900])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    import threadpoolctl

    out = {"env": environment(), "blas": [(i["filepath"].rsplit("/", 1)[-1], i["num_threads"])
                                          for i in threadpoolctl.threadpool_info()], "sizes": {}}
    jax_eig = jax.jit(jnp.linalg.eigvalsh)
    rng = np.random.default_rng(0)
    for n in args.sizes:
        a = rng.standard_normal((n, n))
        k = a @ a.T
        k32 = k.astype(np.float32)
        jax_eig(k32).block_until_ready()  # compiled before timing

        def default():
            np.linalg.eigvalsh(k)

        def one():
            with one_blas_thread():
                np.linalg.eigvalsh(k)

        def with_jax():
            jax_eig(k32).block_until_ready()

        times: dict[str, list[float]] = {"numpy_default_threads": [], "numpy_one_thread": [], "jax_float32": []}
        for _ in range(args.repeats):
            for name, fn in zip(times, (default, one, with_jax)):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        out["sizes"][n] = {name: {"median_ms": 1e3 * median(v), "max_ms": 1e3 * max(v)} for name, v in times.items()}
    out["env_after"] = environment()
    print_json(out)


if __name__ == "__main__":
    main()
