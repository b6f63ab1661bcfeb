"""Faults that do real damage: Redis restarts, killed workers, double submissions, big lists."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.conftest import (
    HEADERS,
    KEY,
    App,
    Proc,
    RedisServer,
    env_for,
    free_port,
    make_settings,
    recipients,
    wait_for_job,
    wait_http,
)


def _serve(tmp: Path, redis_url: str, *args: str, **env: Any) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(
        ["serve", "--port", str(port), *args],
        {
            **env_for(**env),
            "REDIS_URL": redis_url,
            "API_KEY": KEY,
            "WAQTOR_DATA_DIR": str(tmp / "data"),
        },
        tmp / "serve.log",
    ).start()
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/health")
    return proc, base


def _send(base: str, n: int, start: int = 0) -> str:
    resp = httpx.post(
        base + "/api/messages/send-bulk",
        json={"recipients": recipients(n, start), "message": "Hi {name}"},
        headers=HEADERS,
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    job_id: str = resp.json()["data"]["jobId"]
    return job_id


def _outbox(base: str) -> list[dict[str, Any]]:
    resp = httpx.get(
        base + "/api/simulator/messages", params={"limit": 10000}, headers=HEADERS, timeout=10
    )
    rows: list[dict[str, Any]] = resp.json()["data"]["messages"]
    return rows


def _wait_done(base: str, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{base}/api/queue/jobs/{job_id}", headers=HEADERS, timeout=5).json()
            if last.get("data", {}).get("status") == "completed":
                return dict(last["data"])
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not completed: {last}")


def test_redis_restart_mid_campaign(tmp_path: Path) -> None:
    server = RedisServer(appendonly=True)
    server.start()
    serve, base = _serve(tmp_path, server.url, message_delay=40)
    try:
        job_id = _send(base, 60)
        deadline = time.monotonic() + 10
        while len(_outbox(base)) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop()  # SIGTERM: Redis writes its AOF and exits
        down = httpx.get(base + "/api/queue/stats", headers=HEADERS, timeout=10)
        assert down.status_code == 503
        assert down.json()["error"].startswith(f"Redis unavailable at 127.0.0.1:{server.port}")
        health = httpx.get(base + "/api/queue/health", headers=HEADERS, timeout=10)
        assert health.status_code == 503 and health.json()["healthy"] is False
        time.sleep(1.0)
        server.start()
        back = time.monotonic()
        while httpx.get(base + "/api/queue/stats", headers=HEADERS, timeout=10).status_code != 200:
            assert time.monotonic() - back < 5, "API did not reconnect within 5 s"
            time.sleep(0.1)
        job = _wait_done(base, job_id)
        per_phone = Counter(r["phone"] for r in _outbox(base))
        assert len(per_phone) == 60 and set(per_phone.values()) == {1}
        assert job["recipients"]["sent"] + job["recipients"]["unknown"] == 60
    finally:
        serve.stop()
        server.cleanup()


def test_killed_worker_is_taken_over(tmp_path: Path, redis_url: str) -> None:
    serve, base = _serve(tmp_path, redis_url, "--no-worker")
    env = {**env_for(message_delay=40), "REDIS_URL": redis_url}
    workers = [Proc(["worker"], env, tmp_path / f"w{i}.log").start() for i in range(2)]
    try:
        job_id = _send(base, 80)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        owner = None
        deadline = time.monotonic() + 10
        while owner is None and time.monotonic() < deadline:
            for raw in client.hvals("wq:workers"):
                beat = __import__("json").loads(raw)
                if job_id in beat["campaigns"]:
                    owner = beat["pid"]
            time.sleep(0.05)
        assert owner is not None
        while len(_outbox(base)) < 10:
            time.sleep(0.02)
        victim = next(w for w in workers if w.proc is not None and w.proc.pid == owner)
        victim.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        sent_at_kill = len(_outbox(base))
        while len(_outbox(base)) <= sent_at_kill + 1:
            assert time.monotonic() - killed_at < 8, "no takeover within lock + stall interval"
            time.sleep(0.05)
        job = _wait_done(base, job_id)
        per_phone = Counter(r["phone"] for r in _outbox(base))
        assert len(per_phone) == 80 and set(per_phone.values()) == {1}, "duplicate or lost"
        assert job["recipients"]["sent"] == 80  # the in-flight one was settled by lookup
    finally:
        for w in workers:
            w.stop()
        serve.stop()


async def test_idempotency_key_returns_the_same_response(app: App) -> None:
    payload = {"recipients": recipients(11), "message": "Hi {name}"}
    headers = {**HEADERS, "Idempotency-Key": "order-42"}
    first = await app.client.post("/api/messages/send-bulk", json=payload, headers=headers)
    second = await app.client.post("/api/messages/send-bulk", json=payload, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    await wait_for_job(app.get, first.json()["data"]["jobId"])
    stats = (await app.get("/api/queue/stats")).json()["data"]
    assert stats["total"] == 1 and stats["messages"]["sent"] == 11


async def test_two_hundred_concurrent_submissions(app: App) -> None:
    await app.post("/api/queue/pause")
    payload = {"recipients": recipients(11), "message": "Hi {name}"}

    async def submit(i: int) -> str:
        headers = {**HEADERS, "Idempotency-Key": f"key-{i % 20}"}
        resp = await app.client.post("/api/messages/send-bulk", json=payload, headers=headers)
        assert resp.status_code == 200, resp.text
        job_id: str = resp.json()["data"]["jobId"]
        return job_id

    ids = await asyncio.gather(*(submit(i) for i in range(200)))
    assert len(set(ids)) == 20
    stats = (await app.get("/api/queue/stats")).json()["data"]
    assert stats["total"] == 20 and stats["messages"]["pending"] == 220


async def test_idempotency_does_not_store_server_errors(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path)) as app:
        headers = {**HEADERS, "Idempotency-Key": "bad-1"}
        bad = await app.client.post(
            "/api/messages/send-bulk", json={"recipients": ["1"], "message": "x"}, headers=headers
        )
        assert bad.status_code == 400
        again = await app.client.post(
            "/api/messages/send-bulk", json={"recipients": ["1"], "message": "x"}, headers=headers
        )
        assert again.status_code == 400 and again.headers.get("Idempotent-Replayed") == "true"


async def test_one_hundred_thousand_recipients(app: App) -> None:
    await app.post("/api/queue/pause")
    payload = {"recipients": recipients(100_000), "message": "Hello {name} 👋"}
    resp = await app.post("/api/messages/send-bulk", json=payload)
    data = resp.json()["data"]
    assert resp.status_code == 200 and data["total"] == 100_000 and data["invalid"] == []
    job = (await app.get(f"/api/queue/jobs/{data['jobId']}")).json()["data"]
    assert job["recipients"]["pending"] == 100_000
    assert job["data"]["total"] == 100_000 and "recipients" not in job["data"]


async def test_unicode_rtl_emoji_and_injection_render_safely(app: App) -> None:
    resp = await app.post(
        "/api/messages/send-bulk",
        json={
            "recipients": [
                {"phone": "966501234567", "name": "أحمد", "x": "{0}"},
                {"phone": "966507654321", "name": "😀 Zoë", "x": "{__class__}"},
            ],
            "message": "مرحبا {name} — {x} {0} {a.b} 🎉",
        },
    )
    assert resp.json()["data"]["successful"] == 2
    rows = (await app.get("/api/simulator/messages")).json()["data"]["messages"]
    assert {r["text"] for r in rows} == {
        "مرحبا أحمد — {0} {0} {a.b} 🎉",
        "مرحبا 😀 Zoë — {__class__} {0} {a.b} 🎉",
    }
    bad = await app.post(
        "/api/messages/send-bulk",
        json={"recipients": ["966501234567"], "message": "{__class__}"},
    )
    assert bad.status_code == 400 and "missing variable {__class__}" in bad.text
