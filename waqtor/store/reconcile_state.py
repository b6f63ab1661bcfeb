"""The reconciler's records: its lock, the campaigns whose job went missing, its counters and
log, and the reads and fixes of a pass (``waqtor.sending.reconcile`` decides what to do)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from waqtor.store.keys import Keys
from waqtor.store.scripts import Scripts


class ReconcileState:
    def __init__(
        self, redis: Redis, keys: Keys, scripts: Scripts, bull_key: Callable[[str], str]
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = scripts
        #: Names bullmq's keys (``Engine.key``): the scan checks that each job's hash exists.
        self.bull_key = bull_key

    async def take_turn(self, owner: str, hold_ms: int) -> bool:
        """The lock of this interval's pass; False if another process holds it."""
        return bool(await self.redis.set(self.keys.reconcile_lock, owner, nx=True, px=hold_ms))

    async def scan(self, start: int, chunk: int) -> tuple[list[str], list[str], list[Any], int]:
        """One chunk of reconcile_scan.lua: (campaigns whose job is missing, campaigns noted
        missing whose job is back, flat [account, open recipients, ...], campaigns read)."""
        k = self.keys
        head, _ = k.meta_parts()
        sample = "\0"
        status_tail = k.status(sample)[len(k.meta(sample)) :]
        lease_tail = k.instant_lease(sample)[len(k.meta(sample)) :]
        gone, returned, flat, read = await self.scripts["reconcile_scan"](
            keys=[k.campaigns, k.jobs, k.reconcile_missing],
            args=[start, chunk, head, self.bull_key(""), status_tail, lease_tail],
        )
        return [str(c) for c in gone], [str(c) for c in returned], list(flat), int(read)

    async def missing_since(self, cid: str, now_ms: int) -> int:
        """When (ms) the campaign's job was first seen missing (now, if this is the first)."""
        await self.redis.hsetnx(self.keys.reconcile_missing, cid, now_ms)
        return int(await self.redis.hget(self.keys.reconcile_missing, cid) or now_ms)

    async def found_again(self, *cids: str) -> None:
        if cids:
            await self.redis.hdel(self.keys.reconcile_missing, *cids)

    async def mark_orphan(self, cid: str, now_ms: int, reason: str, canceled: bool) -> None:
        """Record in one MULTI that the campaign's job was removed outside waqtor."""
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            fields: dict[Any, Any] = {"orphaned": now_ms, "orphan_reason": reason}
            if canceled:
                fields["canceled"] = "1"
            pipe.hset(k.meta(cid), mapping=fields)
            pipe.srem(k.paused_campaigns, cid)
            pipe.zrem(k.canceled_jobs, cid)
            pipe.hdel(k.reconcile_missing, cid)
            await pipe.execute()

    # ---- backlog counters ----
    async def backlog(self, account: str) -> str | None:
        raw = await self.redis.get(self.keys.backlog(account))
        return None if raw is None else str(raw)

    async def seen(self, account: str) -> str | None:
        """The disagreement (``counted/real``) the last pass saw on the account, if any."""
        found = await self.redis.hget(self.keys.reconcile_stats, f"seen:{account}")
        return None if found is None else str(found)

    async def set_seen(self, account: str, seen: str | None) -> None:
        if seen is None:
            await self.redis.hdel(self.keys.reconcile_stats, f"seen:{account}")
        else:
            await self.redis.hset(self.keys.reconcile_stats, f"seen:{account}", seen)

    async def set_backlog(self, account: str, was: str, real: int) -> bool:
        """Set the counter to ``real`` if it still holds ``was`` (backlog_set.lua)."""
        return bool(
            await self.scripts["backlog_set"](keys=[self.keys.backlog(account)], args=[was, real])
        )

    # ---- our canceled / foreign lists ----
    async def drop_stale(self, canceled: bool, chunk: int) -> int:
        """Drop ids from our canceled (or foreign) list whose job bullmq no longer has."""
        key = self.keys.canceled_jobs if canceled else self.keys.foreign_jobs
        ids = [str(i) for i in await self.redis.zrange(key, 0, -1)]
        dropped = 0
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            async with self.redis.pipeline(transaction=False) as pipe:
                for cid in part:
                    pipe.exists(self.bull_key(cid))
                found = await pipe.execute()
            gone = [cid for cid, there in zip(part, found, strict=True) if not there]
            if gone:
                dropped += int(await self.redis.zrem(key, *gone))
        return dropped

    # ---- counters and log ----
    async def record(
        self,
        now_ms: int,
        counters: dict[str, int],
        waiting: int,
        entries: list[dict[str, Any]],
        keep: int,
    ) -> None:
        """One pass's figures and fixes, in one MULTI: ``counters`` are added (zeros left
        out), ``entries`` go to the front of the capped log."""
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(k.reconcile_stats, mapping={"last_ms": now_ms, "waiting": waiting})
            pipe.hincrby(k.reconcile_stats, "passes", 1)
            for name, n in counters.items():
                if n:
                    pipe.hincrby(k.reconcile_stats, name, n)
            for entry in entries:
                pipe.lpush(k.reconcile_log, json.dumps(entry))
            pipe.ltrim(k.reconcile_log, 0, keep - 1)
            await pipe.execute()

    async def report(self, recent: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """The counters, and the latest ``recent`` log entries, newest first."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.reconcile_stats)
            pipe.lrange(self.keys.reconcile_log, 0, recent - 1)
            stats, entries = await pipe.execute()
        return stats, [json.loads(entry) for entry in entries]
