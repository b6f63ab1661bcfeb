"""The dashboard's snapshots: several figures read in one pipeline each, so a page or an
overview tick costs a handful of round trips however many accounts there are."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from waqtor.domain.waits import DAY_MS, HOUR_MS
from waqtor.store.keys import Keys


@dataclass(frozen=True)
class AccountFigures:
    backlog: int
    cool_until_ms: int
    #: Send times (ms) of the last hour, oldest first (empty for accounts without caps).
    hour_ms: list[int]
    #: The oldest send of the last 24 h as the claim script counts it (None: none).
    oldest_in_day_ms: int | None
    sent_in_day: int


@dataclass(frozen=True)
class CampaignWaits:
    next_retry_ms: int | None
    retries: int
    next_settle_ms: int | None
    unsettled: int
    #: Every worker's last heartbeat (ms).
    beats_ms: list[int]
    account_backlog: int
    account_next_slot_ms: int
    account_send_ms: float


@dataclass(frozen=True)
class Totals:
    #: Recipients per status code over every stored campaign.
    message_counts: dict[str, str]
    #: worker id -> its last heartbeat (JSON).
    beats: dict[str, str]
    memory: dict[str, Any]


class DashboardReads:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def accounts(self, names: list[str], now_ms: int) -> list[AccountFigures]:
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(k.backlog(name))
                pipe.get(k.cool_until_ms(name))
                pipe.zrangebyscore(k.sent_window(name), now_ms - HOUR_MS, "+inf", withscores=True)
                # The day's window as the claim script sees it: entries older than 24 h do
                # not count (it drops them before it checks).
                pipe.zrangebyscore(
                    k.sent_window(name), now_ms - DAY_MS, "+inf", start=0, num=1, withscores=True
                )
                pipe.zcount(k.sent_window(name), now_ms - DAY_MS, "+inf")
            raw = await pipe.execute()
        out = []
        for i in range(len(names)):
            backlog, cool, hour, oldest, day = raw[5 * i : 5 * i + 5]
            out.append(
                AccountFigures(
                    backlog=int(backlog or 0),
                    cool_until_ms=int(cool or 0),
                    hour_ms=[int(score) for _, score in hour],
                    oldest_in_day_ms=int(oldest[0][1]) if oldest else None,
                    sent_in_day=int(day),
                )
            )
        return out

    async def campaign_waits(self, cid: str, account: str) -> CampaignWaits:
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrange(k.retry(cid), 0, 0, withscores=True)
            pipe.zcard(k.retry(cid))
            pipe.zrange(k.unsettled(cid), 0, 0, withscores=True)
            pipe.zcard(k.unsettled(cid))
            pipe.hvals(k.workers)
            pipe.mget([k.backlog(account), k.next_slot_ms(account), k.send_ms(account)])
            next_retry, retries, next_settle, unsettled, beats, acct = await pipe.execute()
        return CampaignWaits(
            next_retry_ms=int(next_retry[0][1]) if next_retry else None,
            retries=int(retries),
            next_settle_ms=int(next_settle[0][1]) if next_settle else None,
            unsettled=int(unsettled),
            beats_ms=[int(json.loads(b).get("ts", 0)) for b in beats],
            account_backlog=int(acct[0] or 0),
            account_next_slot_ms=int(acct[1] or 0),
            account_send_ms=float(acct[2] or 0),
        )

    async def totals(self) -> Totals:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.message_counts)
            pipe.hgetall(self.keys.workers)
            pipe.info("memory")
            msgs, beats, memory = await pipe.execute()
        return Totals(msgs, beats, memory)
