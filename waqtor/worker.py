"""The campaign processor: runs one bullmq job (one campaign) through the send path.

The job only ever holds the campaign's position loosely; the ledger holds it exactly. So a job
that is retried, recovered from a dead worker or handed back on shutdown resumes at the exact
recipient. Waits longer than a pacing gap (retries due later, a paused campaign, unknowns to
settle) move the job to *delayed* instead of holding a sleeping worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from typing import Any

from waqtor.domain.eta import clock_text
from waqtor.domain.status import TERMINAL, RecipientStatus
from waqtor.engine import DelayedError
from waqtor.sender import Campaign, Sender
from waqtor.services import Services
from waqtor.store.connection import connect

log = logging.getLogger("waqtor.worker")

#: How long a job paused by a queue-wide pause sleeps before it looks again (ms).
PAUSE_RECHECK_MS = 1000
#: How often a job waiting on a paused account looks again (ms).
ACCOUNT_RECHECK_MS = 15_000
#: A paused campaign parks its job in *delayed* this long; resume promotes it at once.
PARK_MS = 365 * 24 * 3600 * 1000


class JobUnavailable(Exception):
    """The provider is down: fail this attempt of the job so bullmq backs off and retries."""


class CampaignWorker:
    def __init__(self, services: Services, *, name: str | None = None) -> None:
        self.s = services
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.name = name or self.id
        self.sender = Sender(services, self.id)
        self.stopping = asyncio.Event()
        self.active: set[str] = set()
        self._bull: Any = None
        self._run_task: asyncio.Task[Any] | None = None
        self._beat_task: asyncio.Task[None] | None = None

    # ---- lifecycle ----
    async def start(self) -> None:
        st = self.s.settings
        self._bull = self.s.engine.worker(
            self.process,
            # A patient client of our own: bullmq's default backs off up to 20 s per retry,
            # which would leave a worker idle long after Redis is back.
            connection=connect(self.s.redis_url, patient=True),
            concurrency=st.worker_concurrency,
            lock_duration_ms=st.lock_duration_ms,
            stalled_interval_ms=st.stalled_interval_ms,
            name=self.name,
        )
        self._bull.on("error", lambda err, *_: log.warning("queue error: %s", err))
        self._run_task = asyncio.ensure_future(self._bull.run())
        self._beat_task = asyncio.ensure_future(self._heartbeat())
        log.info("worker %s started (concurrency %d)", self.id, st.worker_concurrency)

    async def stop(self) -> None:
        """Graceful: in-flight sends finish and are recorded, then jobs go straight back."""
        self.stopping.set()
        if self._bull is not None:
            await self._bull.close()
        if self._run_task is not None:
            await asyncio.gather(self._run_task, return_exceptions=True)
        if self._bull is not None:
            # bullmq's run loop can reopen a connection while it winds down; close it for good.
            await self._bull.backend.close(force=True)
        if self._beat_task is not None:
            self._beat_task.cancel()
            await asyncio.gather(self._beat_task, return_exceptions=True)
        try:
            await self.s.redis.hdel(self.s.keys.workers, self.id)
        except Exception:  # Redis may be gone at shutdown; the heartbeat just ages out
            pass
        log.info("worker %s stopped", self.id)

    async def _heartbeat(self) -> None:
        interval = self.s.settings.heartbeat_ms / 1000.0
        while True:
            try:
                beat = {
                    "id": self.id,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "campaigns": sorted(self.active),
                    "ts": self.s.clock.now_ms(),
                }
                await self.s.redis.hset(self.s.keys.workers, self.id, json.dumps(beat))
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(interval)

    # ---- the processor ----
    async def process(self, job: Any, token: str) -> dict[str, int]:
        cid = str(job.id)
        self.active.add(cid)
        try:
            return await self._run(job, token, cid)
        finally:
            self.active.discard(cid)

    async def _delay(self, job: Any, token: str, until_ms: int) -> DelayedError:
        await job.moveToDelayed(until_ms, token)
        return DelayedError()

    async def _run(self, job: Any, token: str, cid: str) -> dict[str, int]:
        s = self.s
        meta = await s.ledger.meta(cid)
        if not meta:
            raise RuntimeError(f"campaign {cid} has no ledger")
        campaign = Campaign(cid, meta.get("account", "default"), meta.get("template", ""))
        if "wait" in meta:
            await s.redis.hdel(s.keys.meta(cid), "wait")
        lost = await s.ledger.recover(cid, campaign.account, token, s.clock.now_ms())
        if lost:
            await job.log(f"{len(lost)} recipient(s) were in flight when a worker stopped: unknown")
            log.warning("campaign %s: %d in-flight send(s) left by a dead worker", cid, len(lost))
        await self.sender.settle(campaign)
        total = max(1, int(meta.get("total", "1")))
        last_pct = -1
        while True:
            if self.stopping.is_set():
                raise await self._delay(job, token, s.clock.now_ms())
            step = await self.sender.step(campaign, token, self.stopping)
            if step.kind in ("sent", "failed", "retry", "unknown"):
                if step.unavailable:
                    await self._provider_down(job, campaign, step.error or "unavailable")
                pct = await self._progress(cid, total)
                if pct != last_pct:
                    last_pct = pct
                    await job.updateProgress(pct)
                continue
            if step.kind == "interrupted":
                continue
            if step.kind == "lost":
                # Another worker owns the job now; leave it alone (no complete, no fail).
                raise DelayedError()
            if step.kind == "paused":
                await job.log("campaign paused")
                parked = await self._delay(job, token, s.clock.now_ms() + PARK_MS)
                if (await s.ledger.meta(cid)).get("paused") != "1":
                    await s.engine.promote(cid)  # resumed while we were parking
                raise parked
            if step.kind == "paused_queue":
                raise await self._delay(job, token, s.clock.now_ms() + PAUSE_RECHECK_MS)
            if step.kind == "wait":
                raise await self._delay(job, token, step.due_ms)
            if step.kind in ("capped", "cooling", "account_paused"):
                until = (
                    step.due_ms
                    if step.kind != "account_paused"
                    else s.clock.now_ms() + ACCOUNT_RECHECK_MS
                )
                reason = _wait_reason(step.kind, step.error, campaign.account, until)
                await s.redis.hset(
                    s.keys.meta(cid), "wait", json.dumps({"reason": reason, "until": until})
                )
                await job.log(reason)
                raise await self._delay(job, token, until)
            if step.kind == "settle":
                again = await self.sender.settle(campaign)
                if again is not None:
                    raise await self._delay(job, token, again)
                continue
            if step.kind == "inflight":
                await asyncio.sleep(0.05)
                continue
            if step.kind == "canceled":
                await s.ledger.close_open(
                    cid, campaign.account, RecipientStatus.CANCELED, now_ms=s.clock.now_ms()
                )
            break
        counts = await s.ledger.counts(cid)
        await job.updateProgress(100)
        return {k: v for k, v in counts.items() if v} | {"total": int(meta.get("total", "0"))}

    async def _progress(self, cid: str, total: int) -> int:
        counts = await self.s.ledger.counts(cid)
        done = sum(counts[st.value] for st in TERMINAL)
        return min(100, int(done * 100 / total))

    async def _provider_down(self, job: Any, campaign: Campaign, reason: str) -> None:
        attempts = int(job.opts.get("attempts", 1))
        if int(job.attemptsMade) + 1 >= attempts:
            closed = await self.s.ledger.close_open(
                campaign.id,
                campaign.account,
                RecipientStatus.FAILED,
                now_ms=self.s.clock.now_ms(),
                error_code="provider_unavailable",
                reason=reason,
            )
            await job.log(f"provider unavailable on the last attempt: {closed} recipient(s) failed")
        raise JobUnavailable(f"provider unavailable: {reason}")


def _wait_reason(kind: str, detail: str | None, account: str, until_ms: int) -> str:
    """``waiting for the hourly cap until 14:05``: what the job status and the ETA say."""
    at = clock_text(until_ms)
    if kind == "capped":
        return f"waiting for the {detail or 'hourly'} cap of account {account} until {at}"
    if kind == "cooling":
        return f"account {account} is cooling down after a ban signal until {at}"
    return f"account {account} is paused ({detail}); checking again at {at}"
