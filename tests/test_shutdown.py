"""A shutdown never hangs on one of its steps (``waqtor.runtime.shutdown``), and the worker's
Redis watch ends when it is closed, whenever the close lands."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from waqtor.runtime import shutdown
from waqtor.runtime.services import build
from waqtor.sending import worker as worker_module
from waqtor.sending.worker import CampaignWorker
from waqtor.store.redis_watch import RedisWatch


async def test_a_step_that_swallows_its_cancellation_is_left_behind_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """bullmq's ``Worker.close`` shields its teardown and waits again when cancelled:
    ``asyncio.wait_for`` then waits for it however long it takes; ``step`` does not."""
    release = asyncio.Event()

    async def stubborn() -> None:
        while True:
            try:
                await release.wait()
                return
            except asyncio.CancelledError:
                continue

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="waqtor.runtime.shutdown"):
        finished = await shutdown.step("stubborn close", stubborn(), 0.3)
    took = time.monotonic() - started
    assert finished is False
    assert took < 2, took
    assert "stubborn close did not end within 0.3 s" in caplog.text
    release.set()  # let it end, for a clean loop


async def test_a_step_that_ends_or_fails_says_so(caplog: pytest.LogCaptureFixture) -> None:
    async def fine() -> None:
        await asyncio.sleep(0)

    async def broken() -> None:
        raise ConnectionError("Redis went away")

    with caplog.at_level(logging.WARNING, logger="waqtor.runtime.shutdown"):
        assert await shutdown.step("fine close", fine(), 1) is True
        assert await shutdown.step("broken close", broken(), 1) is False
    assert "broken close failed: Redis went away" in caplog.text
    assert "fine close" not in caplog.text


async def test_the_redis_watch_ends_when_its_close_lands_as_a_ping_completes(
    redis_url: str,
) -> None:
    """The watch's cancel arrives just as its ping is answered (a loaded machine makes that
    likelier): Python 3.11's ``wait_for`` returned the answer and lost the cancel, and the
    watch pinged on while ``close()`` waited for it: a teardown that never ended. The ping
    is Redis's own; only the moment of the close is arranged."""
    watch = RedisWatch(redis_url, "waqtor-test-watch")
    real_ping = watch._client.ping
    closing: list[asyncio.Task[None]] = []

    async def ping_then_close(**kw: Any) -> Any:
        answer = await real_ping(**kw)
        if not closing:
            closing.append(asyncio.ensure_future(watch.close()))
            await asyncio.sleep(0)  # close() runs up to its wait: the cancel is in
        return answer

    watch._client.ping = ping_then_close  # type: ignore[method-assign]
    watch.start()
    for _ in range(100):
        if closing:
            break
        await asyncio.sleep(0.02)
    assert closing, "the watch never pinged"
    done, _ = await asyncio.wait({closing[0]}, timeout=3)
    try:
        assert done, "close() did not end: the watch outlived its cancel"
        assert watch._task is not None and watch._task.done()
    finally:
        if watch._task is not None:
            watch._task.cancel()
        await watch._client.aclose()


async def test_a_worker_stops_in_time_when_a_job_never_ends(
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A job that does not end (a call stuck for good, deaf to cancellation) holds bullmq's
    graceful close, which ``wait_for`` could not cut short: the stop hung for as long as the
    job. Now the graceful close gets its time, then bullmq is closed by force and the stop
    ends, saying why. The processor is replaced by a stuck one; Redis and bullmq are real."""
    monkeypatch.setattr(worker_module, "STOP_TIMEOUT_S", 1.0)
    worker = CampaignWorker(build(make_settings(redis_url, tmp_path), redis_url, patient=True))
    running, release = asyncio.Event(), asyncio.Event()

    async def never_ends(job: Any, token: str) -> dict[str, int]:
        running.set()
        while not release.is_set():  # a stuck call: cancelling it does not end it either
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()
        return {}

    worker.process = never_ends  # type: ignore[method-assign]
    await worker.start()
    await worker.s.engine.add_campaign("stuck-1", {"campaignId": "stuck-1"}, lambda pipe: None)
    await asyncio.wait_for(running.wait(), 10)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        stopping = asyncio.ensure_future(worker.stop())
        try:
            done, _ = await asyncio.wait({stopping}, timeout=10)
            took = time.monotonic() - started
            assert done, "the stop hung on the job that never ends"
        finally:
            release.set()  # whatever happened, let the job end now, for a clean teardown
            await asyncio.wait({stopping}, timeout=10)
        await worker.close()
    assert 0.9 < took < 5, took
    assert "bullmq close (in-flight jobs finishing) did not end within" in caplog.text
    assert "graceful close did not finish; forcing" in caplog.text


STUCK_EXIT = """
import asyncio, sys
from waqtor.runtime import shutdown

async def stubborn():
    while True:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            continue

async def main():
    await shutdown.step("stubborn close", stubborn(), 0.2)
    return 7

sys.exit(shutdown.run(main(), None))
"""


def test_a_process_exits_though_a_shutdown_step_never_ends() -> None:
    """``asyncio.Runner``'s close cancels what is left and waits for all of it: a step that
    swallows its cancellation held the process forever. ``shutdown.run`` leaves it."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", STUCK_EXIT], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 7, done.stderr
    assert time.monotonic() - started < 10
    assert "exiting with 1 step(s) that did not end left running" in done.stderr
