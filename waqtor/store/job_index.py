"""Campaign-level records beside the ledger: the lists of campaigns and jobs, the sets kept
apart from bullmq's (paused one by one, canceled, foreign), single fields of a campaign's meta
hash, an instant send's lease, failure traces and the pace campaigns achieved."""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from waqtor.store.keys import Keys

#: Runs of an account whose pace is kept; the ETA takes their median (one slow run on a busy
#: machine does not double the next estimate).
RUN_SAMPLES = 8


@dataclass(frozen=True)
class RunPace:
    """How an account's campaigns really ran lately (medians of ``RUN_SAMPLES`` runs)."""

    #: ms per message, all of a run's sends side by side (batches, helpers, requests).
    per_message_ms: float
    #: ms a run cost besides its sends: from the job's creation until a worker started sending
    #: it, and from its last send until the job finished.
    fixed_ms: float


class JobIndex:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    # ---- single fields of a campaign's meta hash ----
    async def meta_field(self, cid: str, name: str) -> str | None:
        found = await self.redis.hget(self.keys.meta(cid), name)
        return None if found is None else str(found)

    async def set_meta(self, cid: str, name: str, value: str) -> None:
        await self.redis.hset(self.keys.meta(cid), name, value)

    async def set_meta_once(self, cid: str, name: str, value: str) -> bool:
        """Set the field unless it is set; True if this call set it."""
        return bool(await self.redis.hsetnx(self.keys.meta(cid), name, value))

    async def drop_meta(self, cid: str, *names: str) -> None:
        await self.redis.hdel(self.keys.meta(cid), *names)

    async def meta_rows(self, ids: list[str], names: list[str]) -> list[list[Any]]:
        """``names`` of each campaign's meta hash (None where missing), in one pipeline."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.hmget(self.keys.meta(cid), names)
            return list(await pipe.execute())

    async def known(self, cid: str) -> bool:
        """Whether a campaign is stored under ``cid``."""
        return bool(await self.redis.exists(self.keys.meta(cid)))

    # ---- lists of campaigns and jobs ----
    async def list_job(self, cid: str, created_ms: int) -> None:
        """List a campaign among the queued jobs (an instant send whose job finishes it)."""
        await self.redis.zadd(self.keys.jobs, {cid: created_ms})

    async def newest_jobs(self, limit: int, offset: int = 0) -> list[str]:
        """Ids of ``limit`` jobs, newest first, from the ``offset``-th."""
        ids = await self.redis.zrevrange(self.keys.jobs, offset, offset + limit - 1)
        return [str(i) for i in ids]

    async def campaign_count(self) -> int:
        return int(await self.redis.zcard(self.keys.campaigns))

    async def newest_campaigns(self, offset: int, limit: int) -> list[tuple[str, int]]:
        """(campaign id, created ms), newest first."""
        rows = await self.redis.zrevrange(
            self.keys.campaigns, offset, offset + limit - 1, withscores=True
        )
        return [(str(row[0]), int(row[1])) for row in rows]

    async def campaigns_before(self, cutoff_ms: int) -> list[str]:
        found = await self.redis.zrangebyscore(self.keys.campaigns, "-inf", cutoff_ms)
        return [str(raw) for raw in found]

    async def clean_facts(self, ids: list[str]) -> list[tuple[Any, Any, bool]]:
        """For each campaign: its mode, when its job was found removed (or None), and whether
        an instant send's lease is alive; one pipeline."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.hmget(self.keys.meta(cid), ["mode", "orphaned"])
                pipe.exists(self.keys.instant_lease(cid))
            replies = await pipe.execute()
        return [
            (replies[2 * n][0], replies[2 * n][1], bool(replies[2 * n + 1]))
            for n in range(len(ids))
        ]

    # ---- sets kept apart from bullmq's own ----
    async def hold(self, cid: str) -> None:
        """Count a campaign paused one by one (its job waits in bullmq's delayed set)."""
        await self.redis.sadd(self.keys.paused_campaigns, cid)

    async def release(self, cid: str) -> None:
        await self.redis.srem(self.keys.paused_campaigns, cid)

    async def mark_canceled(self, cid: str, now_ms: int) -> None:
        """bullmq will call the job completed; everything we show calls it canceled."""
        await self.redis.zadd(self.keys.canceled_jobs, {cid: now_ms})

    async def mark_foreign(self, cid: str, now_ms: int) -> None:
        """A job added outside waqtor with no campaign: failed on purpose, counted apart."""
        await self.redis.zadd(self.keys.foreign_jobs, {cid: now_ms})

    def _apart(self, canceled: bool) -> str:
        return self.keys.canceled_jobs if canceled else self.keys.foreign_jobs

    async def apart_count(self, canceled: bool) -> int:
        return int(await self.redis.zcard(self._apart(canceled)))

    async def apart_ids(self, canceled: bool) -> list[str]:
        return [str(m) for m in await self.redis.zrange(self._apart(canceled), 0, -1)]

    async def apart_page(self, canceled: bool, offset: int, limit: int) -> list[str]:
        """Newest first."""
        key = self._apart(canceled)
        return [str(i) for i in await self.redis.zrevrange(key, offset, offset + limit - 1)]

    # ---- an instant send's lease ----
    async def lease_left_ms(self, cid: str) -> int:
        """How long the instant send's request holds its lease still (<= 0: not held)."""
        return int(await self.redis.pttl(self.keys.instant_lease(cid)))

    async def leased(self, cid: str) -> bool:
        return bool(await self.redis.exists(self.keys.instant_lease(cid)))

    async def renew_lease(self, cid: str, ttl_ms: int) -> None:
        await self.redis.pexpire(self.keys.instant_lease(cid), ttl_ms)

    async def drop_lease(self, cid: str) -> None:
        await self.redis.delete(self.keys.instant_lease(cid))

    # ---- failure traces, achieved throughput ----
    async def keep_trace(self, cid: str, trace: str, ttl_ms: int) -> None:
        await self.redis.set(self.keys.failure(cid), trace, px=ttl_ms)

    async def trace(self, cid: str) -> str:
        found = await self.redis.get(self.keys.failure(cid))
        return str(found) if found else ""

    async def record_run(
        self, account: str, per_message_ms: float, fixed_ms: float, ttl_ms: int
    ) -> None:
        """Keep one run's pace (``Keys.run_pace``): the last ``RUN_SAMPLES`` only."""
        key = self.keys.run_pace(account)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(key, f"{per_message_ms:.4f} {fixed_ms:.1f}")
            pipe.ltrim(key, 0, RUN_SAMPLES - 1)
            pipe.pexpire(key, ttl_ms)
            await pipe.execute()

    async def run_pace(self, account: str) -> RunPace | None:
        """The median pace of the account's last runs, if any was recorded."""
        rows = await self.redis.lrange(self.keys.run_pace(account), 0, RUN_SAMPLES - 1)
        pairs = []
        for row in rows:
            with contextlib.suppress(ValueError):
                per, fixed = (float(x) for x in str(row).split())
                pairs.append((per, fixed))
        if not pairs:
            return None
        return RunPace(
            statistics.median(p for p, _ in pairs), statistics.median(f for _, f in pairs)
        )
