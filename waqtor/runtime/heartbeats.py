"""Worker heartbeats: who is running, as the health route and the worker itself see it."""

from __future__ import annotations

import json
from typing import Any

from waqtor.runtime.services import Services


async def workers(s: Services) -> list[dict[str, Any]]:
    """Every worker's last heartbeat, with ``alive``: one seen within three heartbeats."""
    beats: dict[str, str] = await s.redis.hgetall(s.keys.workers)  # type: ignore[assignment]
    now = s.clock.now_ms()
    stale_after = 3 * s.settings.heartbeat_ms
    out: list[dict[str, Any]] = []
    for raw in beats.values():
        beat = json.loads(raw)
        beat["alive"] = now - int(beat.get("ts", 0)) <= stale_after
        out.append(beat)
    return out


async def alive(s: Services) -> int:
    return sum(1 for beat in await workers(s) if beat["alive"])
