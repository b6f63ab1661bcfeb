"""What status webhooks need: the indexes from a provider's message id (or our attempt id) to
a recipient, the status script, and the webhook counters."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from waqtor.store.keys import Keys
from waqtor.store.scripts import Scripts


class WebhookIndex:
    def __init__(self, redis: Redis, keys: Keys, scripts: Scripts) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = scripts

    async def lookup(
        self, message_id: str, days: range, attempt: tuple[str, str] | None
    ) -> tuple[list[Any], Any]:
        """``(<campaign id>:<index> or None for each day of ``days``, the recipient index of
        ``attempt`` (campaign id, attempt id) or None)``, in one pipeline."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hget(k.message_index(day), message_id)
            if attempt is not None:
                pipe.hget(k.attempt_index(attempt[0]), attempt[1])
            found = await pipe.execute()
        return found[: len(days)], found[len(days)] if attempt is not None else None

    async def accounts_of(self, cid: str) -> list[str | None]:
        """The campaign's ``account`` and ``accounts`` meta fields."""
        fields = ["account", "accounts"]
        found: list[str | None] = await self.redis.hmget(self.keys.meta(cid), fields)  # type: ignore[assignment]
        return found

    async def apply(
        self, cid: str, account: str, *, message_day: int, args: list[Any]
    ) -> tuple[str, str, str]:
        """One status on one recipient, its counters and its callback, in wh_status.lua. A
        status that settles an open recipient indexes its message id under ``message_day``."""
        k = self.keys
        res = await self.scripts["wh_status"](
            keys=[
                k.meta(cid),
                k.status(cid),
                k.detail(cid),
                k.inflight(cid),
                k.unsettled(cid),
                k.message_counts,
                k.backlog(account),
                k.attempt_index(cid),
                k.recipients(cid),
                k.callback_items,
                k.callback_due,
                k.webhook_stats,
                k.message_index(message_day),
            ],
            args=args,
        )
        outcome, prev, third = (str(x) for x in res)
        return outcome, prev, third

    async def count(self, name: str) -> None:
        await self.redis.hincrby(self.keys.webhook_stats, name, 1)

    async def stats(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.keys.webhook_stats)
        return {str(k): int(v) for k, v in raw.items()}
