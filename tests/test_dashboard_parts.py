"""Dashboard parts on their own: session secret, the live hub, the rate window, error pages."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KEY, App, free_port, make_settings
from tests.dashboard_support import Browser
from waqtor.config import ConfigError, Settings
from waqtor.dashboard import live
from waqtor.dashboard.rates import MINUTE_MS, RateWindow
from waqtor.dashboard.session import load_secret


def test_session_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(api_key=KEY, data_dir=tmp_path / "data")
    first = load_secret(settings)
    assert len(first) >= 32 and load_secret(settings) == first
    path = tmp_path / "data" / "session_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(Settings(session_secret="s" * 40, data_dir=tmp_path)) == "s" * 40
    with pytest.raises(ConfigError):
        load_secret(Settings(session_secret="too-short", data_dir=tmp_path))


async def test_hub_reads_once_per_tick_for_every_page_and_sends_only_changes() -> None:
    calls = 0

    async def produce() -> dict[str, str]:
        nonlocal calls
        calls += 1
        return {"count": str(calls // 3), "same": "unchanged"}

    hub = live.Hub(tick_s=0.02)
    boxes = [hub.subscribe("topic", produce) for _ in range(5)]
    await asyncio.sleep(0.3)
    assert 8 <= calls <= 20, "one producer call per tick, however many pages are open"
    events = [box.take() for box in boxes]
    assert all(e == events[0] for e in events)
    assert events[0]["same"] == "unchanged" and events[0]["alert"] == ""
    late = hub.subscribe("topic", produce)
    assert set(late.take()) == {"count", "same", "alert"}, "a late page gets the latest at once"
    await asyncio.sleep(0.1)
    assert "same" not in boxes[0].take(), "an unchanged fragment is not sent again"
    for box in [*boxes, late]:
        hub.unsubscribe("topic", box)
    assert not hub.topics
    before = calls
    await asyncio.sleep(0.1)
    assert calls == before, "the loop stops with its last page"


async def test_hub_reports_a_failing_read_and_recovers() -> None:
    failing = True

    async def produce() -> dict[str, str]:
        if failing:
            raise ConnectionError("redis down")
        return {"x": "1"}

    hub = live.Hub(tick_s=0.02)
    box = hub.subscribe("t", produce)
    await asyncio.sleep(0.08)
    assert "cannot read Redis" in box.take()["alert"]
    failing = False
    await asyncio.sleep(0.08)
    assert box.take() == {"x": "1", "alert": ""}
    hub.unsubscribe("t", box)


class _Request:
    def __init__(self) -> None:
        self.gone = False

    async def is_disconnected(self) -> bool:
        return self.gone


async def test_stream_writes_sse_events_and_ends_when_the_page_closes() -> None:
    async def produce() -> dict[str, str]:
        return {"progress": "<p>\n50%</p>"}

    hub = live.Hub(tick_s=0.02)
    request = _Request()
    chunks: list[str] = []
    gen = live.stream(request, hub, "c", produce)  # type: ignore[arg-type]
    async for chunk in gen:
        chunks.append(chunk)
        if len(chunks) == 2:
            request.gone = True
    assert chunks[0].startswith("retry:")
    assert "event: progress\ndata: <p>\ndata: 50%</p>\n\n" in chunks[1]
    assert not hub.topics, "a closed page unsubscribes"
    ended = [c async for c in live.stream(_Request(), hub, "c", produce, lifetime_s=0.05)]  # type: ignore[arg-type]
    assert ended[0].startswith("retry:"), "a stream ends by itself; the browser reconnects"


async def test_rate_window_counts_sends_per_account_per_minute(app: App) -> None:
    s = app.app.state.services
    now = s.clock.now_ms()
    rows: list[dict[str, Any]] = [
        {"ts": now - 2 * 3600_000, "account": "a"},  # older than the window
        {"ts": now - 10 * MINUTE_MS, "account": "a"},
        {"ts": now - 10 * MINUTE_MS, "account": "b"},
        {"ts": now, "account": "a"},
    ]
    await s.store.redis.rpush(s.keys.sim_outbox, *[json.dumps(r) for r in rows])
    window = RateWindow()
    await window.update(s.simulator.store, now)
    assert window.accounts() == ["a", "b"]
    series = window.series("a", now)
    assert len(series) == 60 and sum(series) == 2 and series[-1] == 1 and series[-11] == 1
    await s.store.redis.rpush(s.keys.sim_outbox, json.dumps({"ts": now, "account": "b"}))
    await window.update(s.simulator.store, now)
    assert sum(window.series("b", now)) == 2, "only new entries are read, none twice"
    await window.update(s.simulator.store, now + 61 * MINUTE_MS)
    assert window.accounts() == [], "a minute older than an hour drops out"


async def test_redis_down_gives_an_error_page_not_a_trace(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with App(make_settings(dead, tmp_path), run_worker=False) as app, Browser(app) as b:
        # Sessions live in Redis (logout must end them), so the login says Redis is away.
        page = await b.login()
        assert page.status_code == 503 and "Redis is unavailable" in page.text
        assert "Traceback" not in page.text and "<html" in page.text
        page = await b.get("/admin/queues/jobs")  # not logged in: the login form, no trace
        assert page.status_code == 303 and page.headers["location"].startswith("/admin/login")
