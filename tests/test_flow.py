"""send-bulk to completed, pause, retries and provider faults, through the real worker."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tests.conftest import HEADERS, App, make_settings, recipients, wait_for_job


async def outbox(app: App) -> list[dict[str, Any]]:
    data = (await app.get("/api/simulator/messages", params={"limit": 10000})).json()["data"]
    rows: list[dict[str, Any]] = data["messages"]
    return rows


async def send(app: App, n: int, start: int = 0, **extra: Any) -> str:
    resp = await app.post(
        "/api/messages/send-bulk",
        json={"recipients": recipients(n, start), "message": "Hello {name}", **extra},
    )
    assert resp.status_code == 200, resp.text
    job_id: str = resp.json()["data"]["jobId"]
    return job_id


async def faults(app: App, **body: Any) -> None:
    resp = await app.client.put("/api/simulator/faults", json=body, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    await asyncio.sleep(0.25)  # every process's simulator re-reads its switches within 0.2 s


async def test_campaign_completes_with_each_recipient_sent_once(app: App) -> None:
    job_id = await send(app, 30)
    job = await wait_for_job(app.get, job_id)
    assert job["progress"] == 100
    assert job["recipients"]["sent"] == 30 and job["recipients"]["pending"] == 0
    rows = await outbox(app)
    phones = Counter(r["phone"] for r in rows)
    assert len(rows) == 30 and set(phones.values()) == {1}
    assert {r["jobId"] for r in rows} == {job_id}
    assert {r["text"] for r in rows} == {f"Hello Person {i}" for i in range(30)}


async def test_pause_stops_a_running_campaign(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path, message_delay=50)) as app:
        job_id = await send(app, 60)
        deadline = time.monotonic() + 10
        while len(await outbox(app)) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert (await app.post("/api/queue/pause")).status_code == 200
        await asyncio.sleep(0.3)  # at most the in-flight message lands
        frozen = len(await outbox(app))
        await asyncio.sleep(1.0)
        assert len(await outbox(app)) == frozen, "messages went out while paused"
        assert 5 <= frozen < 60
        job = (await app.get(f"/api/queue/jobs/{job_id}")).json()["data"]
        assert job["status"] == "paused"
        assert job["recipients"]["sent"] == frozen
        await app.post("/api/queue/resume")
        done = await wait_for_job(app.get, job_id)
        assert done["recipients"]["sent"] == 60
        assert set(Counter(r["phone"] for r in await outbox(app)).values()) == {1}


async def test_transient_errors_retry_then_succeed(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path, max_retries=8, retry_backoff_ms=10)) as app:
        await faults(app, transient=0.4)
        job_id = await send(app, 25)
        job = await wait_for_job(app.get, job_id)
        assert job["recipients"]["sent"] == 25
        rows = await outbox(app)
        assert len(rows) == 25  # a failed attempt never reached the outbox; no duplicates
        r = aioredis.Redis.from_url(redis_url, decode_responses=True)
        details = await r.hvals(f"wq:c:{job_id}:d")
        await r.aclose()
        assert max(json.loads(d)["a"] for d in details) > 1


async def test_permanent_error_fails_only_that_recipient(app: App) -> None:
    bad = "+966500000003"
    await faults(app, phones={bad: "permanent"})
    job_id = await send(app, 12)
    job = await wait_for_job(app.get, job_id)
    assert job["recipients"]["failed"] == 1 and job["recipients"]["sent"] == 11
    assert job["status"] == "completed"
    assert bad not in {r["phone"] for r in await outbox(app)}


async def test_transient_errors_give_up_after_max_retries(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path, max_retries=2, retry_backoff_ms=10)) as app:
        bad = "+966500000001"
        await faults(app, phones={bad: "transient"})
        job_id = await send(app, 11)
        job = await wait_for_job(app.get, job_id)
        assert job["recipients"]["failed"] == 1 and job["recipients"]["sent"] == 10
        r = aioredis.Redis.from_url(redis_url, decode_responses=True)
        detail = json.loads(await r.hget(f"wq:c:{job_id}:d", "1"))
        await r.aclose()
        assert detail["a"] == 3 and detail["e"] == "sim_503"  # 1 try + 2 retries


async def test_ambiguous_outcome_is_settled_not_resent(app: App) -> None:
    lost = "+966500000004"
    await faults(app, phones={lost: "ambiguous"})
    job_id = await send(app, 11)
    job = await wait_for_job(app.get, job_id)
    # The simulator delivered it, the answer got lost; the lookup by attempt id settles it.
    assert job["recipients"]["sent"] == 11 and job["recipients"]["unknown"] == 0
    assert [r["phone"] for r in await outbox(app)].count(lost) == 1


async def test_provider_down_fails_the_job_after_backoff(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path, max_retries=2, retry_backoff_ms=20)) as app:
        await faults(app, unavailable=1.0)
        job_id = await send(app, 11)
        job = await wait_for_job(app.get, job_id, states=("failed",))
        assert "provider unavailable" in job["failedReason"]
        assert job["attemptsMade"] == 3
        assert job["recipients"]["failed"] == 11 and job["recipients"]["pending"] == 0
        health = await app.get("/api/queue/health")
        assert health.status_code == 503 and health.json()["data"]["provider"]["ok"] is False


async def test_provider_back_before_last_attempt_resumes(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path, max_retries=5, retry_backoff_ms=200)) as app:
        await faults(app, unavailable=1.0)
        job_id = await send(app, 11)
        await asyncio.sleep(0.4)
        await faults(app)  # provider recovers
        job = await wait_for_job(app.get, job_id)
        assert job["recipients"]["sent"] == 11
        assert len(await outbox(app)) == 11


async def test_instant_transient_failure_is_queued_not_dropped(app: App) -> None:
    flaky = "+966500000001"
    await faults(app, phones={flaky: "transient"})
    resp = await app.post(
        "/api/messages/send-bulk", json={"recipients": recipients(3), "message": "Hi {name}"}
    )
    data = resp.json()["data"]
    assert resp.json()["mode"] == "instant"
    assert data["successful"] == 2
    row = next(r for r in data["results"] if r["normalizedPhone"] == flaky)
    # Not settled is not failed: no success field, counted apart, with the job to follow.
    assert "success" not in row and row["status"] == "queued"
    assert (data["failed"], data["pending"], data["jobId"]) == (0, 1, row["jobId"])
    await faults(app)
    job = await wait_for_job(app.get, row["jobId"])
    assert job["recipients"]["sent"] == 3
    assert [r["phone"] for r in await outbox(app)].count(flaky) == 1
