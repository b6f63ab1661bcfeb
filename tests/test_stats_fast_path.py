"""``GET /api/queue/stats`` and plain ``GET /api/queue/jobs`` skip FastAPI's routing, yet answer
exactly as the routes would: same bytes, same auth, same errors, and they come back with Redis."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from starlette.types import Receive, Scope, Send

from tests.conftest import HEADERS, App, RedisServer, make_settings, recipients
from waqtor.api.fast_reads import FastReads, plain_limit


def _route_only(app: App) -> httpx.AsyncClient:
    """A client whose requests skip the fast path (and the middlewares outside it) but go
    through FastAPI's exception handlers, routing and dependencies as before."""
    layer = app.app.middleware_stack
    assert layer is not None, "the app has not served a request yet"
    while not isinstance(layer, FastReads):
        layer = layer.app  # type: ignore[attr-defined]
    below = layer.app

    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = app.app
        await below(scope, receive, send)

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=routed), base_url="http://waqtor")


async def test_same_bytes_as_the_fastapi_route(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path), run_worker=False) as app:
        sent = await app.post(
            "/api/messages/send-bulk", json={"recipients": recipients(12), "message": "Hi"}
        )
        assert sent.status_code == 200
        await app.post("/api/accounts", json={"name": "shop-1"})
        await app.post("/api/accounts/shop-1/pause")
        async with _route_only(app) as direct:
            fast = await app.get("/api/queue/stats")
            routed = await direct.get("/api/queue/stats", headers=HEADERS)
            assert fast.status_code == routed.status_code == 200
            assert fast.headers["content-type"] == routed.headers["content-type"]
            assert fast.content == routed.content
            data = fast.json()["data"]
            assert data["waiting"] == 1 and data["messages"]["pending"] == 12
            assert data["alerts"] == [
                {"account": "shop-1", "state": "paused", "reason": "paused by an operator"}
            ]
            for key in ("", "nope" * 5):
                fast = await app.client.get("/api/queue/stats", headers={"X-API-Key": key})
                routed = await direct.get("/api/queue/stats", headers={"X-API-Key": key})
                assert fast.status_code == routed.status_code
                assert fast.content == routed.content
            no_header = await app.client.get("/api/queue/stats")
            assert no_header.content == (await direct.get("/api/queue/stats")).content


async def test_job_lists_are_the_routes_bytes_and_odd_queries_go_to_fastapi(
    redis_url: str, tmp_path: Path
) -> None:
    async with App(make_settings(redis_url, tmp_path), run_worker=False) as app:
        for n in range(3):
            body = {"recipients": recipients(12, start=n * 100), "message": "Hi"}
            assert (await app.post("/api/messages/send-bulk", json=body)).status_code == 200
        queries = ["", "?limit=2", "?limit=1000", "?limit=0", "?limit=1001", "?limit=abc"]
        queries += ["?limit=02", "?limit=2&limit=3", "?limit=2&other=1", "?limit=+2", "?limit"]
        async with _route_only(app) as direct:
            for query in queries:
                fast = await app.get("/api/queue/jobs" + query)
                routed = await direct.get("/api/queue/jobs" + query, headers=HEADERS)
                assert fast.status_code == routed.status_code, query
                assert fast.content == routed.content, query
                assert fast.headers["content-type"] == routed.headers["content-type"]
            assert len((await app.get("/api/queue/jobs?limit=2")).json()["data"]["jobs"]) == 2
            for key in ("", "nope" * 5):
                fast = await app.client.get("/api/queue/jobs", headers={"X-API-Key": key})
                routed = await direct.get("/api/queue/jobs", headers={"X-API-Key": key})
                assert (fast.status_code, fast.content) == (routed.status_code, routed.content)


def test_plain_limits_only() -> None:
    assert plain_limit(b"") == 50
    assert plain_limit(b"limit=1") == 1 and plain_limit(b"limit=1000") == 1000
    for query in (b"limit=0", b"limit=1001", b"limit=01", b"limit=1&x=2", b"x=1", b"limit=1 "):
        assert plain_limit(query) is None, query


async def test_other_methods_and_paths_go_on_to_fastapi(app: App) -> None:
    post = await app.post("/api/queue/stats")
    assert post.status_code == 405 and post.json()["success"] is False
    head = await app.client.head("/api/queue/stats", headers=HEADERS)
    assert head.status_code == 405
    query = await app.get("/api/queue/stats", params={"ignored": "1"})
    assert query.status_code == 200 and query.json()["success"] is True
    slash = await app.get("/api/queue/stats/")
    assert slash.status_code in (307, 404)  # FastAPI's answer, not the fast path's


async def test_cors_still_wraps_it(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(redis_url, tmp_path, cors_origins="https://ok.example")
    async with App(settings, run_worker=False) as app:
        resp = await app.client.get(
            "/api/queue/stats", headers={**HEADERS, "Origin": "https://ok.example"}
        )
        assert resp.status_code == 200
        assert resp.headers["access-control-allow-origin"] == "https://ok.example"


async def test_503_while_redis_is_down_then_live_again(tmp_path: Path) -> None:
    server = RedisServer()
    server.start()
    try:
        async with App(make_settings(server.url, tmp_path), run_worker=False) as app:
            before = await app.get("/api/queue/stats")
            assert before.status_code == 200 and before.json()["data"]["total"] == 0
            server.stop()
            down = await app.get("/api/queue/stats")
            assert down.status_code == 503
            body = down.json()
            assert body["success"] is False
            assert body["error"].startswith(f"Redis unavailable at 127.0.0.1:{server.port}: ")
            assert "Traceback" not in down.text
            port = server.port
            server.start()  # an empty Redis: no script loaded, no data
            assert server.port == port
            deadline = time.monotonic() + 10
            resp = await app.get("/api/queue/stats")
            while resp.status_code != 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                resp = await app.get("/api/queue/stats")
            assert resp.status_code == 200, resp.text
            sent = await app.post(
                "/api/messages/send-bulk", json={"recipients": recipients(12), "message": "Hi"}
            )
            assert sent.status_code == 200
            after = (await app.get("/api/queue/stats")).json()["data"]
            assert after["waiting"] == 1 and after["messages"]["pending"] == 12
    finally:
        server.cleanup()
