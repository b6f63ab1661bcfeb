"""Real Redis (a redis-server per test session, on a free port, in a temp dir), real HTTP."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from bench._redis_child import RedisChild
from bench._redis_child import free_port as free_port  # re-exported for the tests
from tests.fake_cloud_api import APP_SECRET, FakeCloudApi

# A test about to time out also prints its event loop's tasks (pytest-timeout prints threads).
from tests.timeout_tasks import pytest_timeout_cancel_timer as pytest_timeout_cancel_timer
from tests.timeout_tasks import pytest_timeout_set_timer as pytest_timeout_set_timer
from waqtor.cli.app import create_app
from waqtor.config import Settings
from waqtor.domain.clock import SystemClock

KEY = "test-key-0123456789abcdef"
HEADERS = {"X-API-Key": KEY}

# Fast but realistic timings for tests: short locks so crashes are detected quickly.
FAST = {
    "message_delay": 0,
    "message_jitter": 0.0,
    "retry_backoff_ms": 50,
    "lock_duration_ms": 2000,
    "stalled_interval_ms": 1000,
    "send_lease_ms": 1000,
    "heartbeat_ms": 500,
    "provider_timeout_ms": 3000,
    # The fake receivers listen on 127.0.0.1 (tests/test_callbacks.py checks the refusal).
    "callback_allow_private": True,
}


class RedisServer(RedisChild):
    """A throwaway redis-server; tests that restart or kill Redis use their own instance."""

    def __init__(self, appendonly: bool = False) -> None:
        super().__init__(
            Path(tempfile.mkdtemp(prefix="wq-redis-")), appendonly=appendonly, fsync="always"
        )

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


#: Webhook verify token used with the fake Cloud API.
VERIFY = "verify-token-0123456789"


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeCloudApi]:
    """A fake WhatsApp Cloud API (real HTTP, Meta's wire format), one per test module (its
    connection count is read by throughput tests)."""
    server = FakeCloudApi().start()
    yield server
    server.stop()


@pytest.fixture
def fake(fake_server: FakeCloudApi) -> FakeCloudApi:
    fake_server.reset()
    return fake_server


def cloud_settings(redis_url: str, tmp_path: Path, fake: FakeCloudApi, **kw: Any) -> Settings:
    """Settings for an app whose Cloud API accounts talk to ``fake``, webhooks configured."""
    values: dict[str, Any] = {
        "cloud_api_base_url": fake.url,
        "whatsapp_verify_token": VERIFY,
        "whatsapp_app_secret": APP_SECRET,
        "instant_threshold": 0,
        **kw,
    }
    return make_settings(redis_url, tmp_path, **values)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


def make_settings(redis_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {**FAST, **overrides}
    return Settings(redis_url=redis_url, api_key=KEY, data_dir=tmp_path / "data", **values)


class App:
    """The ASGI app with its lifespan running (worker included), and an HTTP client."""

    def __init__(self, settings: Settings, run_worker: bool = True, clock: Any = None) -> None:
        self.settings = settings
        self.app = create_app(
            settings, settings.redis_url or "", [KEY], run_worker=run_worker, clock=clock
        )
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://waqtor", timeout=60
        )
        self._ctx: Any = None

    async def __aenter__(self) -> App:
        self._ctx = self.app.router.lifespan_context(self.app)
        await self._ctx.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self._ctx.__aexit__(None, None, None)

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.get(path, headers=HEADERS, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.post(path, headers=HEADERS, **kw)


@pytest.fixture
async def app(redis_url: str, tmp_path: Path) -> AsyncIterator[App]:
    async with App(make_settings(redis_url, tmp_path)) as running:
        yield running


def recipients(n: int, start: int = 0) -> list[dict[str, str]]:
    """n distinct valid Saudi mobile numbers with a name each."""
    return [{"phone": f"9665{start + i:08d}", "name": f"Person {start + i}"} for i in range(n)]


async def wait_for_job(
    get: Any, job_id: str, states: tuple[str, ...] = ("completed",), timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = await get(f"/api/queue/jobs/{job_id}")
        if resp.status_code == 200:
            last = resp.json()["data"]
            if last["status"] in states:
                return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {states}; last seen {last}")


class Proc:
    """A real ``waqtor`` process (serve or worker) with its own environment."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        inherited = {
            k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDIS_HOST", "API_KEY")
        }
        self.env = {**inherited, **env}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "waqtor", *self.args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.log.parent,
        )
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def env_for(**values: Any) -> dict[str, str]:
    merged = {**FAST, **values}
    return {k.upper(): str(v) for k, v in merged.items()}


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


class FakeClock(SystemClock):
    """Real time plus an offset the test moves: caps and windows without waiting an hour."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return super().now_ms() + self.offset_ms

    def advance(self, ms: int) -> None:
        self.offset_ms += ms
