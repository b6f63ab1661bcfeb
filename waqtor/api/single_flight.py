"""Concurrent callers share one read, and every caller gets a read that started after it asked.

A caller that finds no read running starts one. A caller that finds one running does not take
its answer, which may predate a change the caller has just seen made: it waits for the next read,
which starts as soon as the running one ends and serves everyone who asked in between. So there
are at most two reads alive (one running, one waiting to start), and none is ever served twice.
This is not a cache: nothing outlives the read that produced it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _consume(done: asyncio.Future[Any]) -> None:
    # Every waiter may have gone (client disconnected): retrieve the error so asyncio does not
    # log it as "never retrieved".
    if not done.cancelled():
        done.exception()


class SingleFlight(Generic[T]):
    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._running: asyncio.Future[T] | None = None
        self._next: asyncio.Future[T] | None = None
        # asyncio keeps only weak references to tasks: hold the running one.
        self._task: asyncio.Task[None] | None = None
        #: Reads started so far (tests and the benchmark's notes read it).
        self.reads = 0

    async def get(self) -> T:
        if self._running is None:
            answer = self._start(asyncio.get_running_loop().create_future())
        else:
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
            answer = self._next
        # shield: one caller giving up must not cancel the read the others wait for.
        return await asyncio.shield(answer)

    def _start(self, answer: asyncio.Future[T]) -> asyncio.Future[T]:
        answer.add_done_callback(_consume)
        self._running = answer
        self.reads += 1
        self._task = asyncio.get_running_loop().create_task(self._run(answer))
        return answer

    async def _run(self, answer: asyncio.Future[T]) -> None:
        try:
            result = await self._read()
        except asyncio.CancelledError:
            answer.cancel()
            raise
        except Exception as exc:
            answer.set_exception(exc)
        else:
            answer.set_result(result)
        finally:
            self._running = None
            waiting, self._next = self._next, None
            if waiting is not None:
                if answer.cancelled():  # shutting down: no read after this one
                    waiting.cancel()
                else:
                    self._start(waiting)
