"""Bounded shutdown steps: a stop of ``serve`` or ``worker`` never hangs on one of its parts.

``asyncio.wait_for`` does not bound a step that swallows its cancellation: on timeout it cancels
the step and then waits for it to end, however long that takes. bullmq's ``Worker.close`` does
exactly that (it shields its teardown and waits again when cancelled), and Python 3.11's own
``wait_for`` loses a cancellation that lands just as the awaited call completes, so a loop
around it can outlive its ``cancel()``. :func:`step` waits with ``asyncio.wait`` instead: past
its time it cancels the step, says which one it was, and goes on without waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("waqtor.runtime.shutdown")

T = TypeVar("T")

#: Steps that ran out of time: cancelled, maybe still running (see :func:`run`).
_left: set[asyncio.Task[Any]] = set()


async def step(name: str, work: Awaitable[object], timeout_s: float) -> bool:
    """Run ``work`` for at most ``timeout_s``; True when it ended in time without an error.
    A step that ran out of time or failed is logged as a warning naming it, and the shutdown
    goes on: it is cancelled, but not waited for."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(0.0, timeout_s))
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        _left.add(task)
        task.add_done_callback(_left.discard)
        log.warning("shutdown: %s did not end within %.1f s; going on without it", name, timeout_s)
        return False
    if task.cancelled():
        log.warning("shutdown: %s was cancelled", name)
        return False
    exc = task.exception()
    if exc is not None:
        log.warning("shutdown: %s failed: %s", name, exc or type(exc).__name__)
        return False
    return True


async def cancel_tasks(name: str, tasks: list[asyncio.Task[None] | None], timeout_s: float) -> bool:
    """Cancel ``tasks`` and wait at most ``timeout_s`` for them to end (one that swallows its
    cancellation is left behind, with a warning naming ``name``)."""
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    if not live:
        return True
    return await step(name, asyncio.gather(*live, return_exceptions=True), timeout_s)


def left_behind() -> int:
    """How many steps that ran out of time are still running."""
    return sum(1 for task in _left if not task.done())


def run(
    main: Coroutine[Any, Any, T], loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
) -> T:
    """``asyncio.Runner(loop_factory).run(main)`` for a process's main coroutine, except that
    the runner's close, which cancels every task left and waits for them all, is skipped when
    a bounded step was left behind: such a step may not end when cancelled, and the process
    is exiting anyway."""
    runner = asyncio.Runner(loop_factory=loop_factory)
    try:
        return runner.run(main)
    finally:
        left = left_behind()
        if left:
            log.warning("shutdown: exiting with %d step(s) that did not end left running", left)
        else:
            runner.close()
