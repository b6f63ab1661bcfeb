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
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from waqtor.domain.status import RecipientStatus
from waqtor.runtime.parts import (
    HasAccounts,
    HasClock,
    HasEngine,
    HasLedger,
    HasReconcileState,
    HasSettings,
)
from waqtor.store.ledger import accounts_of


class Reconciles(
    HasSettings, HasClock, HasEngine, HasLedger, HasAccounts, HasReconcileState, Protocol
):
    """What the reconciler reads and writes."""


class ReconcileFigures(HasSettings, HasReconcileState, Protocol):
    """What the reconciler's health figures read."""


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
    def __init__(self, s: Reconciles, owner: str) -> None:
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
        if not await s.reconcile_state.take_turn(self.owner, hold):
            return None
        report = Report()
        missing, back, truth = await self._scan()
        await s.reconcile_state.found_again(*back)
        await self._orphans(missing, report)
        await self._backlogs(truth, report)
        report.stale = await self._stale()
        await self._record(report)
        return report

    async def _scan(self) -> tuple[list[str], list[str], dict[str, int]]:
        state = self.s.reconcile_state
        missing: list[str] = []
        back: list[str] = []
        truth: dict[str, int] = {}
        start = 0
        while True:
            gone, returned, flat, read = await state.scan(start, CHUNK)
            missing += gone
            back += returned
            for account, n in zip(flat[::2], flat[1::2], strict=True):
                truth[str(account)] = truth.get(str(account), 0) + int(n)
            if read < CHUNK:
                return missing, back, truth
            start += CHUNK

    async def _orphans(self, missing: list[str], report: Report) -> None:
        s = self.s
        now = s.clock.now_ms()
        grace = s.settings.reconcile_grace_ms
        for cid in missing:
            first = await s.reconcile_state.missing_since(cid, now)
            if now - first < grace:
                report.waiting += 1
                continue
            if await s.engine.exists(cid):  # back in the meantime
                await s.reconcile_state.found_again(cid)
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
        await s.reconcile_state.mark_orphan(cid, now, REASON, bool(canceled or unknown))
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
        state = s.reconcile_state
        for name in sorted(names):
            raw = await state.backlog(name)
            counted = int(raw or 0)
            real = truth.get(name, 0)
            if counted == real:
                await state.set_seen(name, None)
                continue
            seen = f"{counted}/{real}"
            if await state.seen(name) != seen:
                await state.set_seen(name, seen)
                continue
            if await state.set_backlog(name, raw or "0", real):
                await state.set_seen(name, None)
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
        state = self.s.reconcile_state
        return await state.drop_stale(True, CHUNK) + await state.drop_stale(False, CHUNK)

    async def _record(self, report: Report) -> None:
        s = self.s
        now = s.clock.now_ms()
        counters = {
            "orphans": len(report.orphans),
            "recipients": sum(o["canceled"] + o["unknown"] for o in report.orphans),
            "backlog_fixes": len(report.backlog),
            "stale": report.stale,
        }
        entries = [{"kind": "orphan", **fix} for fix in report.orphans]
        entries += [
            {"kind": "backlog", "account": name, "was": was, "now": real, "at": now}
            for name, (was, real) in report.backlog.items()
        ]
        await s.reconcile_state.record(now, counters, report.waiting, entries, LOG_KEEP)


async def health(s: ReconcileFigures) -> dict[str, Any]:
    """What the reconciler did, for ``GET /api/queue/health``."""
    stats, recent = await s.reconcile_state.report(10)
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
        "recent": recent,
    }
