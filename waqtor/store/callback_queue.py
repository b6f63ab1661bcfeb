"""The outbox of status callbacks: items by id, due and given-up sets, the delivered log."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from waqtor.store.keys import Keys
from waqtor.store.scripts import Scripts


class CallbackQueue:
    def __init__(self, redis: Redis, keys: Keys, scripts: Scripts) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = scripts

    async def enqueue(self, cb_id: str, item: str, now_ms: int) -> None:
        """Store the item (JSON) and make it due now, in one script."""
        k = self.keys
        await self.scripts["cb_enqueue"](
            keys=[k.callback_items, k.callback_due], args=[cb_id, item, now_ms]
        )

    async def claim(self, now_ms: int, lease_ms: int, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` due items, each leased for ``lease_ms``: (id, item JSON)."""
        k = self.keys
        rows = await self.scripts["cb_claim"](
            keys=[k.callback_due, k.callback_items], args=[now_ms, lease_ms, limit]
        )
        return [(str(rows[i]), str(rows[i + 1])) for i in range(0, len(rows), 2)]

    async def record(
        self,
        cb_id: str,
        outcome: str,
        now_ms: int,
        next_ms: int,
        status: int | str,
        error: str,
        keep: int,
    ) -> None:
        """One attempt's result: delivered (to the capped log), retry at ``next_ms``, or failed."""
        k = self.keys
        await self.scripts["cb_result"](
            keys=[k.callback_items, k.callback_due, k.callback_failed, k.callback_delivered],
            args=[cb_id, outcome, now_ms, next_ms, status, error, keep],
        )

    async def requeue(self, cb_id: str, now_ms: int) -> bool:
        """Make a given-up callback due again; False if there is none by that id."""
        k = self.keys
        res = await self.scripts["cb_requeue"](
            keys=[k.callback_items, k.callback_due, k.callback_failed], args=[cb_id, now_ms]
        )
        return bool(res)

    async def any_due(self) -> bool:
        return bool(await self.redis.zcard(self.keys.callback_due))

    async def delivered(self, offset: int, limit: int) -> tuple[list[str], int]:
        """A page of the delivered log (JSON summaries, newest first) and its length."""
        key = self.keys.callback_delivered
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lrange(key, offset, offset + limit - 1)
            pipe.llen(key)
            rows, total = await pipe.execute()
        return [str(r) for r in rows], int(total)

    async def page(
        self, pending: bool, offset: int, limit: int
    ) -> tuple[list[tuple[str, str | None]], int]:
        """Due items (soonest first) or given-up ones (newest first): (id, item JSON or None
        when gone) and how many there are."""
        k = self.keys
        key = k.callback_due if pending else k.callback_failed
        stop = offset + limit - 1
        ids: list[Any] = await (
            self.redis.zrange(key, offset, stop)
            if pending
            else self.redis.zrevrange(key, offset, stop)
        )
        total = int(await self.redis.zcard(key))
        raws: list[Any] = await self.redis.hmget(k.callback_items, ids) if ids else []
        return [(str(i), r) for i, r in zip(ids, raws, strict=True)], total

    async def sizes(self) -> tuple[int, int, int]:
        """(due, given up, in the delivered log)."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(k.callback_due)
            pipe.zcard(k.callback_failed)
            pipe.llen(k.callback_delivered)
            pending, failed, delivered = await pipe.execute()
        return int(pending), int(failed), int(delivered)
