"""The one-script stats read gives exactly what the old round trips gave, in every queue state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import App, make_settings, recipients
from waqtor.domain.waits import wait_reason
from waqtor.runtime.services import Services
from waqtor.store.keys import Keys
from waqtor.store.queue_stats import ENGINE_STATES

HOUR_MS = 3_600_000


async def round_trips(s: Services) -> dict[str, Any]:
    """The stats route's data as it was computed before, one round trip at a time."""
    counts = await s.engine.counts()
    held = min(counts["delayed"], int(await s.store.redis.scard(s.keys.paused_campaigns)))
    counts["delayed"] -= held
    counts["paused"] += held
    # Canceled campaigns (bullmq: completed) and jobs that were never campaigns (bullmq: failed)
    # are counted apart.
    counts["canceled"] = min(
        counts["completed"], int(await s.store.redis.zcard(s.keys.canceled_jobs))
    )
    counts["completed"] -= counts["canceled"]
    counts["foreign"] = min(counts["failed"], int(await s.store.redis.zcard(s.keys.foreign_jobs)))
    counts["failed"] -= counts["foreign"]
    counts["total"] = sum(counts.values())
    alerts: list[dict[str, Any]] = []
    now = s.clock.now_ms()
    for account in await s.accounts.all():
        if account.paused:
            alerts.append(
                {"account": account.name, "state": "paused", "reason": account.pausedReason}
            )
            continue
        cool = await s.accounts.cooling_until(account.name)
        if cool > now:
            alerts.append(
                {
                    "account": account.name,
                    "state": "cooling",
                    "until": cool,
                    "reason": wait_reason("cooling", None, account.name, cool),
                }
            )
    return {**counts, "messages": await s.ledger.global_counts(), "alerts": alerts}


async def _same(app: App) -> dict[str, Any]:
    resp = await app.get("/api/queue/stats")
    assert resp.status_code == 200
    data: dict[str, Any] = resp.json()["data"]
    assert data == await round_trips(app.app.state.services)
    return data


async def _queue(app: App, start: int, **extra: Any) -> str:
    body = {"recipients": recipients(12, start=start), "message": "Hi", **extra}
    resp = await app.post("/api/messages/send-bulk", json=body)
    assert resp.status_code == 200, resp.text
    job_id: str = resp.json()["data"]["jobId"]
    return job_id


async def test_one_read_equals_the_round_trips(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path), run_worker=False) as app:
        s: Services = app.app.state.services
        empty = await _same(app)
        assert empty["total"] == 0 and empty["alerts"] == []

        waiting = [await _queue(app, start=i * 100) for i in range(3)]
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        scheduled = await _queue(app, start=900, sendAt=later)
        data = await _same(app)
        assert (data["waiting"], data["delayed"], data["total"]) == (3, 1, 4)
        assert data["messages"]["pending"] == 48

        # A campaign paused one by one: the delayed one counts as paused, the waiting one stays.
        for job_id in (waiting[0], scheduled):
            assert (await app.post(f"/api/queue/jobs/{job_id}/pause")).status_code == 200
        data = await _same(app)
        assert (data["waiting"], data["delayed"], data["paused"]) == (3, 0, 1)

        now = s.clock.now_ms()
        for name in ("a1", "a2", "a3"):
            assert (await app.post("/api/accounts", json={"name": name})).status_code == 201
        assert (await app.post("/api/accounts/a2/pause")).status_code == 200
        await s.store.redis.set(s.keys.cool_until_ms("a1"), now + HOUR_MS)
        await s.store.redis.set(s.keys.cool_until_ms("a3"), now - 60_000)  # over: no alert
        # The default account has no hash entry until edited; its cool-down counts all the same.
        await s.store.redis.set(s.keys.cool_until_ms("default"), now + 2 * HOUR_MS)
        # A paused account's cool-down is not reported twice.
        await s.store.redis.set(s.keys.cool_until_ms("a2"), now + HOUR_MS)
        data = await _same(app)
        assert [(a["account"], a["state"]) for a in data["alerts"]] == [
            ("a1", "cooling"),
            ("a2", "paused"),
            ("default", "cooling"),
        ]
        assert data["alerts"][1]["reason"] == "paused by an operator"

        # A paused queue: bullmq keeps its jobs in wait; WaQtor calls them paused.
        assert (await app.post("/api/queue/pause")).status_code == 200
        data = await _same(app)
        assert (data["waiting"], data["paused"], data["total"]) == (0, 4, 4)
        assert (await app.post("/api/queue/resume")).status_code == 200
        assert (await _same(app))["waiting"] == 3

        await s.store.redis.hincrby(s.keys.message_counts, "D", 7)  # a count no campaign explains
        assert (await _same(app))["messages"]["sent"] == 7


def test_key_layouts_come_from_keys() -> None:
    keys = Keys(prefix="p")
    head, tail = keys.cool_until_ms_parts()
    assert head + "shop-1" + tail == keys.cool_until_ms("shop-1")
    # bullmq's layout is the engine's: the Keys of the store do not name it.
    assert not hasattr(keys, "bull_state") and not hasattr(keys, "job_lock")


async def test_bull_keys_are_bullmqs_own(app: App) -> None:
    s: Services = app.app.state.services
    shapes = s.engine.job_shapes()
    assert set(shapes.states) == set(ENGINE_STATES)
    bull = {"waiting": {"wait", "prioritized"}}
    for state, counted in shapes.states.items():
        names = bull.get(state, {state})
        assert {c.key for c in counted} == {s.engine.queue.toKey(n) for n in names}, state
    # The keys' types are bullmq's: what the script counts them as is what they are.
    assert (await app.post("/api/queue/pause")).status_code == 200
    await _queue(app, 0)
    seen = 0
    for counted in shapes.states.values():
        for c in counted:
            kind = str(await s.store.redis.type(c.key))
            assert kind in {c.kind, "none"}, (c.key, kind)
            seen += kind != "none"
    assert seen >= 1
    assert shapes.paused_flag == (s.engine.queue.toKey("meta"), "paused")
    assert s.engine.key("meta") == s.engine.queue.toKey("meta")
    # The existing layout, unchanged (deployments upgrade in place).
    assert s.engine.key("x:lock") == f"bull:{s.settings.queue_name}:x:lock"


async def test_a_marker_at_the_tail_of_the_wait_list_is_not_a_job(
    redis_url: str, tmp_path: Path
) -> None:
    async with App(make_settings(redis_url, tmp_path), run_worker=False) as app:
        s: Services = app.app.state.services
        await _queue(app, 0)
        assert (await app.get("/api/queue/stats")).json()["data"]["waiting"] == 1
        # Older bullmq left a '0:<n>' marker at the tail of its wait list.
        await s.store.redis.rpush(s.engine.key("wait"), "0:0")
        assert (await app.get("/api/queue/stats")).json()["data"]["waiting"] == 1
        # Only at the tail: once another entry is behind it, both count (as bullmq's would).
        await s.store.redis.rpush(s.engine.key("wait"), "x")
        assert (await app.get("/api/queue/stats")).json()["data"]["waiting"] == 3
