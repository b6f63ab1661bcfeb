"""Scheduling, expiry, quiet hours and the cross-campaign duplicate guard, with an injected
clock where waiting would be real."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import App, FakeClock, make_settings, recipients, wait_for_job

HOUR = 3_600_000


async def outbox(app: App) -> list[dict[str, Any]]:
    resp = await app.get("/api/simulator/messages", params={"limit": 10000})
    rows: list[dict[str, Any]] = resp.json()["data"]["messages"]
    return rows


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


async def test_send_at_delays_and_cancel_before_start(app: App) -> None:
    now = datetime.now(UTC)
    later = (now + timedelta(hours=1)).isoformat()
    resp = await app.post(
        "/api/messages/send-bulk",
        json={"recipients": recipients(5), "message": "Hi", "sendAt": later},
    )
    body = resp.json()
    assert body["mode"] == "queue" and "scheduled" in body["data"]["reason"]
    job_id = body["data"]["jobId"]
    assert (await app.get(f"/api/queue/jobs/{job_id}")).json()["data"]["status"] == "delayed"
    assert (await app.post(f"/api/queue/jobs/{job_id}/cancel")).status_code == 200
    job = await wait_for_job(app.get, job_id, states=("canceled",))
    assert job["recipients"]["canceled"] == 5 and await outbox(app) == []
    second = await app.post(
        "/api/messages/send-bulk",
        json={"recipients": recipients(12), "message": "Hi", "sendAt": later},
    )
    job_id = second.json()["data"]["jobId"]
    assert (await app.post(f"/api/queue/jobs/{job_id}/promote")).status_code == 200
    assert (await wait_for_job(app.get, job_id))["recipients"]["sent"] == 12
    naive = await app.post(
        "/api/messages/send-bulk",
        json={"recipients": recipients(2), "message": "Hi", "sendAt": "2030-01-01T10:00:00"},
    )
    assert naive.status_code == 400 and naive.json()["error"].startswith("sendAt")


async def test_expiry_with_injected_clock(redis_url: str, tmp_path: Path) -> None:
    clock = FakeClock()
    async with App(make_settings(redis_url, tmp_path), clock=clock) as app:
        await app.post("/api/queue/pause")
        resp = await app.post(
            "/api/messages/send-bulk",
            json={"recipients": recipients(15), "message": "Flash sale", "ttl": 3600},
        )
        job_id = resp.json()["data"]["jobId"]
        clock.advance(2 * HOUR)  # an outage longer than the campaign's life
        await app.post("/api/queue/resume")
        job = await wait_for_job(app.get, job_id)
        assert job["recipients"]["expired"] == 15 and job["recipients"]["sent"] == 0
        assert await outbox(app) == []
        past = await app.post(
            "/api/messages/send-bulk",
            json={
                "recipients": recipients(12),
                "message": "x",
                "validUntil": iso(clock.now_ms() - 1000),
            },
        )
        assert past.status_code == 400 and past.json()["error"].startswith("validUntil")


async def test_quiet_hours_in_two_time_zones(redis_url: str, tmp_path: Path) -> None:
    clock = FakeClock()
    evening = int(datetime(2026, 12, 1, 19, 0, tzinfo=UTC).timestamp() * 1000)
    clock.advance(evening - clock.now_ms())  # 22:00 in Riyadh, 19:00 in London
    saudi = [f"9665{i:08d}" for i in range(5)]
    british = [f"4474001234{i:02d}" for i in range(5)]
    async with App(make_settings(redis_url, tmp_path), clock=clock) as app:
        resp = await app.post(
            "/api/messages/send-bulk",
            json={
                "recipients": saudi + british,
                "message": "Hello",
                "quietHours": {"start": "21:00", "end": "09:00", "timezone": "Europe/London"},
            },
        )
        job_id = resp.json()["data"]["jobId"]
        job = await wait_for_job(app.get, job_id, states=("delayed",))
        sent = {r["phone"] for r in await outbox(app)}
        assert sent == {"+" + p for p in british}  # London is awake; Riyadh is asleep
        assert job["recipients"]["retry"] == 5
        deferred = (
            await app.get(f"/api/queue/jobs/{job_id}/recipients", params={"status": "retry"})
        ).json()["data"]["recipients"]
        assert {r["errorCode"] for r in deferred} == {"quiet_hours"}
        assert all(r["attempts"] == 0 for r in deferred)  # a deferral is not an attempt
        clock.advance(11 * HOUR)  # 09:00 in Riyadh
        await app.post(f"/api/queue/jobs/{job_id}/promote")
        job = await wait_for_job(app.get, job_id)
        assert job["recipients"]["sent"] == 10
        assert set(Counter(r["phone"] for r in await outbox(app)).values()) == {1}


async def test_duplicate_guard_across_campaigns(app: App) -> None:
    payload = {"recipients": recipients(11), "message": "Sale for {name}"}
    first = (await app.post("/api/messages/send-bulk", json=payload)).json()["data"]["jobId"]
    await wait_for_job(app.get, first)
    guarded = await app.post("/api/messages/send-bulk", json={**payload, "dedupeHours": 24})
    job = await wait_for_job(app.get, guarded.json()["data"]["jobId"])
    assert job["recipients"]["skipped"] == 11 and job["recipients"]["sent"] == 0
    other = await app.post(
        "/api/messages/send-bulk",
        json={"recipients": recipients(11), "message": "New stock, {name}", "dedupeHours": 24},
    )
    job = await wait_for_job(app.get, other.json()["data"]["jobId"])
    assert job["recipients"]["sent"] == 11
    assert len(await outbox(app)) == 22


async def test_sending_window(redis_url: str, tmp_path: Path) -> None:
    clock = FakeClock()
    night = int(datetime(2026, 12, 1, 22, 0, tzinfo=UTC).timestamp() * 1000)
    clock.advance(night - clock.now_ms())
    async with App(make_settings(redis_url, tmp_path), clock=clock) as app:
        resp = await app.post(
            "/api/messages/send-bulk",
            json={
                "recipients": recipients(12),
                "message": "Hi",
                "window": {"start": "09:00", "end": "18:00", "timezone": "UTC"},
            },
        )
        job_id = resp.json()["data"]["jobId"]
        job = await wait_for_job(app.get, job_id, states=("delayed",))
        assert "outside the sending window 09:00-18:00" in job["waitingFor"]
        assert await outbox(app) == []
        clock.advance(HOUR * 17 + 59 * 60_000)  # 17:59: one minute of window left
        await app.post(f"/api/queue/jobs/{job_id}/promote")
        await asyncio.sleep(0.5)
        stamps = sorted(r["ts"] for r in await outbox(app))
        assert 0 < len(stamps) < 12  # spread over the minute left, not all at once


async def test_dry_run_reports_cap_waits_and_quiet_deferrals(
    redis_url: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    evening = int(datetime(2026, 12, 1, 19, 0, tzinfo=UTC).timestamp() * 1000)
    clock.advance(evening - clock.now_ms())  # 22:00 in Riyadh, 19:00 in London
    async with App(make_settings(redis_url, tmp_path), clock=clock) as app:
        await app.post("/api/accounts", json={"name": "small", "tier": "new", "warmup": False})
        await app.post("/api/accounts", json={"name": "big", "tier": None, "warmup": False})
        phones = [f"9665{i:08d}" for i in range(40)] + [f"4474001234{i:02d}" for i in range(40)]
        resp = await app.post(
            "/api/messages/preview",
            json={
                "recipients": phones,
                "message": "Hello",
                "accounts": ["small", "big"],
                "quietHours": {"start": "21:00", "end": "09:00", "timezone": "Europe/London"},
            },
        )
        plan = resp.json()["data"]["schedule"]
        assert plan["small"]["recipients"] == 40 and plan["big"]["recipients"] == 40
        assert "20/hour" in plan["small"]["capWait"] and plan["big"]["capWait"] is None
        assert plan["small"]["quietHoursDeferred"] == 20  # its Saudi half, asleep at 22:00
        assert plan["big"]["quietHoursDeferred"] == 20
        assert plan["small"]["estimatedMs"] >= HOUR  # the second 20 wait for the next hour
