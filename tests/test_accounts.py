"""Sender accounts: tiers, warm-up, caps with an injected clock, fairness, the breaker."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tests.conftest import HEADERS, App, FakeClock, make_settings, recipients, wait_for_job
from waqtor.domain.accounts import Account, Tier, effective_caps
from waqtor.domain.eta import estimate_capped_ms

HOUR = 3_600_000


def test_tier_caps_and_warmup() -> None:
    today = date(2026, 11, 29)
    fresh = Account(name="a", tier=Tier.NEW, startDate=today)
    caps = effective_caps(fresh, today, 0)
    assert (caps.hourly, caps.daily, caps.warming) == (10, 10, True)
    later = Account(name="a", tier=Tier.REGULAR, startDate=today - timedelta(days=5))
    caps = effective_caps(later, today, 0)
    assert caps.daily == 125 and caps.hourly == 50 and caps.warming  # 50 * 1.2**5 = 124.4
    grown = Account(name="a", tier=Tier.TRUSTED, startDate=today - timedelta(days=60))
    assert effective_caps(grown, today, 0).daily == 1000
    assert not effective_caps(grown, today, 0).warming
    no_warmup = Account(name="a", tier=Tier.NEW, warmup=False, startDate=today)
    assert (
        effective_caps(no_warmup, today, 0).hourly,
        effective_caps(no_warmup, today, 0).daily,
    ) == (20, 50)
    business = Account(name="b", tier=Tier.BUSINESS, metaDailyLimit=1000, warmup=False)
    assert (
        effective_caps(business, today, 0).hourly,
        effective_caps(business, today, 0).daily,
    ) == (None, 1000)
    custom = Account(name="c", tier=Tier.NEW, hourlyCap=5, dailyCap=500, warmup=False)
    assert (effective_caps(custom, today, 0).hourly, effective_caps(custom, today, 0).daily) == (
        5,
        500,
    )
    reduced = Account(name="d", tier=Tier.NEW, warmup=False, reducedUntilMs=10)
    assert effective_caps(reduced, today, 5).hourly == 10


def test_capped_eta_waits_for_windows() -> None:
    # 45 messages at 20/hour: two full hours of waiting, then 5 more.
    ms = estimate_capped_ms(45, 1000, hourly=20, daily=None)
    assert 2 * HOUR <= ms < 2 * HOUR + 10_000
    assert estimate_capped_ms(45, 1000) == 45_000
    # The daily cap holds back past the hourly one.
    assert estimate_capped_ms(60, 1000, hourly=50, daily=50) >= 24 * HOUR


async def test_accounts_crud(app: App) -> None:
    created = await app.post(
        "/api/accounts", json={"name": "shop-1", "tier": "regular", "delayMs": 3000}
    )
    assert created.status_code == 201
    body = created.json()["data"]
    assert body["tier"] == "regular" and body["startDate"] == date.today().isoformat()
    assert body["today"]["daily"] == 50 and body["today"]["warmingUp"] is True
    dup = await app.post("/api/accounts", json={"name": "shop-1"})
    assert dup.status_code == 409
    bad = await app.post("/api/accounts", json={"name": "x", "tier": "gold"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("tier")
    patched = await app.client.patch("/api/accounts/shop-1", json={"hourlyCap": 7}, headers=HEADERS)
    assert patched.json()["data"]["today"]["hourly"] == 7
    listing = (await app.get("/api/accounts")).json()["data"]
    assert [a["name"] for a in listing["accounts"]] == ["default", "shop-1"]
    assert listing["accounts"][0]["today"]["hourly"] is None  # the default has no caps
    assert (await app.get("/api/accounts/nope")).status_code == 404
    assert (await app.client.delete("/api/accounts/default", headers=HEADERS)).status_code == 409
    assert (await app.client.delete("/api/accounts/shop-1", headers=HEADERS)).status_code == 200
    unknown = await app.post(
        "/api/messages/send-bulk",
        json={"recipients": ["966501234567"], "message": "x", "account": "shop-1"},
    )
    assert unknown.status_code == 400 and unknown.json()["error"].startswith("account")


async def test_hourly_cap_with_injected_clock(redis_url: str, tmp_path: Path) -> None:
    clock = FakeClock()
    async with App(make_settings(redis_url, tmp_path), clock=clock) as app:
        await app.post(
            "/api/accounts",
            json={"name": "capped", "tier": "new", "hourlyCap": 4, "warmup": False},
        )
        resp = await app.post(
            "/api/messages/send-bulk",
            json={"recipients": recipients(11), "message": "Hi {name}", "account": "capped"},
        )
        data = resp.json()["data"]
        assert "hourly" in data["limitedBy"] or "4/hour" in data["limitedBy"]
        assert data["estimatedMs"] >= 2 * HOUR
        job_id = data["jobId"]
        r = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            for window in range(3):
                job = await wait_for_job(app.get, job_id, states=("delayed", "completed"))
                if job["status"] == "completed":
                    break
                assert "waiting for the hourly cap of account capped" in job["waitingFor"]
                sent = job["recipients"]["sent"]
                assert sent == 4 * (window + 1)
                clock.advance(HOUR)
                # bullmq's delay runs on real time; the window reopened on the injected one.
                await app.post(f"/api/queue/jobs/{job_id}/promote")
            job = await wait_for_job(app.get, job_id)
            assert job["recipients"]["sent"] == 11
            stamps = sorted(
                int(s) for _, s in await r.zrange("wq:acct:capped:sent", 0, -1, withscores=True)
            )
        finally:
            await r.aclose()
        assert len(stamps) == 11
        for i, start in enumerate(stamps):
            in_hour = [t for t in stamps[i:] if t < start + HOUR]
            assert len(in_hour) <= 4, "hourly cap exceeded"


async def test_instant_send_over_the_cap_is_queued(app: App) -> None:
    await app.post(
        "/api/accounts", json={"name": "tiny", "tier": "new", "hourlyCap": 2, "warmup": False}
    )
    resp = await app.post(
        "/api/messages/send-bulk",
        json={"recipients": recipients(3), "message": "Hi", "account": "tiny"},
    )
    body = resp.json()
    assert body["mode"] == "queue" and "hourly cap" in body["data"]["reason"]


async def test_three_campaigns_on_one_account_interleave(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path, message_delay=30)) as app:
        await app.post("/api/queue/pause")
        ids = []
        for c in range(3):
            resp = await app.post(
                "/api/messages/send-bulk",
                json={"recipients": recipients(12, c * 100), "message": "Hi"},
            )
            ids.append(resp.json()["data"]["jobId"])
        await app.post("/api/queue/resume")
        for job_id in ids:
            await wait_for_job(app.get, job_id)
        rows = (await app.get("/api/simulator/messages", params={"limit": 100})).json()["data"]
        order = [m["jobId"] for m in sorted(rows["messages"], key=lambda m: m["ts"])]
        first = order[:18]
        assert all(first.count(job_id) >= 4 for job_id in ids), first
        switches = sum(1 for a, b in itertools.pairwise(order) if a != b)
        assert switches >= 20  # round-robin, not one campaign after the other (2 switches)


async def test_breaker_trips_on_a_spam_storm(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(redis_url, tmp_path, breaker_cooldown_ms=50, max_retries=0)
    async with App(settings) as app:
        await app.post("/api/accounts", json={"name": "hot", "tier": "trusted", "warmup": False})
        resp = await app.client.put("/api/simulator/faults", json={"spam": 1.0}, headers=HEADERS)
        assert resp.status_code == 200
        await asyncio.sleep(0.25)
        send = await app.post(
            "/api/messages/send-bulk",
            json={"recipients": recipients(20), "message": "Hi {name}", "account": "hot"},
        )
        job_id = send.json()["data"]["jobId"]
        deadline = time.monotonic() + 15
        account: dict[str, Any] = {}
        while time.monotonic() < deadline:
            account = (await app.get("/api/accounts/hot")).json()["data"]
            if account["paused"]:
                break
            await asyncio.sleep(0.05)
        assert account["paused"] is True and account["pausedReason"].startswith("breaker")
        job = await wait_for_job(app.get, job_id, states=("delayed",))
        assert "paused" in job["waitingFor"]
        failed = job["recipients"]["failed"]
        assert failed == 3  # three strikes, each after a rest, then the account stops
        stats = (await app.get("/api/queue/stats")).json()["data"]
        assert stats["alerts"][0]["account"] == "hot" and stats["alerts"][0]["state"] == "paused"
        health = (await app.get("/api/queue/health")).json()["data"]
        assert health["alerts"][0]["account"] == "hot"
        await app.client.put("/api/simulator/faults", json={}, headers=HEADERS)
        resumed = (await app.post("/api/accounts/hot/resume")).json()["data"]
        assert resumed["paused"] is False and resumed["today"]["reduced"] is True
        assert resumed["today"]["hourly"] == 50  # half of the trusted tier's 100


async def test_spread_over_accounts_respects_each_cap(redis_url: str, tmp_path: Path) -> None:
    clock = FakeClock()
    async with App(make_settings(redis_url, tmp_path), clock=clock) as app:
        for name in ("a1", "a2", "a3", "a4"):
            await app.post(
                "/api/accounts",
                json={"name": name, "tier": "new", "hourlyCap": 3, "warmup": False},
            )
        await app.post("/api/accounts/a4/pause")
        resp = await app.post(
            "/api/messages/send-bulk",
            json={
                "recipients": recipients(20),
                "message": "Hi {name}",
                "accounts": ["a1", "a2", "a3", "a4"],
            },
        )
        data = resp.json()["data"]
        assert data["accounts"] == ["a1", "a2", "a3"]
        assert data["skippedAccounts"][0]["account"] == "a4"
        job_id = data["jobId"]
        for window in range(3):
            job = await wait_for_job(app.get, job_id, states=("delayed", "completed"))
            if job["status"] == "completed":
                break
            assert job["recipients"]["sent"] == 9 * (window + 1)  # 3 per account per hour
            clock.advance(HOUR)
            await app.post(f"/api/queue/jobs/{job_id}/promote")
        job = await wait_for_job(app.get, job_id)
        assert job["recipients"]["sent"] == 20
        rows = (await app.get("/api/simulator/messages", params={"limit": 100})).json()["data"]
        sender_of = {m["phone"]: m["account"] for m in rows["messages"]}
        for i in range(20):
            assert sender_of[f"+9665{i:08d}"] == ("a1", "a2", "a3")[i % 3]
        for name in ("a1", "a2", "a3"):
            today = (await app.get(f"/api/accounts/{name}")).json()["data"]["today"]
            assert today["sentLast24h"] == {"a1": 7, "a2": 7, "a3": 6}[name]
            assert today["backlog"] == 0


async def test_instant_goes_ahead_of_bulk(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path, message_delay=100)) as app:
        bulk = await app.post(
            "/api/messages/send-bulk", json={"recipients": recipients(40), "message": "Bulk"}
        )
        job_id = bulk.json()["data"]["jobId"]
        await asyncio.sleep(0.5)
        started = time.monotonic()
        urgent = await app.post(
            "/api/messages/send-bulk",
            json={"recipients": ["966509999999"], "message": "Your code is 1234"},
        )
        took = time.monotonic() - started
        assert urgent.json()["mode"] == "instant" and urgent.json()["data"]["successful"] == 1
        assert took < 0.6, f"instant send waited {took:.2f}s behind the bulk campaign"
        job = (await app.get(f"/api/queue/jobs/{job_id}")).json()["data"]
        assert job["status"] == "active"  # the bulk campaign was still running
        rows = (await app.get("/api/simulator/messages", params={"limit": 100})).json()["data"]
        stamps = sorted(m["ts"] for m in rows["messages"])
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert min(gaps) >= 90  # and the account's gap still held around it
