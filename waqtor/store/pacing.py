"""Per-account pacing held in Redis, so the gap holds across every worker process."""

from __future__ import annotations

import random

from redis.asyncio import Redis

from waqtor.store.keys import Keys
from waqtor.store.scripts import Scripts


class Pacer:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        scripts: Scripts,
        *,
        delay_ms: int,
        jitter: float,
        rng: random.Random | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = scripts
        self.delay_ms = delay_ms
        self.jitter = jitter
        self._rng = rng or random.Random()

    def gap_ms(self, delay_ms: int | None = None, jitter: float | None = None) -> int:
        """The delay plus a random extra up to ``jitter`` of it: never below the delay."""
        delay = self.delay_ms if delay_ms is None else delay_ms
        spread = self.jitter if jitter is None else jitter
        extra = self._rng.uniform(0.0, spread * delay) if spread else 0.0
        return delay + int(extra)

    async def reserve(
        self,
        account: str,
        now_ms: int,
        delay_ms: int | None = None,
        jitter: float | None = None,
        priority: bool = False,
    ) -> int:
        """Reserve the account's next send slot; returns when (ms) the caller may send.

        ``priority`` (instant mode) goes ahead of bulk campaigns' reservations."""
        slot = await self.scripts["reserve"](
            keys=[self.keys.next_slot_ms(account), self.keys.last_send_ms(account)],
            args=[now_ms, self.gap_ms(delay_ms, jitter), "1" if priority else "0"],
        )
        return int(slot)

    async def next_free_ms(self, account: str) -> int:
        raw = await self.redis.get(self.keys.next_slot_ms(account))
        return int(raw) if raw else 0

    async def publish_send_time(self, account: str, average_ms: float) -> None:
        """Share a worker's moving average of the provider's send time, for honest ETAs."""
        await self.redis.set(self.keys.send_ms(account), f"{average_ms:.2f}")

    async def observed_send_ms(self, account: str) -> float:
        raw = await self.redis.get(self.keys.send_ms(account))
        return float(raw) if raw else 0.0

    async def backlog(self, account: str) -> int:
        raw = await self.redis.get(self.keys.backlog(account))
        return max(0, int(raw)) if raw else 0

    async def request_slot(
        self, owner: str, now_ms: int, interval_ms: float, ttl_ms: int, count: int
    ) -> float:
        """Reserve ``count`` consecutive request slots under ``owner``'s messages-per-second
        limit (throttle.lua); the first one's time (ms, fractional)."""
        slot = await self.scripts["throttle"](
            keys=[self.keys.throughput_next_ms(owner)], args=[now_ms, interval_ms, ttl_ms, count]
        )
        return float(slot)

    async def strike(self, account: str, now_ms: int, cool_ms: int, max_cool_ms: int) -> int:
        """Note a ban signal (strike.lua): the account rests; how many strikes within the hour."""
        k = self.keys
        strikes, _until = await self.scripts["strike"](
            keys=[k.strikes(account), k.cool_until_ms(account)],
            args=[now_ms, cool_ms, max_cool_ms],
        )
        return int(strikes)

    async def forgive(self, account: str) -> None:
        """Forget the account's strikes and end its rest (a manual resume)."""
        await self.redis.delete(self.keys.strikes(account), self.keys.cool_until_ms(account))

    async def sent_text_times(self, account: str, digests: list[str]) -> list[float | None]:
        """When (ms) the account last sent each (phone, text) digest, None if not in 7 days."""
        found: list[float | None] = await self.redis.zmscore(self.keys.sent_texts(account), digests)
        return found
