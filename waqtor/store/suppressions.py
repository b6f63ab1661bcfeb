"""Each account's suppression list: the numbers that opted out of its messages."""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis

from waqtor.store.keys import Keys

_BATCH = 1000  # one command per batch: a short step on the event loop each


class Suppressions:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def among(self, account: str, phones: list[str]) -> set[str]:
        """Which of ``phones`` are on the account's list."""
        key = self.keys.suppressed(account)
        found: set[str] = set()
        if len(phones) > _BATCH and not await self.redis.exists(key):
            # The usual case, no list: one round trip, not a 1,000-number command per 1,000
            # (packing those cost more than parsing the request). A number added meanwhile is
            # still caught: every claim script checks the list again.
            return found
        for start in range(0, len(phones), _BATCH):
            batch = phones[start : start + _BATCH]
            flags = await self.redis.smismember(key, batch)
            found.update(p for p, hit in zip(batch, flags, strict=True) if hit)
        return found

    async def add(self, account: str, phones: Iterable[str]) -> int:
        """Add numbers; how many were not on the list yet."""
        items = list(phones)
        added = 0
        key = self.keys.suppressed(account)
        for start in range(0, len(items), _BATCH):
            added += int(await self.redis.sadd(key, *items[start : start + _BATCH]))
        return added

    async def remove(self, account: str, phone: str) -> bool:
        """Take a number off the list; False if it was not on it."""
        return bool(await self.redis.srem(self.keys.suppressed(account), phone))

    async def page(self, account: str, cursor: int, limit: int) -> tuple[list[str], int, int]:
        """One SSCAN step: (numbers, next cursor (0 at the end), size of the whole list)."""
        key = self.keys.suppressed(account)
        nxt, phones = await self.redis.sscan(key, cursor=cursor, count=limit)
        total = await self.redis.scard(key)
        return [str(p) for p in phones], int(nxt), int(total)
