"""Self-healing state: the queue's own tools are not the only ones that touch it.

Bull Board (or any BullMQ client) can remove or clean a campaign's job behind our back. The
ledger then outlives its job: its open recipients would wait forever, counted in
``messages.pending`` and in the account's backlog (so every later campaign on that account would
show a longer ETA), and our own ``clean`` would never see it. Every ``RECONCILE_EVERY_MS`` one
worker process (a Redis lock picks it) looks at every stored campaign:

- a campaign whose job has been missing for ``RECONCILE_GRACE_MS`` has its open recipients
  closed as ``canceled`` ("job removed outside waqtor"); a send that was in flight becomes
  ``unknown``. The ledger stays for the report until our own ``clean`` removes it;
- an account's backlog counter that disagrees with its campaigns' open recipients on two
  passes in a row, with neither moving in between, is set to the true value.

A pass reads every stored campaign in chunks of ``CHUNK`` (one short read-only script each, so
Redis serves others in between): about 12 us of Redis time per campaign, 0.2 s at 20,000 and
1.2 s at 100,000 on a shared 2-core machine. Passes space out so that they never take more than
one part in ``LOAD_SHARE`` of the time.

What it fixed goes to the log and to ``GET /api/queue/health`` (``data.reconciler``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from waqtor.domain.status import RecipientStatus
from waqtor.runtime.services import Services
from waqtor.store.ledger import accounts_of

log = logging.getLogger("waqtor.sending.reconcile")

REASON = "job removed outside waqtor"
ERROR_CODE = "job_removed"
#: Campaigns read per script call: one short read-only script, then Redis serves others.
CHUNK = 500
#: Fixes kept for the health route.
LOG_KEEP = 50
#: A pass may take at most one part in this many of the time between passes.
LOAD_SHARE = 20


@dataclass
class Report:
    #: Campaigns closed this pass, with what was done to each.
    orphans: list[dict[str, Any]] = field(default_factory=list)
    #: Accounts whose backlog counter was corrected: name -> (was, now).
    backlog: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Ids dropped from the canceled / foreign lists because their job is gone.
    stale: int = 0
    #: Campaigns whose job is missing but still within the grace period.
    waiting: int = 0

    @property
    def fixed(self) -> bool:
        return bool(self.orphans or self.backlog or self.stale)


class Reconciler:
    def __init__(self, s: Services, owner: str) -> None:
        self.s = s
        self.owner = owner

    async def run(self, stop: asyncio.Event) -> None:
        """Passes until ``stop`` is set; a pass that fails (Redis down) is tried again."""
        every = self.s.settings.reconcile_every_ms / 1000
        wait = every
        while True:
            try:
                await asyncio.wait_for(stop.wait(), wait)
                return
            except TimeoutError:
                pass
            started = time.monotonic()
            try:
                await self.pass_once()
            except Exception as exc:  # Redis away: the worker's own watch says so
                log.debug("reconciler pass failed: %s", exc)
            # Bounded cost: with very many stored campaigns a pass takes longer (about 12 us
            # of Redis time per campaign), so passes space out to keep it under 1/LOAD_SHARE.
            wait = max(every, LOAD_SHARE * (time.monotonic() - started))

    async def pass_once(self) -> Report | None:
        """One pass, unless another process holds this interval's lock (then None)."""
        s = self.s
        hold = max(1000, s.settings.reconcile_every_ms - 100)
        if not await s.redis.set(s.keys.reconcile_lock, self.owner, nx=True, px=hold):
            return None
        report = Report()
        missing, back, truth = await self._scan()
        if back:
            await s.redis.hdel(s.keys.reconcile_missing, *back)
        await self._orphans(missing, report)
        await self._backlogs(truth, report)
        report.stale = await self._stale()
        await self._record(report)
        return report

    async def _scan(self) -> tuple[list[str], list[str], dict[str, int]]:
        s = self.s
        k = s.keys
        head, _ = k.meta_parts()
        sample = "\0"
        status_tail = k.status(sample)[len(k.meta(sample)) :]
        lease_tail = k.instant_lease(sample)[len(k.meta(sample)) :]
        missing: list[str] = []
        back: list[str] = []
        truth: dict[str, int] = {}
        start = 0
        while True:
            gone, returned, flat, read = await s.scripts["reconcile_scan"](
                keys=[k.campaigns, k.jobs, k.reconcile_missing],
                args=[start, CHUNK, head, k.job_hash(""), status_tail, lease_tail],
            )
            missing += [str(c) for c in gone]
            back += [str(c) for c in returned]
            for account, n in zip(flat[::2], flat[1::2], strict=True):
                truth[str(account)] = truth.get(str(account), 0) + int(n)
            if int(read) < CHUNK:
                return missing, back, truth
            start += CHUNK

    async def _orphans(self, missing: list[str], report: Report) -> None:
        s = self.s
        now = s.clock.now_ms()
        grace = s.settings.reconcile_grace_ms
        for cid in missing:
            await s.redis.hsetnx(s.keys.reconcile_missing, cid, now)
            first = int(await s.redis.hget(s.keys.reconcile_missing, cid) or now)
            if now - first < grace:
                report.waiting += 1
                continue
            if await s.engine.exists(cid):  # back in the meantime
                await s.redis.hdel(s.keys.reconcile_missing, cid)
                continue
            report.orphans.append(await self._close(cid, now, now - first))

    async def _close(self, cid: str, now: int, missing_ms: int) -> dict[str, Any]:
        """Close one campaign whose job is gone. Each step is one script, and each is a no-op
        the second time, so a pass cut short is finished by the next one."""
        s = self.s
        accounts = accounts_of(await s.ledger.meta(cid))
        canceled = await s.ledger.close_open(
            cid,
            accounts,
            RecipientStatus.CANCELED,
            now_ms=now,
            error_code=ERROR_CODE,
            reason=REASON,
        )
        # A send in flight when the job went: nobody will record it, nobody can say.
        unknown = len(await s.ledger.recover(cid, accounts, "", now))
        async with s.redis.pipeline(transaction=True) as pipe:
            fields: dict[Any, Any] = {"orphaned": now, "orphan_reason": REASON}
            if canceled or unknown:
                fields["canceled"] = "1"
            pipe.hset(s.keys.meta(cid), mapping=fields)
            pipe.srem(s.keys.paused_campaigns, cid)
            pipe.zrem(s.keys.canceled_jobs, cid)
            pipe.hdel(s.keys.reconcile_missing, cid)
            await pipe.execute()
        fix = {
            "campaign": cid,
            "at": now,
            "missingMs": missing_ms,
            "canceled": canceled,
            "unknown": unknown,
            "accounts": accounts,
        }
        log.warning(
            "campaign %s: its job was removed outside waqtor %.0f s ago; %d open recipient(s) "
            "canceled, %d in-flight send(s) unknown; the ledger stays for the report until "
            "clean removes it",
            cid,
            missing_ms / 1000,
            canceled,
            unknown,
        )
        return fix

    async def _backlogs(self, truth: dict[str, int], report: Report) -> None:
        """Correct a counter only when the same disagreement is seen twice in a row: while
        campaigns send, one pass reads a moving target; a steady mismatch is drift."""
        s = self.s
        names = {a.name for a in await s.accounts.all()} | {s.accounts.default().name}
        names |= set(truth)
        if report.orphans:
            # Counters just moved with the campaigns closed above: compare from here on.
            return
        for name in sorted(names):
            raw = await s.redis.get(s.keys.backlog(name))
            counted = int(raw or 0)
            real = truth.get(name, 0)
            seen_field = f"seen:{name}"
            if counted == real:
                await s.redis.hdel(s.keys.reconcile_stats, seen_field)
                continue
            seen = f"{counted}/{real}"
            if await s.redis.hget(s.keys.reconcile_stats, seen_field) != seen:
                await s.redis.hset(s.keys.reconcile_stats, seen_field, seen)
                continue
            if await s.scripts["backlog_set"](keys=[s.keys.backlog(name)], args=[raw or "0", real]):
                await s.redis.hdel(s.keys.reconcile_stats, seen_field)
                report.backlog[name] = (counted, real)
                log.warning(
                    "account %s: backlog counter said %d, its campaigns hold %d open "
                    "recipient(s); corrected",
                    name,
                    counted,
                    real,
                )

    async def _stale(self) -> int:
        """Ids in our canceled / foreign lists whose job was removed outside waqtor."""
        s = self.s
        dropped = 0
        for key in (s.keys.canceled_jobs, s.keys.foreign_jobs):
            ids = [str(i) for i in await s.redis.zrange(key, 0, -1)]
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                async with s.redis.pipeline(transaction=False) as pipe:
                    for cid in chunk:
                        pipe.exists(s.keys.job_hash(cid))
                    found = await pipe.execute()
                gone = [cid for cid, there in zip(chunk, found, strict=True) if not there]
                if gone:
                    dropped += int(await s.redis.zrem(key, *gone))
        return dropped

    async def _record(self, report: Report) -> None:
        s = self.s
        now = s.clock.now_ms()
        async with s.redis.pipeline(transaction=True) as pipe:
            pipe.hset(s.keys.reconcile_stats, mapping={"last_ms": now, "waiting": report.waiting})
            pipe.hincrby(s.keys.reconcile_stats, "passes", 1)
            if report.orphans:
                pipe.hincrby(s.keys.reconcile_stats, "orphans", len(report.orphans))
                closed = sum(o["canceled"] + o["unknown"] for o in report.orphans)
                pipe.hincrby(s.keys.reconcile_stats, "recipients", closed)
            if report.backlog:
                pipe.hincrby(s.keys.reconcile_stats, "backlog_fixes", len(report.backlog))
            if report.stale:
                pipe.hincrby(s.keys.reconcile_stats, "stale", report.stale)
            for fix in report.orphans:
                pipe.lpush(s.keys.reconcile_log, json.dumps({"kind": "orphan", **fix}))
            for name, (was, real) in report.backlog.items():
                entry = {"kind": "backlog", "account": name, "was": was, "now": real, "at": now}
                pipe.lpush(s.keys.reconcile_log, json.dumps(entry))
            pipe.ltrim(s.keys.reconcile_log, 0, LOG_KEEP - 1)
            await pipe.execute()


async def health(s: Services) -> dict[str, Any]:
    """What the reconciler did, for ``GET /api/queue/health``."""
    async with s.redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(s.keys.reconcile_stats)
        pipe.lrange(s.keys.reconcile_log, 0, 9)
        stats, recent = await pipe.execute()
    return {
        "lastPassMs": int(stats.get("last_ms", 0)) or None,
        "passes": int(stats.get("passes", 0)),
        "orphansClosed": int(stats.get("orphans", 0)),
        "recipientsClosed": int(stats.get("recipients", 0)),
        "backlogFixes": int(stats.get("backlog_fixes", 0)),
        "staleIdsDropped": int(stats.get("stale", 0)),
        "missingJobsInGrace": int(stats.get("waiting", 0)),
        "everyMs": s.settings.reconcile_every_ms,
        "graceMs": s.settings.reconcile_grace_ms,
        "recent": [json.loads(entry) for entry in recent],
    }
