"""One campaign as the dashboard shows it: state, progress, ETA, why it waits, what can be done."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol

from waqtor.campaigns import submission as campaigns
from waqtor.campaigns.job_views import reply_figures
from waqtor.domain.eta import estimate_ms, humanise
from waqtor.domain.liveness import alive as seen_alive
from waqtor.domain.status import OPEN as OPEN_STATUSES
from waqtor.domain.status import TERMINAL, RecipientStatus, campaign_state
from waqtor.engine import JobView, valid_job_id
from waqtor.runtime.parts import (
    HasAccounts,
    HasClock,
    HasEngine,
    HasGateways,
    HasJobIndex,
    HasLedger,
    HasPacer,
    HasProviders,
    HasSettings,
    HasStore,
)


class Loads(
    HasSettings,
    HasClock,
    HasEngine,
    HasStore,
    HasLedger,
    HasPacer,
    HasAccounts,
    HasJobIndex,
    HasGateways,
    HasProviders,
    Protocol,
):
    """What a campaign's page reads."""


FINISHED = ("completed", "failed", "canceled")
DONE = tuple(st.value for st in RecipientStatus if st in TERMINAL)
OPEN = tuple(st.value for st in RecipientStatus if st in OPEN_STATUSES)


@dataclass(frozen=True)
class Reason:
    text: str
    at_ms: int = 0  # a time to show after the text


@dataclass
class CampaignView:
    id: str
    state: str
    account: str
    accounts: list[str]  # every sender account (several share a campaign's recipients)
    template: str
    total: int
    created_ms: int
    counts: dict[str, int]
    job: JobView | None
    paused: bool
    canceled: bool
    finished: bool
    wait_reason: str = ""  # why a worker parked the job (cap, rest, paused account...)
    orphaned_ms: int = (
        0  # when the reconciler closed it, its job gone (``waqtor.sending.reconcile``)
    )
    wait_until: int = 0
    done: int = 0
    percent: int = 0
    eta: str = ""
    finish_ms: int = 0
    reasons: list[Reason] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    #: Recipients who replied (gateway accounts), and their share of those reached.
    replies: int = 0
    reply_rate: float | None = None


def _accounts(meta: dict[str, str], data: dict[str, object]) -> list[str]:
    try:
        found = json.loads(meta.get("accounts", "[]"))
    except ValueError:
        found = []
    if isinstance(found, list) and found:
        return [str(a) for a in found]
    return [meta.get("account", str(data.get("account", "default")))]


def _actions(v: CampaignView) -> list[str]:
    if v.job is None:
        # An instant send has no job to control; a campaign whose job was removed outside
        # waqtor keeps only its ledger, for the report, until it is removed.
        return ["remove"] if v.orphaned_ms else []
    if v.finished:
        return (["retry"] if v.counts["failed"] and not v.canceled else []) + ["remove"]
    out = ["resume"] if v.paused else ["pause"]
    if v.job.state == "delayed" and not v.paused:
        out.append("promote")
    if v.counts["failed"] and not v.canceled:
        out.append("retry")
    if not v.canceled:
        out.append("cancel")
    return out


async def _waits(s: Loads, v: CampaignView, now: int) -> None:
    """The ETA and every reason the campaign is not sending right now."""
    q_paused = await s.engine.is_paused()
    w = await s.store.dashboard.campaign_waits(v.id, v.account)
    st = s.settings
    alive = sum(1 for seen in w.beats_ms if seen_alive(seen, now, st.heartbeat_ms))
    retries, unsettled = w.retries, w.unsettled
    remaining = sum(v.counts[name] for name in OPEN)
    gap = await campaigns.message_gap_ms(s, v.account, now)
    wait = max(0, w.account_next_slot_ms - now)
    share = -(-remaining // len(v.accounts))  # several accounts send side by side
    backlog = max(share, w.account_backlog)
    if remaining and not v.finished:
        low = estimate_ms(share, 0, gap, wait)
        high = estimate_ms(share, backlog - share, gap, wait)
        v.finish_ms = int(now + high)
        v.eta = (
            humanise(low) if high - low < 2 * gap + 1000 else f"{humanise(low)} to {humanise(high)}"
        )
    reasons = v.reasons
    if v.finished:
        return
    if v.wait_reason and v.wait_until > now:
        reasons.append(
            Reason(v.wait_reason[:1].upper() + v.wait_reason[1:] + "; until", v.wait_until)
        )
        v.finish_ms = max(v.finish_ms, v.wait_until)
    if v.canceled:
        reasons.append(Reason("Canceled: the recipients not sent yet will not be sent."))
    if v.paused:
        reasons.append(Reason("Paused by an operator: resume it to continue."))
    if q_paused:
        reasons.append(Reason("The whole queue is paused: resume the queue to continue."))
    if alive == 0:
        reasons.append(Reason("No worker is running: start `waqtor serve` or `waqtor worker`."))
    elif v.job is not None and v.job.state == "waiting" and not q_paused:
        reasons.append(Reason("Waiting for a free worker slot."))
    if retries:
        due = w.next_retry_ms or now
        reasons.append(Reason(f"{retries} recipient(s) wait for a retry; the next is due at", due))
        v.finish_ms = max(v.finish_ms, due)
    if unsettled:
        until = w.next_settle_ms or now
        reasons.append(
            Reason(f"{unsettled} unknown outcome(s) are checked with the provider by", until)
        )
        v.finish_ms = max(v.finish_ms, until)
    if backlog > share and remaining:
        reasons.append(
            Reason(f"Shares account “{v.account}” with other campaigns: they take turns.")
        )
    if st.message_delay and remaining and not (v.paused or q_paused):
        reasons.append(
            Reason(
                f"Paced: one message every {gap / 1000:.1f} s on account “{v.account}” "
                "(MESSAGE_DELAY plus jitter)."
            )
        )


async def load(s: Loads, cid: str) -> CampaignView | None:
    if not valid_job_id(cid):
        return None
    job = await s.engine.get(cid)
    meta = await s.ledger.meta(cid)
    if job is None and not meta:
        return None
    counts = {st.value: int(meta.get("n:" + st.code, 0) or 0) for st in RecipientStatus}
    canceled = meta.get("canceled") == "1"
    orphaned = int(meta.get("orphaned", 0) or 0)
    if job is not None:
        state = campaign_state(job.state, paused=meta.get("paused") == "1", canceled=canceled)
    elif orphaned:
        ended = "failed" if meta.get("job_end") == "failed" else "completed"
        state = "canceled" if canceled else ended
    else:
        state = "instant"
    finished = state in FINISHED or (job is None and not sum(counts[n] for n in OPEN))
    paused = state == "paused"
    data = job.data if job is not None else {}
    v = CampaignView(
        id=cid,
        state=state,
        account=meta.get("account", str(data.get("account", "default"))),
        accounts=_accounts(meta, data),
        template=meta.get("template", str(data.get("message", ""))),
        total=int(meta.get("total", data.get("total", 0)) or 0),
        created_ms=int(meta.get("created_ms", 0) or (job.timestamp if job else 0)),
        counts=counts,
        job=job,
        paused=paused,
        canceled=canceled,
        finished=finished,
        orphaned_ms=orphaned,
    )
    if orphaned:
        v.reasons.append(
            Reason(
                "Its job was removed outside waqtor (e.g. from Bull Board); the recipients not "
                "sent by then were canceled, at",
                orphaned,
            )
        )
    try:
        wait = json.loads(meta.get("wait", "{}"))
        v.wait_reason, v.wait_until = str(wait.get("reason", "")), int(wait.get("until", 0))
    except (ValueError, TypeError, AttributeError):
        pass
    v.done = sum(counts[name] for name in DONE)
    figures = await reply_figures(s, cid, counts)
    v.replies, v.reply_rate = figures["replies"], figures["replyRate"]
    v.percent = min(100, v.done * 100 // v.total) if v.total else 100
    await _waits(s, v, s.clock.now_ms())
    v.actions = _actions(v)
    return v
