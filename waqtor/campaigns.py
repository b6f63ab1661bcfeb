"""Submitting campaigns (instant or queued) and reading them back: the API's use cases."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from waqtor.domain.eta import estimate_ms, humanise, mean_gap_ms
from waqtor.domain.recipients import Parsed
from waqtor.domain.status import FINISHED_JOB_STATES, JobState
from waqtor.engine import JobView
from waqtor.sender import Campaign, Sender, Step
from waqtor.services import Services

DEFAULT_ACCOUNT = "default"


def new_id(now_ms: int) -> str:
    """Sortable by creation time, unguessable enough not to enumerate."""
    return f"{now_ms:x}{secrets.token_hex(5)}"


@dataclass
class Estimate:
    ms: float
    text: str
    backlog_ahead: int


@dataclass
class InstantResult:
    campaign_id: str
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def successful(self) -> int:
        return sum(1 for r in self.results if r["success"])


async def estimate(s: Services, account: str, recipients: int) -> Estimate:
    """Counts the backlog already queued on the account, the paced gap and the provider's
    observed send time: not ``n x 2 s``."""
    backlog = await s.pacer.backlog(account)
    gap = mean_gap_ms(
        s.settings.message_delay, s.settings.message_jitter, await s.pacer.observed_send_ms(account)
    )
    wait = max(0, await s.pacer.next_free_ms(account) - s.clock.now_ms())
    ms = estimate_ms(recipients, backlog, gap, wait)
    return Estimate(ms, humanise(ms), backlog)


async def enqueue(
    s: Services, parsed: Parsed, account: str = DEFAULT_ACCOUNT
) -> tuple[str, Estimate]:
    """Write the campaign's recipients, ledger and job atomically; returns its id and ETA."""
    eta = await estimate(s, account, len(parsed.accepted))
    now = s.clock.now_ms()
    cid = new_id(now)
    data = {
        "campaignId": cid,
        "account": account,
        "total": len(parsed.accepted),
        "message": parsed.template[:120],
        "createdAt": now,
    }
    await s.engine.add_campaign(
        cid,
        data,
        lambda pipe: s.ledger.stage(
            pipe,
            cid,
            account=account,
            template=parsed.template,
            recipients=parsed.accepted,
            mode="queue",
            created_ms=now,
        ),
    )
    return cid, eta


async def send_instant(
    s: Services, sender: Sender, parsed: Parsed, account: str = DEFAULT_ACCOUNT
) -> InstantResult:
    """Send a small list now, through the same ledger, pacing and provider as the worker."""
    now = s.clock.now_ms()
    cid = new_id(now)
    eta = await estimate(s, account, len(parsed.accepted))
    # A safety net: the campaign also gets a job, delayed past the time this request should
    # take. If this process dies mid-send, a worker picks the job up and finishes the list
    # (the ledger makes it resume, never repeat); if all goes well the job is removed.
    net_ms = int(2 * eta.ms) + s.settings.provider_timeout_ms + s.settings.send_lease_ms
    await s.engine.add_campaign(
        cid,
        {"campaignId": cid, "account": account, "total": len(parsed.accepted), "mode": "instant"},
        lambda pipe: s.ledger.stage(
            pipe,
            cid,
            account=account,
            template=parsed.template,
            recipients=parsed.accepted,
            mode="instant",
            created_ms=now,
        ),
        delay_ms=max(net_ms, 10_000),
    )
    campaign = Campaign(cid, account, parsed.template)
    outcome: dict[int, Step] = {}
    while True:
        step = await sender.step(campaign, token="")
        if step.index >= 0:
            outcome[step.index] = step
            continue
        if step.kind == "settle":
            again = await sender.settle(campaign)
            if again is None:
                continue
        break
    leftover = step.kind in ("wait", "settle", "paused", "paused_queue")
    if leftover:
        # Retries (or a pause) outlive the request: its job finishes them. Nothing dropped.
        await s.redis.zadd(s.keys.jobs, {cid: now})
        await s.engine.promote(cid)
    else:
        await s.engine.discard(cid)
    result = InstantResult(cid)
    for position, recipient in enumerate(parsed.accepted):
        st = outcome.get(position)
        row: dict[str, Any] = {"phone": recipient.phone, "index": parsed.indexes[position]}
        if st is not None and st.kind == "sent":
            row.update(success=True, messageId=st.message_id)
        elif leftover and (st is None or st.kind == "retry"):
            row.update(
                success=False,
                error=(st.error if st else "not sent yet"),
                status="queued",
                jobId=cid,
            )
        else:
            row.update(
                success=False,
                error=(st.error if st else "not sent"),
                errorCode=(st.error_code if st else None),
            )
        result.results.append(row)
    return result


async def job_detail(s: Services, job: JobView) -> dict[str, Any]:
    counts = await s.ledger.counts(job.id)
    meta = await s.ledger.meta(job.id)
    state = job.state
    if meta.get("paused") == "1" and state not in {st.value for st in FINISHED_JOB_STATES}:
        state = JobState.PAUSED.value
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
    }


async def clean(s: Services, grace_ms: int) -> list[str]:
    """Remove finished jobs older than ``grace_ms`` together with their ledgers."""
    removed = await s.engine.clean(grace_ms)
    for cid in removed:
        await s.ledger.delete(cid)
    # Instant sends have a ledger but no job; they age out on the same rule.
    cutoff = s.clock.now_ms() - grace_ms
    for raw in await s.redis.zrangebyscore(s.keys.campaigns, "-inf", cutoff):
        cid = str(raw)
        if await s.redis.hget(s.keys.meta(cid), "mode") == "instant":
            await s.ledger.delete(cid)
            removed.append(cid)
    return removed
