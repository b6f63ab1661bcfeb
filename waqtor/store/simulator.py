"""The simulator's outbox, attempts and fault switches: shared by every process through Redis."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from waqtor.store.keys import Keys
from waqtor.store.scripts import source


class SimulatorStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._accept = redis.register_script(source("sim_accept"))
        self._lookup = redis.register_script(source("sim_lookup"))

    async def faults(self) -> dict[str, str]:
        """The fault switches as stored (``FAULT_CLASSES`` rates, ``latency_ms``, ...)."""
        raw: dict[str, str] = await self.redis.hgetall(self.keys.sim_faults)  # type: ignore[assignment]
        return raw

    async def set_faults(self, mapping: dict[str, str]) -> None:
        """Replace every switch at once."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.sim_faults)
            if mapping:
                pipe.hset(self.keys.sim_faults, mapping=mapping)  # type: ignore[arg-type]
            await pipe.execute()

    async def accept(self, fence: str, messages: list[tuple[str, str, bytes]]) -> list[str]:
        """One script (sim_accept.lua): each attempt lands at most once, and never after a
        lookup fenced it. ``messages``: (attempt id, message id, outbox entry); one reply
        each, the message id recorded or ``fence``."""
        ids = await self._accept(
            keys=[self.keys.sim_outbox, self.keys.sim_attempts],
            args=[
                fence,
                "\n".join(a for a, _, _ in messages),
                "\n".join(m for _, m, _ in messages),
                b"\n".join(e for _, _, e in messages),
            ],
        )
        return [str(found) for found in ids]

    async def lookup(self, attempt_id: str, fence: str) -> str | None:
        """The attempt's message id, or None; an unknown attempt is fenced in the same step."""
        found = await self._lookup(keys=[self.keys.sim_attempts], args=[attempt_id, fence])
        return str(found) if found else None

    async def outbox(self, start: int, limit: int) -> tuple[list[str], int]:
        """Up to ``limit`` raw outbox entries from ``start``, and the outbox's length."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lrange(self.keys.sim_outbox, start, start + limit - 1)
            pipe.llen(self.keys.sim_outbox)
            rows, total = await pipe.execute()
        return [str(r) for r in rows], int(total)

    async def outbox_length(self) -> int:
        return int(await self.redis.llen(self.keys.sim_outbox))

    async def outbox_range(self, start: int, stop: int) -> list[Any]:
        """Raw outbox entries ``start..stop`` (inclusive, negative from the end)."""
        return list(await self.redis.lrange(self.keys.sim_outbox, start, stop))
