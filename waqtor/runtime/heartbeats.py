"""Worker heartbeats: who is running, as the health route and the worker itself see it."""

from __future__ import annotations

import json
from typing import Any, Protocol

from waqtor.domain.liveness import alive as seen_alive
from waqtor.runtime.parts import HasClock, HasHeartbeats, HasSettings


class Beats(HasSettings, HasClock, HasHeartbeats, Protocol):
    """What reading the heartbeats needs."""


async def workers(s: Beats) -> list[dict[str, Any]]:
    """Every worker's last heartbeat, with ``alive`` (``domain.liveness``)."""
    now = s.clock.now_ms()
    out: list[dict[str, Any]] = []
    for raw in (await s.heartbeats.all()).values():
        beat = json.loads(raw)
        beat["alive"] = seen_alive(int(beat.get("ts", 0)), now, s.settings.heartbeat_ms)
        out.append(beat)
    return out


async def alive(s: Beats) -> int:
    return sum(1 for beat in await workers(s) if beat["alive"])
