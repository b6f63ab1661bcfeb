"""``GET /api/queue/jobs``: concurrent requests for one limit share a read, and stay live."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import App, make_settings, recipients
from waqtor.api.live_jobs import LiveJobs


async def _queue(app: App, start: int) -> str:
    body = {"recipients": recipients(12, start=start), "message": "Hi"}
    resp = await app.post("/api/messages/send-bulk", json=body)
    assert resp.status_code == 200, resp.text
    job_id: str = resp.json()["data"]["jobId"]
    return job_id


async def test_a_new_job_is_in_the_very_next_listing(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path), run_worker=False) as app:
        stop = asyncio.Event()

        async def poll() -> None:
            while not stop.is_set():
                assert (await app.get("/api/queue/jobs", params={"limit": 5})).status_code == 200

        pollers = [asyncio.ensure_future(poll()) for _ in range(10)]
        try:
            await asyncio.sleep(0.1)
            for n in range(8):
                job_id = await _queue(app, start=n * 100)
                listing = (await app.get("/api/queue/jobs", params={"limit": 5})).json()["data"]
                assert listing["jobs"][0]["id"] == job_id
                assert listing["count"] == min(n + 1, 5)
        finally:
            stop.set()
            await asyncio.gather(*pollers)


async def test_requests_for_one_limit_share_a_read(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path), run_worker=False) as app:
        for n in range(3):
            await _queue(app, start=n * 100)
        live: LiveJobs = app.app.state.live_jobs
        answers = await asyncio.gather(
            *(app.get("/api/queue/jobs", params={"limit": limit}) for limit in [2] * 20 + [3] * 20)
        )
        assert {len(a.json()["data"]["jobs"]) for a in answers[:20]} == {2}
        assert {len(a.json()["data"]["jobs"]) for a in answers[20:]} == {3}
        assert live.reads < 40


async def test_openapi_entry_unchanged(app: App) -> None:
    spec = (await app.client.get("/openapi.json")).json()["paths"]["/api/queue/jobs"]["get"]
    schema = spec["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["type"] == "object" and schema["additionalProperties"] is True
    assert [p["name"] for p in spec["parameters"]] == ["limit", "offset"]


async def test_a_listing_is_one_script_call_for_the_jobs_and_survives_a_script_flush(
    redis_url: str, tmp_path: Path
) -> None:
    async with App(make_settings(redis_url, tmp_path), run_worker=False) as app:
        ids = [await _queue(app, start=n * 100) for n in range(3)]
        s = app.app.state.services
        assert (await app.post("/api/queue/pause")).status_code == 200
        before = await s.store.redis.info("commandstats")
        views = await s.engine.views(ids)
        after = await s.store.redis.info("commandstats")
        # No SCRIPT EXISTS before the script; the pause flag is read in it.
        calls = {
            k: after[k]["calls"] - before.get(k, {"calls": 0})["calls"]
            for k in after
            if k.startswith("cmdstat_")
        }
        assert calls.get("cmdstat_script|exists", 0) == 0, calls
        assert calls.get("cmdstat_hexists", 0) == 1, calls
        # One script call for every job's state and hash, not bullmq's getState per job.
        assert calls.get("cmdstat_evalsha", 0) == 1, calls
        assert [v.id for v in views] == ids and {v.state for v in views} == {"paused"}
        # A server that lost the script (restart, SCRIPT FLUSH) is given it again.
        await s.store.redis.script_flush()
        again = await s.engine.views(ids)
        assert [(v.id, v.state) for v in again] == [(v.id, v.state) for v in views]
        assert (await app.post("/api/queue/resume")).status_code == 200
        assert {v.state for v in await s.engine.views(ids)} == {"waiting"}


async def test_each_state_is_listed_as_bullmqs_own_get_job_state_names_it(
    redis_url: str, tmp_path: Path
) -> None:
    """``Engine.views`` reads states in its own script: for a job in each of bullmq's lists and
    sets (and in two at once, and in none), it names the state as ``Engine.state`` does from
    bullmq's ``Queue.getJobState``, with the queue running and paused."""
    async with App(make_settings(redis_url, tmp_path), run_worker=False) as app:
        engine = app.app.state.services.engine
        redis = app.app.state.services.store.redis
        queue = engine.queue

        async def add(job_id: str, **opts: int) -> str:
            await queue.add("campaign", {"campaignId": job_id}, {"jobId": job_id, **opts})
            return job_id

        async def move(job_id: str, to: str, kind: str = "zset", leave: bool = True) -> None:
            if leave:
                await redis.lrem(engine.key("wait"), 0, job_id)
            if kind == "zset":
                await redis.zadd(engine.key(to), {job_id: 1})
            else:
                await redis.lpush(engine.key(to), job_id)

        expected = {
            await add("j-waiting"): "waiting",
            await add("j-prioritized", priority=3): "waiting",
            await add("j-delayed", delay=600_000): "delayed",
            await add("j-active"): "active",
            await add("j-completed"): "completed",
            await add("j-failed"): "failed",
            await add("j-children"): "waiting-children",
            await add("j-unknown"): "unknown",
            # bullmq's paused list (older bullmq, Node's, moved a paused queue's jobs there).
            await add("j-paused-list"): "waiting",
            # In two places at once: bullmq's order decides.
            await add("j-done-and-waiting"): "completed",
            await add("j-active-and-waiting"): "active",
            await add("j-failed-and-delayed", delay=600_000): "failed",
        }
        await move("j-active", "active", "list")
        await move("j-completed", "completed")
        await move("j-failed", "failed")
        await move("j-children", "waiting-children")
        await redis.lrem(engine.key("wait"), 0, "j-unknown")
        await move("j-paused-list", "paused", "list")
        await move("j-done-and-waiting", "completed", leave=False)
        await move("j-active-and-waiting", "active", "list", leave=False)
        await move("j-failed-and-delayed", "failed", leave=False)
        # Not jobs: a key of another kind under a job's name, and an id with nothing there.
        await redis.set(engine.key("j-string"), "x")
        ids = [*expected, "j-string", "j-gone"]

        views = await engine.views(ids)
        assert [v.id for v in views] == list(expected)
        assert {v.id: v.state for v in views} == expected
        assert [v.state for v in views] == [await engine.state(i) for i in expected]

        await engine.pause()
        paused = {v.id: v.state for v in await engine.views(ids)}
        assert paused == {i: await engine.state(i) for i in expected}
        # A paused queue holds every job that has not finished: WaQtor shows it as paused.
        assert [i for i, state in paused.items() if state == "paused"] == [
            "j-waiting",
            "j-prioritized",
            "j-delayed",
            "j-paused-list",
        ]
