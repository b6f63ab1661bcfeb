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


async def test_a_listing_is_one_round_trip_for_the_jobs_and_survives_a_script_flush(
    redis_url: str, tmp_path: Path
) -> None:
    async with App(make_settings(redis_url, tmp_path), run_worker=False) as app:
        ids = [await _queue(app, start=n * 100) for n in range(3)]
        s = app.app.state.services
        assert (await app.post("/api/queue/pause")).status_code == 200
        before = await s.store.redis.info("commandstats")
        views = await s.engine.views(ids)
        after = await s.store.redis.info("commandstats")
        # No SCRIPT EXISTS before the pipeline; the pause flag is read in it.
        calls = {
            k: after[k]["calls"] - before.get(k, {"calls": 0})["calls"]
            for k in after
            if k.startswith("cmdstat_")
        }
        assert calls.get("cmdstat_script|exists", 0) == 0, calls
        assert calls.get("cmdstat_hexists", 0) == 1, calls
        assert [v.id for v in views] == ids and {v.state for v in views} == {"paused"}
        # A server that lost the script (restart, SCRIPT FLUSH) is given it again.
        await s.store.redis.script_flush()
        again = await s.engine.views(ids)
        assert [(v.id, v.state) for v in again] == [(v.id, v.state) for v in views]
        assert (await app.post("/api/queue/resume")).status_code == 200
        assert {v.state for v in await s.engine.views(ids)} == {"waiting"}
