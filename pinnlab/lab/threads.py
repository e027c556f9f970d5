"""One BLAS thread for the host eigenvalue solves of the lab's spectra.

The spectra's eigenvalues are LAPACK calls in numpy's OpenBLAS, which starts a thread per visible core.
On a shared or oversubscribed machine (Binder gives ~1 CPU but shows every host core; a laptop running
the training beside it) those threads wait on each other: beside a test suite on the 2-core VM a 900 x
900 ``eigvalsh`` took 57 ms on one thread and 126 ms (up to 248 ms) on two, a 200 x 200 one 1.4 ms
against 2.7 ms (``benchmarks/bench_eigvalsh_threads.py``); next to 4 busy loops, the default lab's
frame spent 111 ms in it. Single-threaded it is never much slower, so the lab always asks for one
thread, through ``threadpoolctl`` (a dependency of the ``jupyter`` extra). Without it, the solves keep
OpenBLAS's own setting (``OPENBLAS_NUM_THREADS``).
"""

from __future__ import annotations

import contextlib
import functools


@functools.cache
def _controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()  # scans the loaded libraries once (~1 ms); each limit then costs ~25 us


def one_blas_thread() -> contextlib.AbstractContextManager:
    """A context in which numpy's BLAS/LAPACK runs on one thread (no-op without threadpoolctl)."""
    controller = _controller()
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")
