"""``python -m pinnlab`` and the ``pinnlab`` command.

The command's own module imports JAX, which takes seconds. A Ctrl-C during that import ends the process at
once with one line: nothing exists yet to save, and a KeyboardInterrupt raised inside the import can land in
one of JAX's garbage-collector callbacks, which would print a traceback and carry on.
"""

import os
import signal
import sys


def main() -> int:
    """Entry point of the ``pinnlab`` console script; returns the exit code."""

    def starting(signum, frame):
        print("pinnlab: interrupted while starting; nothing written", file=sys.stderr, flush=True)
        os._exit(130)

    # an ignored SIGINT (a shell's background job) stays ignored, as Python itself does
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, starting)
    # XLA:CPU logs ~70 ERROR lines ("Target machine feature +prefer-no-gather is not supported ... could
    # lead to SIGILL") each time it loads a compiled program from the persistent cache on CPUs with LLVM
    # tuning flags (jax-ml/jax#38445, openxla/xla#44565): the entries load and run correctly; the check
    # mistakes tuning flags for CPU features. Only XLA's C++ log is silenced (FATAL still shows; Python
    # errors are untouched); set TF_CPP_MIN_LOG_LEVEL=0 to see it. Kernels of `pinnlab lecture` inherit it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from pinnlab.cli import main as run

    if signal.getsignal(signal.SIGINT) is starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    code = run()
    # Everything is written: a Ctrl-C pressed again while the interpreter shuts down (JAX's exit hooks take
    # a moment) would only print a traceback from those hooks.
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    return code


if __name__ == "__main__":
    sys.exit(main())
