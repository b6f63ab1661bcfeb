"""A campaign's job as the API shows it: one state for every reader, and the campaigns whose
job was removed outside waqtor (``waqtor.sending.reconcile``) shown from their ledger."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from waqtor.domain.status import JobState, campaign_state
from waqtor.engine import JobView
from waqtor.runtime.parts import HasEngine, HasGateways, HasJobIndex, HasLedger


class Views(HasEngine, HasLedger, HasJobIndex, HasGateways, Protocol):
    """What the API's views of jobs read."""


#: Meta fields that change how a job is shown.
_FLAGS = ("paused", "canceled", "orphaned", "job_end", "total", "created_ms", "account")
ORPHAN_REASON = "job removed outside waqtor"


@dataclass(frozen=True)
class Flags:
    paused: bool
    canceled: bool
    #: When the reconciler closed the campaign because its job was gone (ms), else 0.
    orphaned_ms: int
    failed: bool
    total: int
    created_ms: int
    account: str

    @classmethod
    def of(cls, raw: list[str | None]) -> Flags:
        paused, canceled, orphaned, job_end, total, created, account = raw
        return cls(
            paused=paused == "1",
            canceled=canceled == "1",
            orphaned_ms=int(orphaned or 0),
            failed=job_end == "failed",
            total=int(total or 0),
            created_ms=int(created or 0),
            account=account or "default",
        )

    def state(self, job_state: str) -> str:
        return campaign_state(job_state, paused=self.paused, canceled=self.canceled)

    def orphan_state(self) -> str:
        """A campaign whose job is gone: canceled if the reconciler closed recipients (or it
        was canceled), failed if its job had failed, else completed."""
        if self.canceled:
            return JobState.CANCELED.value
        return JobState.FAILED.value if self.failed else JobState.COMPLETED.value


async def flags(s: HasJobIndex, ids: list[str]) -> list[Flags]:
    return [Flags.of(row) for row in await s.job_index.meta_rows(ids, list(_FLAGS))]


def _orphan_row(cid: str, f: Flags) -> dict[str, Any]:
    return {
        "id": cid,
        "status": f.orphan_state(),
        "progress": 100,
        "data": {"campaignId": cid, "account": f.account, "total": f.total},
        "processedOn": None,
        "finishedOn": f.orphaned_ms,
        "failedReason": None,
        "timestamp": f.created_ms,
        "removedOutside": ORPHAN_REASON,
    }


async def job_rows(s: Views, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """``limit`` campaigns with a job, newest first from the ``offset``-th, as the API lists
    them."""
    ids = await s.job_index.newest_jobs(limit, offset)
    views = {v.id: v for v in await s.engine.views(ids)}
    rows: list[dict[str, Any]] = []
    for cid, f in zip(ids, await flags(s, ids), strict=True):
        v = views.get(cid)
        if v is None:
            if f.orphaned_ms:
                rows.append(_orphan_row(cid, f))
            continue
        rows.append(
            {
                "id": v.id,
                "status": f.state(v.state),
                "progress": v.progress,
                "data": v.data,
                "processedOn": v.processed_on,
                "finishedOn": v.finished_on,
                "failedReason": v.failed_reason,
                "timestamp": v.timestamp,
            }
        )
    return rows


async def job_detail(s: Views, job: JobView) -> dict[str, Any]:
    counts = await s.ledger.counts(job.id)
    meta = await s.ledger.meta(job.id)
    state = campaign_state(
        job.state, paused=meta.get("paused") == "1", canceled=meta.get("canceled") == "1"
    )
    return {
        "id": job.id,
        "status": state,
        "progress": job.progress,
        "data": job.data,
        "failedReason": job.failed_reason,
        "processedOn": job.processed_on,
        "finishedOn": job.finished_on,
        "returnvalue": job.returnvalue,
        "attemptsMade": job.attempts_made,
        "timestamp": job.timestamp,
        "recipients": counts,
        "waitingFor": waiting_for(meta, state),
        **await reply_figures(s, job.id, counts),
    }


async def reply_figures(s: HasGateways, cid: str, counts: dict[str, int]) -> dict[str, Any]:
    """Recipients who replied (WhatsApp Web gateways: a reply within 72 h of the campaign's
    message), and their share of those it reached: a sender's best quality signal."""
    replies = await s.gateways.replies(cid)
    reached = sum(counts.get(k, 0) for k in ("sent", "delivered", "read"))
    return {"replies": replies, "replyRate": round(replies / reached, 4) if reached else None}


async def orphan_detail(s: Views, cid: str) -> dict[str, Any] | None:
    """The detail of a campaign whose job was removed outside waqtor, from its ledger (kept
    for the report until our own ``clean`` removes it); None for anything else."""
    (f,) = await flags(s, [cid])
    if not f.orphaned_ms:
        return None
    return {
        **_orphan_row(cid, f),
        "returnvalue": None,
        "attemptsMade": 0,
        "recipients": await s.ledger.counts(cid),
        "waitingFor": None,
    }


def waiting_for(meta: dict[str, str], state: str) -> str | None:
    """Why a campaign is not sending: a cap, a rest, a paused account or campaign or queue.
    The reason is the one the worker stored when it parked the job (``domain.waits.wait_reason``),
    the same text the dashboard shows."""
    if state == JobState.PAUSED.value:
        return "paused" if meta.get("paused") == "1" else "the queue is paused"
    if state == JobState.DELAYED.value and "wait" in meta:
        try:
            reason: str = json.loads(meta["wait"]).get("reason", "")
        except (ValueError, AttributeError):
            return None
        return reason or None
    return None
