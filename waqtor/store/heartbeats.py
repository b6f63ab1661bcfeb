"""Worker heartbeats: one JSON entry per running worker, rewritten every beat."""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from waqtor.store.keys import Keys


class Heartbeats:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def beat(self, worker_id: str, beat: dict[str, Any]) -> None:
        await self.redis.hset(self.keys.workers, worker_id, json.dumps(beat))

    async def remove(self, worker_id: str) -> None:
        await self.redis.hdel(self.keys.workers, worker_id)

    async def all(self) -> dict[str, str]:
        """worker id -> its last heartbeat (JSON: id, host, pid, campaigns, ``ts`` in ms)."""
        beats: dict[str, str] = await self.redis.hgetall(self.keys.workers)  # type: ignore[assignment]
        return beats
