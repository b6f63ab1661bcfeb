"""CPU-heavy work off the event loop: validating a large recipient list, rendering every message
of a preview, parsing a large CSV.

One request doing that work on the loop stalls every other request of the process (and the
worker inside ``serve``) for as long as it runs. It runs here instead, on a small pool of
threads of its own: the loop keeps answering, and at most ``THREADS`` such jobs compete with it
for the interpreter at once; more wait their turn, so many heavy requests queue up instead of
starving everything else.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

THREADS = 2

P = ParamSpec("P")
T = TypeVar("T")

_pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="waqtor-cpu")


async def run(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` on the CPU pool; the caller's task waits, the loop does not."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, functools.partial(fn, *args, **kwargs))
