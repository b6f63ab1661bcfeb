"""Sessions and guessing (issue 12, items 8 and 9).

The threat model is at the top of ``test_security.py``. Here: logout ends a session on the
server (a copied cookie, CSRF token and all, stops working), "log out everywhere", and the
limit on failed logins and wrong API keys per client address (429 with Retry-After, never
locking out a correct key from another address; X-Forwarded-For only from trusted proxies).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import (
    HEADERS,
    KEY,
    App,
    Proc,
    RedisServer,
    env_for,
    free_port,
    make_settings,
    wait_http,
)
from tests.dashboard_support import Browser, csrf_in
from waqtor.dashboard import live

WRONG = "wrong-key-0123456789abcdef"


# ---------------------------------------------------------------- 8. sessions end on the server
def _copy(src: Browser, dst: Browser) -> None:
    for cookie in src.client.cookies.jar:
        dst.client.cookies.set(cookie.name, cookie.value, domain=cookie.domain, path=cookie.path)
    dst.csrf = src.csrf


async def test_logout_ends_the_session_even_for_a_copied_cookie(app: App) -> None:
    async with Browser(app) as mine, Browser(app) as thief:
        assert (await mine.login()).status_code == 303
        _copy(mine, thief)
        assert (await thief.get("/admin/queues")).status_code == 200  # the copy works...
        out = await mine.post("/admin/logout")
        assert out.status_code == 303
        page = await thief.get("/admin/queues")  # ...until the owner logs out
        assert page.status_code == 303 and page.headers["location"].startswith("/admin/login")
        act = await thief.post("/admin/queues/pause")  # with its CSRF token, too
        assert act.status_code == 303 and act.headers["location"].startswith("/admin/login")
        assert (await app.get("/api/queue/stats")).json()["data"]["paused"] == 0
        sse = await thief.get("/admin/queues/events", headers={"Accept": "text/event-stream"})
        assert sse.status_code == 401


async def test_log_out_everywhere_ends_every_session_of_the_key(app: App) -> None:
    async with Browser(app) as laptop, Browser(app) as phone, Browser(app) as later:
        await laptop.login()
        await phone.login()
        assert (await phone.get("/admin/queues")).status_code == 200
        everywhere = await laptop.post("/admin/logout/everywhere")
        assert everywhere.status_code == 303
        for gone in (laptop, phone):
            assert (await gone.get("/admin/queues")).status_code == 303
        await later.login()  # a new login afterwards works
        assert (await later.get("/admin/queues")).status_code == 200


async def test_an_open_event_stream_ends_soon_after_logout(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over real HTTP (uvicorn in this loop): a stream opened with a copied cookie stops
    within a few seconds of the owner's logout instead of living on for its 5 minutes."""
    monkeypatch.setattr(live, "RECHECK_S", 0.2)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app.app, port=port, lifespan="off", log_config=None, access_log=False)
    )
    serving = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        async with Browser(app) as mine:
            await mine.login()
            cookies = {c.name: c.value for c in mine.client.cookies.jar}
            url = f"http://127.0.0.1:{port}/admin/queues/events"
            async with httpx.AsyncClient(cookies=cookies, timeout=30) as thief:
                started = time.monotonic()
                async with thief.stream("GET", url) as stream:
                    assert stream.status_code == 200
                    lines = stream.aiter_lines()
                    await anext(lines)
                    await mine.post("/admin/logout")
                    logged_out = time.monotonic()
                    async for _ in lines:  # drains until the server ends the stream
                        assert time.monotonic() - started < 20
                assert time.monotonic() - logged_out < 10
    finally:
        server.should_exit = True
        await serving


# ---------------------------------------------------------------- 9. failed attempts
@pytest.fixture
async def limited(redis_url: str, tmp_path: Path) -> AsyncIterator[App]:
    settings_ = make_settings(redis_url, tmp_path, auth_fail_limit=5, auth_fail_window_s=60)
    async with App(settings_, run_worker=False) as running:
        yield running


def _from(app: App, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app.app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://waqtor", timeout=30)


async def test_wrong_api_keys_get_429_and_a_right_key_elsewhere_still_works(limited: App) -> None:
    async with _from(limited, "10.0.0.1") as guesser, _from(limited, "10.0.0.2") as owner:
        codes = [
            (
                await guesser.get("/api/queue/stats", headers={"X-API-Key": f"{WRONG}{i}"})
            ).status_code
            for i in range(5)
        ]
        assert codes == [403, 403, 403, 403, 429]
        refused = await guesser.get("/api/queue/stats", headers={"X-API-Key": WRONG})
        assert refused.status_code == 429
        # What is left of the 60 s window the first failure opened (seconds ago): not the floor
        # of 1 s a lost window (no TTL) would give.
        assert 50 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.json()["success"] is False and "try again" in refused.json()["error"]
        # The right key from the guessing address looks the same as a wrong one: no oracle.
        right = await guesser.get("/api/queue/stats", headers=HEADERS)
        assert right.status_code == 429
        post = await guesser.post("/api/queue/pause", headers=HEADERS)
        assert post.status_code == 429
        # Everyone else, with the right key, carries on.
        assert (await owner.get("/api/queue/stats", headers=HEADERS)).status_code == 200
        assert (await owner.get("/api/queue/jobs/x", headers=HEADERS)).status_code == 404


async def test_the_failed_attempt_window_ends(redis_url: str, tmp_path: Path) -> None:
    settings_ = make_settings(redis_url, tmp_path, auth_fail_limit=2, auth_fail_window_s=1)
    async with App(settings_, run_worker=False) as app, _from(app, "10.0.0.3") as client:
        for _ in range(2):
            await client.get("/api/queue/stats", headers={"X-API-Key": WRONG})
        assert (await client.get("/api/queue/stats", headers=HEADERS)).status_code == 429
        await asyncio.sleep(2.2)  # the window (1 s) and the local memory (1 s) are over
        assert (await client.get("/api/queue/stats", headers=HEADERS)).status_code == 200


async def _login(client: httpx.AsyncClient, key: str) -> httpx.Response:
    form = await client.get("/admin/login")
    return await client.post(
        "/admin/login", data={"csrf": csrf_in(form.text), "key": key, "next": "/admin/queues"}
    )


async def test_failed_dashboard_logins_get_429(limited: App) -> None:
    async with _from(limited, "10.0.0.4") as guesser, _from(limited, "10.0.0.5") as owner:
        codes = [(await _login(guesser, f"{WRONG}{i}")).status_code for i in range(5)]
        assert codes == [401, 401, 401, 401, 429]
        again = await _login(guesser, KEY)  # the right key, from the same address
        assert again.status_code == 429 and int(again.headers["Retry-After"]) >= 1
        assert "Too many failed logins" in again.text
        assert (await _login(owner, KEY)).status_code == 303
        # Logins and API keys count together, per address.
        api = await guesser.get("/api/queue/stats", headers=HEADERS)
        assert api.status_code == 429


async def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(
    redis_url: str, tmp_path: Path
) -> None:
    settings_ = make_settings(redis_url, tmp_path, auth_fail_limit=3, trusted_proxies="10.1.0.0/16")
    async with App(settings_, run_worker=False) as app:
        async with _from(app, "10.9.9.9") as direct:  # not a proxy: its header is ignored
            for i in range(3):
                spoof = {"X-API-Key": WRONG, "X-Forwarded-For": f"198.51.100.{i}"}
                await direct.get("/api/queue/stats", headers=spoof)
            fresh = {**HEADERS, "X-Forwarded-For": "198.51.100.77"}
            assert (await direct.get("/api/queue/stats", headers=fresh)).status_code == 429
        async with _from(app, "10.1.2.3") as proxy:  # the proxy: each client counts alone
            bad = {"X-API-Key": WRONG, "X-Forwarded-For": "203.0.113.1"}
            for _ in range(3):
                await proxy.get("/api/queue/stats", headers=bad)
            blocked = {**HEADERS, "X-Forwarded-For": "203.0.113.1"}
            assert (await proxy.get("/api/queue/stats", headers=blocked)).status_code == 429
            other = {**HEADERS, "X-Forwarded-For": "203.0.113.2"}
            assert (await proxy.get("/api/queue/stats", headers=other)).status_code == 200


def test_serve_does_not_believe_x_forwarded_for_by_default(tmp_path: Path) -> None:
    """uvicorn on its own trusts X-Forwarded-For from 127.0.0.1; ``waqtor serve`` must not."""
    redis = RedisServer()
    redis.start()
    port = free_port()
    env = {
        **env_for(auth_fail_limit=3),
        "REDIS_URL": redis.url,
        "API_KEY": KEY,
        "WAQTOR_DATA_DIR": str(tmp_path / "data"),
    }
    serve = Proc(["serve", "--no-worker", "--port", str(port)], env, tmp_path / "serve.log")
    serve.start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/health")
        for i in range(3):
            headers: dict[str, Any] = {"X-API-Key": WRONG, "X-Forwarded-For": f"192.0.2.{i}"}
            httpx.get(base + "/api/queue/stats", headers=headers)
        after = httpx.get(
            base + "/api/queue/stats", headers={**HEADERS, "X-Forwarded-For": "192.0.2.99"}
        )
        assert after.status_code == 429 and "Retry-After" in after.headers
    finally:
        serve.stop()
        redis.cleanup()
