"""What ``/metrics`` reads from Redis at scrape time, besides the queue figures
(``queue_stats``): per account, the callback outbox, webhook counters and worker heartbeats,
all in one pipelined round trip."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from waqtor.store.keys import Keys

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class AccountFigures:
    cooling_until_ms: int
    backlog: int
    sent_last_hour: int
    sent_last_day: int
    strikes: int


@dataclass(frozen=True)
class ScrapeFigures:
    accounts: dict[str, AccountFigures]
    callbacks_pending: int
    callbacks_failed: int
    callbacks_recently_delivered: int
    #: Status-webhook counters (received, applied, duplicate, ...).
    webhooks: dict[str, int]
    #: Each worker's last heartbeat time (ms).
    heartbeats_ms: list[int]


def _int(raw: Any) -> int:
    try:
        return int(raw or 0)
    except (TypeError, ValueError):
        return 0


class ScrapeReader:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def read(self, accounts: list[str], now_ms: int) -> ScrapeFigures:
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in accounts:
                pipe.get(k.cool_until_ms(name))
                pipe.get(k.backlog(name))
                pipe.zcount(k.sent_window(name), now_ms - HOUR_MS, "+inf")
                pipe.zcount(k.sent_window(name), now_ms - DAY_MS, "+inf")
                pipe.get(k.strikes(name))
            pipe.zcard(k.callback_due)
            pipe.zcard(k.callback_failed)
            pipe.llen(k.callback_delivered)
            pipe.hgetall(k.webhook_stats)
            pipe.hgetall(k.workers)
            raw = await pipe.execute()
        per = {
            name: AccountFigures(*(_int(v) for v in raw[i * 5 : i * 5 + 5]))
            for i, name in enumerate(accounts)
        }
        due, failed, delivered, hooks, beats = raw[len(accounts) * 5 :]
        heartbeats = []
        for value in beats.values():
            try:
                heartbeats.append(_int(json.loads(value).get("ts")))
            except (ValueError, AttributeError):
                continue
        return ScrapeFigures(
            accounts=per,
            callbacks_pending=_int(due),
            callbacks_failed=_int(failed),
            callbacks_recently_delivered=_int(delivered),
            webhooks={str(name): _int(n) for name, n in hooks.items()},
            heartbeats_ms=heartbeats,
        )
