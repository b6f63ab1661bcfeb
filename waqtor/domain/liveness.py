"""When a worker counts as alive: the one rule the health route, the dashboard and the worker
(choosing how many helpers a campaign can get) all apply."""

from __future__ import annotations

#: A worker missing this many heartbeats in a row is taken for gone.
MISSED_BEATS = 3


def alive(seen_ms: int, now_ms: int, heartbeat_ms: int) -> bool:
    """Whether a worker last seen at ``seen_ms`` is alive at ``now_ms``."""
    return now_ms - seen_ms <= MISSED_BEATS * heartbeat_ms
