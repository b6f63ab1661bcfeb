"""Submitting campaigns (instant or queued) and reading them back: the API's use cases."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from waqtor import callbacks
from waqtor.domain.accounts import effective_caps, gap_ms
from waqtor.domain.eta import clock_text, estimate_capped_ms, humanise, mean_gap_ms
from waqtor.domain.recipients import Parsed
from waqtor.domain.status import FINISHED_JOB_STATES, JobState
from waqtor.domain.steps import StepKind
from waqtor.engine import JobView
from waqtor.providers import content
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
    limited_by: str | None = None


@dataclass
class InstantResult:
    campaign_id: str
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def successful(self) -> int:
        return sum(1 for r in self.results if r["success"])


async def estimate(s: Services, account_name: str, recipients: int) -> Estimate:
    """Counts the backlog already queued on the account, its paced gap (delay and jitter), the
    provider's observed send time, its caps and warm-up, and any rest it is taking: not
    ``n x 2 s``."""
    account = await s.accounts.get(account_name) or s.accounts.default()
    now = s.clock.now_ms()
    caps = effective_caps(account, date.today(), now)
    jitter = account.jitter if account.jitter is not None else s.settings.message_jitter
    gap = mean_gap_ms(
        gap_ms(account, s.settings.message_delay, now),
        jitter,
        await s.pacer.observed_send_ms(account_name),
    )
    backlog = await s.pacer.backlog(account_name)
    free_at = max(
        await s.pacer.next_free_ms(account_name), await s.accounts.cooling_until(account_name)
    )
    wait = max(0, free_at - now)
    hour, day = (0, 0)
    if caps.hourly is not None or caps.daily is not None:
        hour, day = await s.accounts.sends_in_window(account_name, now)
    ms = estimate_capped_ms(
        backlog + recipients,
        gap,
        wait_ms=wait,
        hourly=caps.hourly,
        daily=caps.daily,
        sent_last_hour=hour,
        sent_last_day=day,
    )
    limited = None
    if ms > wait + (backlog + recipients) * gap + 1:
        limited = f"caps of account {account_name}: {caps.hourly}/hour, {caps.daily}/day"
    return Estimate(ms, humanise(ms), backlog, limited)


async def instant_blocker(s: Services, account_name: str, recipients: int) -> str | None:
    """Why a small list cannot go out right now on this account (then it is queued)."""
    if await s.engine.is_paused():
        return "the queue is paused: queued instead of sent now"
    return await unavailable(s, account_name, recipients)


async def unavailable(s: Services, account_name: str, recipients: int) -> str | None:
    """Why the account cannot send ``recipients`` messages now: paused, resting or capped."""
    account = await s.accounts.get(account_name)
    if account is None:
        return None
    if account.paused:
        return f"account {account_name} is paused ({account.pausedReason}): queued"
    now = s.clock.now_ms()
    cool = await s.accounts.cooling_until(account_name)
    if cool > now:
        return f"account {account_name} is cooling down until {clock_text(cool)}: queued"
    caps = effective_caps(account, date.today(), now)
    if caps.hourly is None and caps.daily is None:
        return None
    hour, day = await s.accounts.sends_in_window(account_name, now)
    if caps.hourly is not None and hour + recipients > caps.hourly:
        return f"account {account_name} would pass its hourly cap ({caps.hourly}): queued"
    if caps.daily is not None and day + recipients > caps.daily:
        return f"account {account_name} would pass its daily cap ({caps.daily}): queued"
    return None


async def enqueue(
    s: Services,
    parsed: Parsed,
    accounts: list[str] | str | None = None,
    extra: dict[str, str] | None = None,
    delay_ms: int = 0,
) -> tuple[str, Estimate]:
    """Write the campaign's recipients, ledger and job atomically; returns its id and ETA.

    With several accounts, recipient ``i`` goes out from ``accounts[i % k]``: each account
    sends its share at its own pace and caps, side by side.
    """
    senders = [accounts] if isinstance(accounts, str) else (accounts or [DEFAULT_ACCOUNT])
    n = len(parsed.accepted)
    shares = [
        await estimate(s, name, len(range(lane, n, len(senders))))
        for lane, name in enumerate(senders)
    ]
    eta = max(shares, key=lambda e: e.ms)
    now = s.clock.now_ms()
    cid = new_id(now)
    data: dict[str, Any] = {
        "campaignId": cid,
        "account": senders[0],
        "total": len(parsed.accepted),
        "message": parsed.template[:120],
        "createdAt": now,
    }
    if len(senders) > 1:
        data["accounts"] = senders
    await s.engine.add_campaign(
        cid,
        data,
        lambda pipe: s.ledger.stage(
            pipe,
            cid,
            accounts=senders,
            template=parsed.template,
            recipients=parsed.accepted,
            mode="queue",
            created_ms=now,
            extra=extra,  # WhatsApp template or media, callbackUrl, timing
        ),
        delay_ms=delay_ms,
    )
    if delay_ms:
        eta = Estimate(eta.ms + delay_ms, humanise(eta.ms + delay_ms), eta.backlog_ahead)
    return cid, eta


#: Why an instant send may stop with recipients left: its safety-net job finishes them.
_LEFT_FOR_THE_JOB = frozenset(
    {StepKind.WAIT, StepKind.SETTLE, StepKind.PAUSED, StepKind.PAUSED_QUEUE}
)


async def send_instant(
    s: Services,
    sender: Sender,
    parsed: Parsed,
    account: str = DEFAULT_ACCOUNT,
    extra: dict[str, str] | None = None,
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
            accounts=[account],
            template=parsed.template,
            recipients=parsed.accepted,
            mode="instant",
            created_ms=now,
            extra=extra,
        ),
        delay_ms=max(net_ms, 10_000),
    )
    campaign = Campaign(cid, [account], parsed.template, **content.from_meta(extra or {}))
    outcome: dict[int, Step] = {}
    while True:
        step = await sender.step(campaign, token="", priority=True)
        if step.index >= 0:
            outcome[step.index] = step
            continue
        if step.kind is StepKind.SETTLE:
            again = await sender.settle(campaign)
            if again is None:
                continue
        break
    leftover = step.kind in _LEFT_FOR_THE_JOB
    if leftover:
        # Retries (or a pause) outlive the request: its job finishes them. Nothing dropped.
        await s.redis.zadd(s.keys.jobs, {cid: now})
        await s.engine.promote(cid)
    else:
        await s.engine.discard(cid)
        counts = await s.ledger.counts(cid)
        await callbacks.campaign_event(s, cid, account, "completed", counts=counts)
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
        "waitingFor": _waiting_for(meta, state),
    }


def _waiting_for(meta: dict[str, str], state: str) -> str | None:
    """Why a campaign is not sending: a cap, a rest, a paused account or campaign or queue."""
    if state == JobState.PAUSED.value:
        return "paused" if meta.get("paused") == "1" else "the queue is paused"
    if state == JobState.DELAYED.value and "wait" in meta:
        reason: str = json.loads(meta["wait"]).get("reason", "")
        return reason
    return None


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
