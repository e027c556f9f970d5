"""The kernel-wide registry of training tasks: at most one trains at a time.

Every lab starts its training loop through :func:`start`, which cancels whatever task is running
(another Run click, a Reset, another lab, a new lab) and waits for it to finish before the new one
takes its first step, so two loops never interleave chunks on the kernel's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine

_TASKS: set[asyncio.Task] = set()


def start(make: Callable[[], Coroutine], reason: str = "another training task started") -> asyncio.Task:
    """Cancel the running task(s) and schedule ``make()`` on the running event loop.

    Raises:
      RuntimeError: outside a running event loop (a plain script): use ``lab.run(steps)`` there.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError("the live lab trains on a running asyncio loop (a Jupyter kernel); in a script use "
                           "lab.run(steps) or `await lab.arun(steps)`") from None
    previous = stop_all(reason)

    async def main():
        if previous:
            await asyncio.wait(previous)  # the old loop has fully stopped before the new one steps
        await make()

    task = loop.create_task(main(), name="pinnlab-lab-training")
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
    return task


def stop_all(reason: str = "stopped") -> list[asyncio.Task]:
    """Cancel every registered task that is still alive and return them (they end at their next await)."""
    alive = [t for t in _TASKS if not t.done()]
    for task in alive:
        task.cancel(reason)
    return alive


def running() -> list[asyncio.Task]:
    """Tasks that are alive and not being cancelled: the ones that will train another chunk."""
    return [t for t in _TASKS if not t.done() and not t.cancelling()]


def alive() -> list[asyncio.Task]:
    """Every registered task that has not finished (cancelled ones included until they unwind)."""
    return [t for t in _TASKS if not t.done()]
