"""When pytest-timeout is about to fail a test, print every asyncio task of the event loop the
main thread is running, each with its stack (``Task.print_stack``) and what it awaits.

pytest-timeout only dumps threads: a test (or a fixture's teardown) stuck on an await shows
nothing but the main thread idle in ``select``. A watchdog thread armed with pytest-timeout's
own timer (same item, same ``func_only``, so setup and teardown are covered too) fires a little
before it; it finds the loop among the main thread's frames and asks the loop itself to print
its tasks (``call_soon_threadsafe``), which is exact when the loop is idle-waiting, the case
this is for. A loop too busy to answer within a second is dumped from the watchdog thread
instead (a snapshot, possibly torn, but better than nothing).

Loaded by ``tests/conftest.py``; ``tests/test_timeout_tasks.py`` checks that it prints.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import traceback
from typing import Any, TextIO

import pytest

#: The watchdog fires this long before pytest-timeout (s), or 10 % of the timeout if less.
AHEAD_S = 3.0
#: How long the watchdog waits for the loop to print its own tasks (s).
LOOP_ANSWER_S = 1.0


def _main_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop the main thread is inside, found among its frames."""
    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, asyncio.AbstractEventLoop) and candidate.is_running():
            return candidate
        frame = frame.f_back
    return None


def _await_chain(coro: Any) -> traceback.StackSummary:
    """The frames of ``coro`` and of what it awaits, outermost first: ``Task.print_stack``
    stops at an async generator (an ``async with`` or fixture teardown), this goes through."""
    frames: list[tuple[Any, int]] = []
    seen: set[int] = set()
    while coro is not None and id(coro) not in seen and len(frames) < 60:
        seen.add(id(coro))
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        frame = frame or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append((frame, frame.f_lineno))
        nxt = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        nxt = nxt or getattr(coro, "gi_yieldfrom", None)
        if nxt is not None and not any(hasattr(nxt, a) for a in _FRAMED):
            # An async generator's asend/athrow wrapper: the generator is what it refers to.
            nxt = next(
                (r for r in gc.get_referents(nxt) if any(hasattr(r, a) for a in _FRAMED)), None
            )
        coro = nxt
    return traceback.StackSummary.extract(iter(frames))


_FRAMED = ("cr_frame", "ag_frame", "gi_frame")


def dump_tasks(loop: asyncio.AbstractEventLoop, out: TextIO, where: str) -> None:
    try:
        tasks = list(asyncio.all_tasks(loop))
    except RuntimeError as exc:  # the set changed while a thread copied it
        out.write(f"could not list the tasks: {exc}\n")
        return
    out.write(f"\n{'+' * 20} asyncio tasks of {loop!r} ({len(tasks)}, {where}) {'+' * 20}\n")
    for task in sorted(tasks, key=lambda t: t.get_name()):
        out.write(f"--- {task!r}\n")
        waiter = getattr(task, "_fut_waiter", None)
        if waiter is not None:
            out.write(f"    awaiting {waiter!r}\n")
        try:
            out.write("".join(traceback.format_list(_await_chain(task.get_coro()))))
        except Exception:
            traceback.print_exc(file=out)
    out.write(f"{'+' * 20} end of asyncio tasks {'+' * 20}\n")
    out.flush()


class _Watchdog:
    def __init__(self, delay_s: float, out: TextIO) -> None:
        self.out = out
        self.timer = threading.Timer(delay_s, self._fire)
        self.timer.name = "asyncio-task-dump watchdog"
        self.timer.daemon = True

    def _fire(self) -> None:
        loop = _main_loop()
        if loop is None:
            self.out.write("\n(timeout near: the main thread runs no asyncio loop)\n")
            return
        answered = threading.Event()

        def in_loop() -> None:
            dump_tasks(loop, self.out, "printed by the loop")
            answered.set()

        try:
            loop.call_soon_threadsafe(in_loop)
        except RuntimeError:  # closed meanwhile
            return
        if not answered.wait(LOOP_ANSWER_S):
            dump_tasks(loop, self.out, "the loop did not answer: snapshot from a thread")


def _out(item: pytest.Item) -> TextIO:
    """Where pytest-timeout writes its thread dump: the terminal, around output capture."""
    terminal: Any = item.config.get_terminal_writer()
    return getattr(terminal, "_file", None) or sys.__stderr__ or sys.stderr


@pytest.hookimpl(hookwrapper=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Any:
    yield
    timeout = float(settings.timeout or 0)
    if timeout <= 0:
        return
    dog = _Watchdog(max(0.0, timeout - min(AHEAD_S, timeout / 10)), _out(item))
    item.stash[_KEY] = dog
    dog.timer.start()


@pytest.hookimpl(hookwrapper=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> Any:
    dog = item.stash.get(_KEY, None)
    if dog is not None:
        dog.timer.cancel()
        del item.stash[_KEY]
    yield


_KEY = pytest.StashKey[_Watchdog]()
