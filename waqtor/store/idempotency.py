"""Stored responses of requests sent with an ``Idempotency-Key`` (24 h each)."""

from __future__ import annotations

from redis.asyncio import Redis

from waqtor.store.keys import Keys
from waqtor.store.scripts import Scripts


class IdempotencyStore:
    def __init__(self, redis: Redis, keys: Keys, scripts: Scripts) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = scripts

    async def claim(self, scoped: str, token: str, ttl_ms: int) -> bool:
        """Write ``token`` unless the key holds something; True if this caller now owns it."""
        return bool(await self.redis.set(self.keys.idempotency(scoped), token, nx=True, px=ttl_ms))

    async def release(self, scoped: str, token: str) -> None:
        """Delete the key if it still holds ``token`` (one script: never another's claim)."""
        await self.scripts["idem_release"](keys=[self.keys.idempotency(scoped)], args=[token])

    async def forget(self, scoped: str) -> None:
        await self.redis.delete(self.keys.idempotency(scoped))

    async def answer(self, scoped: str, stored: str) -> None:
        """Replace the pending token with the response, keeping the key's TTL."""
        await self.redis.set(self.keys.idempotency(scoped), stored, xx=True, keepttl=True)

    async def get(self, scoped: str) -> str | None:
        found = await self.redis.get(self.keys.idempotency(scoped))
        return None if found is None else str(found)
