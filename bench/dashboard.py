"""Dashboard render time, server side: ``python -m bench.dashboard``.

Starts its own ``redis-server`` on a free port, queues one campaign of 100,000 recipients
through the core (``campaigns.enqueue``, no worker), then marks 60 % of it sent and 1 % failed
straight in the ledger (status string, counters, per-recipient details) so the page has real
rows, counts and errors. It logs in and renders the campaign page 50 times in-process over
ASGI (no network, so the time is the server's): p50, p95, max. Target: p95 <= 150 ms.

Beside it, without targets: the page filtered by status and on a deep recipient page, one live
(SSE) tick of the campaign, a phone search through the whole campaign, and the jobs list at
100,000 jobs (synthetic bullmq job hashes), first and last page.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench._redis import RedisServer
from bench._report import RESULTS
from waqtor.campaigns import submission as campaigns
from waqtor.cli.app import create_app
from waqtor.config import Settings
from waqtor.dashboard import campaign
from waqtor.dashboard.render import Renderer
from waqtor.domain.recipients import Parsed, Recipient
from waqtor.runtime.services import Services

KEY = "bench-dashboard-key-0123456789"
RECIPIENTS = 100_000
JOBS = 100_000
RENDERS = 50
WARMUP = 5
TARGET_P95_MS = 150.0
SENT, FAILED = 60_000, 1_000


async def _mark_progress(s: Services, cid: str) -> None:
    """60 % sent, 1 % failed (a transient code, retries used up), the rest pending."""
    now = s.clock.now_ms()
    pending = RECIPIENTS - SENT - FAILED
    k = s.keys
    async with s.store.redis.pipeline(transaction=False) as pipe:
        pipe.set(k.status(cid), "D" * SENT + "F" * FAILED + "P" * pending)
        pipe.hset(k.meta(cid), mapping={"n:P": pending, "n:D": SENT, "n:F": FAILED, "cursor": SENT})
        pipe.hset(k.message_counts, mapping={"P": pending, "D": SENT, "F": FAILED})
        for start in range(0, SENT + FAILED, 5000):
            rows = {}
            for i in range(start, min(SENT + FAILED, start + 5000)):
                ts = now - (SENT + FAILED - i) * 100
                if i < SENT:
                    rows[str(i)] = json.dumps({"a": 1, "m": f"sim-{i:032x}", "ts": ts, "tD": ts})
                else:
                    detail = {"a": 4, "e": "sim_503", "r": "simulated server error"}
                    rows[str(i)] = json.dumps({**detail, "ts": ts, "tF": ts})
            pipe.hset(k.detail(cid), mapping=rows)
        await pipe.execute()


async def _synthetic_jobs(s: Services, n: int) -> None:
    """``n`` completed bullmq jobs (hash + completed set), as bullmq lays them out."""
    now = s.clock.now_ms()
    prefix = s.engine.key("").rstrip(":")
    for start in range(0, n, 10_000):
        async with s.store.redis.pipeline(transaction=False) as pipe:
            scores = {}
            for i in range(start, min(n, start + 10_000)):
                job_id = f"bench{i:08d}"
                data = {"campaignId": job_id, "account": "default", "total": 10, "message": "Hi"}
                pipe.hset(
                    f"{prefix}:{job_id}",
                    mapping={
                        "name": "campaign",
                        "data": json.dumps(data),
                        "timestamp": now - n + i,
                        "processedOn": now - n + i,
                        "finishedOn": now - n + i + 1,
                        "progress": 100,
                    },
                )
                scores[job_id] = now - n + i + 1
            pipe.zadd(f"{prefix}:completed", scores)
            await pipe.execute()


async def _login(client: httpx.AsyncClient) -> None:
    form = await client.get("/admin/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token, "no CSRF token on the login page"
    resp = await client.post("/admin/login", data={"csrf": token.group(1), "key": KEY})
    assert resp.status_code == 303, resp.text


async def _time(call: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    for _ in range(WARMUP):
        await call()
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": statistics.median(ordered), "p95": p95, "max": ordered[-1], "n": len(ordered)}


async def measure(url: str, data_dir: Path) -> dict[str, dict[str, float]]:
    settings = Settings(redis_url=url, api_key=KEY, data_dir=data_dir)
    app = create_app(settings, url, [KEY], run_worker=False)
    results: dict[str, dict[str, float]] = {}
    async with app.router.lifespan_context(app):
        s: Services = app.state.services
        people = [Recipient(f"+9665{i:08d}", {"name": f"Person {i}"}) for i in range(RECIPIENTS)]
        parsed = Parsed("Hello {name}", people, [], list(range(RECIPIENTS)))
        cid, _ = await campaigns.enqueue(s, parsed)
        await _mark_progress(s, cid)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await _login(client)
            page = f"/admin/queues/jobs/{cid}"

            def get(path: str) -> Callable[[], Awaitable[Any]]:
                async def call() -> None:
                    resp = await client.get(path)
                    assert resp.status_code == 200, resp.status_code

                return call

            results["campaign page"] = _stats(await _time(get(page), RENDERS))
            results["  filtered: failed"] = _stats(await _time(get(page + "?status=failed"), 20))
            results["  recipient page 1,000"] = _stats(await _time(get(page + "?page=1000"), 20))
            renderer = Renderer("UTC")

            async def tick() -> None:
                view = await campaign.load(s, cid)
                assert view is not None
                renderer.fragment("_progress.html", v=view)

            results["  live tick (SSE)"] = _stats(await _time(tick, 20))
            search = page + "?q=500099999"
            results["  phone search, whole list"] = _stats(await _time(get(search), 5))
            await _synthetic_jobs(s, JOBS)
            jobs = "/admin/queues/jobs?state=completed"
            results["jobs list, 100k: first page"] = _stats(await _time(get(jobs), 20))
            last = f"{jobs}&page={JOBS // 50 - 1}"
            results["jobs list, 100k: last page"] = _stats(await _time(get(last), 20))
            results["overview, 100k jobs"] = _stats(await _time(get("/admin/queues"), 20))
    return results


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        root = Path(tmp)
        with RedisServer(root) as server:
            results = asyncio.run(measure(server.url, root / "data"))
    print(f"\nDashboard, server-side render time (ms), {RECIPIENTS:,}-recipient campaign")
    print(f"{'what':32} {'p50':>8} {'p95':>8} {'max':>8} {'runs':>5}")
    for name, st in results.items():
        print(f"{name:32} {st['p50']:8.1f} {st['p95']:8.1f} {st['max']:8.1f} {int(st['n']):5d}")
    p95 = results["campaign page"]["p95"]
    met = p95 <= TARGET_P95_MS
    verdict = "met" if met else "MISSED"
    print(f"\ncampaign page p95 {p95:.1f} ms; target <= {TARGET_P95_MS:.0f} ms: {verdict}")
    RESULTS.mkdir(exist_ok=True)
    out = {"results": results, "target_p95_ms": TARGET_P95_MS, "met": met}
    (RESULTS / "dashboard.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
