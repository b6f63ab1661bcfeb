"""Stats requests share Redis reads, yet every answer comes from a read that began after the
request arrived: a change another client has made is always in the next answer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.conftest import HEADERS, App, make_settings
from waqtor.api.live_stats import LiveStats
from waqtor.api.single_flight import SingleFlight
from waqtor.store.keys import Keys
from waqtor.store.queue_stats import QueueFigures, QueueStatsReader


class TimedReader:
    """The real reader (real Redis), noting when each read began."""

    def __init__(self, reader: QueueStatsReader) -> None:
        self.reader = reader
        self.started: list[int] = []

    async def read(self) -> QueueFigures:
        self.started.append(time.perf_counter_ns())
        return await self.reader.read()


async def test_concurrent_requests_share_reads_begun_after_they_arrived(app: App) -> None:
    live: LiveStats = app.app.state.live_stats
    reader = TimedReader(live.reader)
    live.reader = reader  # type: ignore[assignment]
    reads_before = live.flight.reads

    async def one() -> tuple[int, bytes]:
        arrived = time.perf_counter_ns()
        snapshot = await live.get()
        return arrived, snapshot.encoded

    for _ in range(5):
        answers = await asyncio.gather(*(one() for _ in range(50)))
        # The first caller starts a read; the other 49 arrive while it runs and share the next.
        assert live.flight.reads - reads_before == 2
        reads_before = live.flight.reads
        second = reader.started[-1]
        assert all(arrived < second for arrived, _ in answers[1:])
        assert answers[0][0] < reader.started[-2]
        assert len({body for _, body in answers}) == 1


async def test_single_flight_never_serves_a_read_begun_before_the_caller() -> None:
    clock = 0
    gates: list[asyncio.Event] = []

    async def read() -> int:
        nonlocal clock
        clock += 1
        began = clock
        gate = asyncio.Event()
        gates.append(gate)
        await gate.wait()
        return began

    flight: SingleFlight[int] = SingleFlight(read)

    async def caller() -> tuple[int, int]:
        nonlocal clock
        clock += 1
        arrived = clock
        return arrived, await flight.get()

    first = asyncio.ensure_future(caller())
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first read has begun
    assert len(gates) == 1
    late = [asyncio.ensure_future(caller()) for _ in range(10)]
    await asyncio.sleep(0)
    gates[0].set()  # the first read ends: the late callers must not get its answer
    arrived, began = await first
    assert began > arrived
    for _ in range(100):  # the second read begins once the first has ended
        if len(gates) == 2:
            break
        await asyncio.sleep(0)
    assert len(gates) == 2
    gates[1].set()
    for task in late:
        arrived, began = await task
        assert began > arrived
    assert flight.reads == 2


async def test_a_failed_read_fails_its_own_callers_and_the_next_read_recovers() -> None:
    outcomes = ["ok", "boom", "ok"]
    release = asyncio.Event()

    async def read() -> str:
        await release.wait()
        outcome = outcomes.pop(0)
        if outcome == "boom":
            raise ConnectionError("Redis went away")
        return outcome

    flight: SingleFlight[str] = SingleFlight(read)
    first = asyncio.ensure_future(flight.get())
    await asyncio.sleep(0)
    # These arrive while the first read runs: they share the second, which fails.
    failing = [asyncio.ensure_future(flight.get()) for _ in range(3)]
    quitter = asyncio.ensure_future(flight.get())
    await asyncio.sleep(0)
    quitter.cancel()  # a client that gives up must not cancel the read the others wait for
    release.set()
    assert await first == "ok"
    for task in failing:
        with pytest.raises(ConnectionError):
            await task
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert await flight.get() == "ok"
    assert flight.reads == 3


async def test_answers_are_live_while_other_clients_keep_reading(
    redis_url: str, tmp_path: Path
) -> None:
    """Other clients keep reads in flight all the time; after each change, the very next GET
    must show it. An answer shared from a read already running would miss it."""
    async with App(make_settings(redis_url, tmp_path), run_worker=False) as app:
        keys = Keys()
        other = aioredis.Redis.from_url(redis_url, decode_responses=True)
        # Many accounts make each read take longer, so reads overlap the changes more.
        await other.hset(
            keys.accounts, mapping={f"acct-{i}": '{"paused": false}' for i in range(3000)}
        )
        stop = asyncio.Event()

        async def poll() -> None:
            while not stop.is_set():
                assert (await app.get("/api/queue/stats")).status_code == 200

        pollers = [asyncio.ensure_future(poll()) for _ in range(20)]
        try:
            await asyncio.sleep(0.2)
            live: LiveStats = app.app.state.live_stats
            reads = live.flight.reads
            for n in range(1, 41):
                await other.hset(keys.message_counts, "D", n)  # another client's change
                data: dict[str, Any] = (await app.get("/api/queue/stats")).json()["data"]
                assert data["messages"]["sent"] == n
            assert live.flight.reads - reads < 40 * 21, "requests did not share reads"
        finally:
            stop.set()
            await asyncio.gather(*pollers)
            await other.aclose()


async def test_readonly_and_wrong_keys_on_the_fast_path(redis_url: str, tmp_path: Path) -> None:
    reader = "reader-key-0123456789"
    async with App(make_settings(redis_url, tmp_path, readonly_api_key=reader)) as app:
        ok = await app.client.get("/api/queue/stats", headers={"X-API-Key": reader})
        assert ok.status_code == 200 and ok.json()["success"] is True
        assert (await app.client.get("/api/queue/stats", headers=HEADERS)).status_code == 200
        missing = await app.client.get("/api/queue/stats", headers={"X-API-Key": ""})
        assert missing.status_code == 401
        assert missing.json() == {
            "success": False,
            "error": "Missing API key: send it in the X-API-Key header",
        }
        wrong = await app.client.get("/api/queue/stats", headers={"X-API-Key": reader + "x"})
        assert wrong.status_code == 403
        assert wrong.json() == {"success": False, "error": "Invalid API key"}
