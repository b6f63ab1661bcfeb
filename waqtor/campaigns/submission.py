"""Submitting campaigns (instant or queued) and reading them back: the API's use cases."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

from waqtor.campaigns import hygiene
from waqtor.domain.accounts import caps_on, gap_ms
from waqtor.domain.eta import (
    COLD_FIXED_MS,
    clock_text,
    estimate_capped_ms,
    humanise,
    mean_gap_ms,
    unpaced_gap_ms,
)
from waqtor.domain.recipients import Parsed
from waqtor.domain.status import RecipientStatus
from waqtor.domain.steps import StepKind
from waqtor.providers import content
from waqtor.providers.base import Capabilities
from waqtor.providers.registry import UnknownProvider
from waqtor.runtime import heartbeats
from waqtor.runtime.parts import (
    HasAccounts,
    HasCallbackQueue,
    HasClock,
    HasEngine,
    HasHeartbeats,
    HasJobIndex,
    HasLedger,
    HasPacer,
    HasProviders,
    HasSettings,
    HasSuppressions,
)
from waqtor.sending import callbacks, throughput
from waqtor.sending.sender import Campaign, Sender
from waqtor.sending.worker import ASSIST_MIN_BATCHES


class Picks(HasClock, HasAccounts, Protocol):
    """What choosing the accounts that can send now reads."""


class Gaps(HasSettings, HasClock, HasPacer, HasAccounts, HasJobIndex, HasProviders, Protocol):
    """What the time per message of an account reads."""


class Estimates(Gaps, HasHeartbeats, Protocol):
    """What the ETA of a campaign reads (the heartbeats: how many workers help a long list)."""


class Cleans(HasClock, HasEngine, HasLedger, HasJobIndex, Protocol):
    """What cleaning finished campaigns out of the queue reads and writes."""


class Submits(
    HasSettings,
    HasClock,
    HasEngine,
    HasLedger,
    HasPacer,
    HasAccounts,
    HasSuppressions,
    HasCallbackQueue,
    HasJobIndex,
    HasProviders,
    HasHeartbeats,
    Protocol,
):
    """What submitting a campaign reads and writes."""


DEFAULT_ACCOUNT = "default"
#: Campaigns larger than this write their recipient list ahead of the MULTI.
PRESTAGE_FROM = 5000
#: How long an instant send's lease lasts unless its request renews it (every third of it).
INSTANT_LEASE_MS = 10_000


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
    successful: int = 0
    #: Settled failures only (the provider refused, retries used up, skipped).
    failed: int = 0
    #: Not settled when the request ended: the campaign's job finishes them (``job_id``).
    pending: int = 0

    @property
    def job_id(self) -> str | None:
        return self.campaign_id if self.pending else None


async def message_gap_ms(s: Gaps, account_name: str, now: int | None = None) -> float:
    """Average time per message on the account: its paced gap (delay and jitter) or the
    provider's observed send time, whichever is longer; with no delay, what its campaigns
    really achieve (batches and requests side by side), never above the provider's rate."""
    gap, _ = await _pace(s, account_name, now)
    return gap


async def _pace(
    s: Gaps, account_name: str, now: int | None, helpers: int = 0
) -> tuple[float, float]:
    """The account's time per message and what a campaign costs besides its sends (ms), as
    its last runs measured them, else from its provider's declared capabilities (and the
    ``helpers``, other workers that take batches of a long list)."""
    account = await s.accounts.get(account_name) or s.accounts.default()
    now = s.clock.now_ms() if now is None else now
    jitter = account.jitter if account.jitter is not None else s.settings.message_jitter
    delay = gap_ms(account, s.settings.message_delay, now)
    observed = await s.pacer.observed_send_ms(account_name)
    ran = await s.job_index.run_pace(account_name)
    fixed = ran.fixed_ms if ran is not None else COLD_FIXED_MS
    if delay > 0:
        return mean_gap_ms(delay, jitter, observed), fixed
    try:
        can: Capabilities | None = s.providers.get(account).capabilities
    except UnknownProvider:
        can = None
    parallel = _parallel(s, can)
    if ran is None and parallel > 1:
        parallel *= 1 + helpers
    interval = throughput.interval_ms(can) if can is not None else 0.0
    achieved = ran.per_message_ms if ran is not None else None
    return unpaced_gap_ms(achieved, observed, parallel, interval_ms=interval), fixed


async def estimate(s: Estimates, account_name: str, recipients: int) -> Estimate:
    """Counts the backlog already queued on the account, its paced gap (delay and jitter), the
    provider's observed send time and declared rate, its caps and warm-up, any rest it is
    taking, and what a campaign costs besides its sends (picked up, started, finished): not
    ``n x 2 s``, and not only the sends."""
    account = await s.accounts.get(account_name) or s.accounts.default()
    now = s.clock.now_ms()
    caps = caps_on(account, now)
    backlog = await s.pacer.backlog(account_name)
    helpers = 0
    if backlog + recipients >= ASSIST_MIN_BATCHES * s.settings.send_batch:
        # Other live workers help with the batches of a list this long (``_ask_for_help``).
        helpers = max(0, min(s.settings.assist_workers, await heartbeats.alive(s) - 1))
    gap, fixed = await _pace(s, account_name, now, helpers)
    free_at = max(
        await s.pacer.next_free_ms(account_name), await s.accounts.cooling_until(account_name)
    )
    wait = max(0, free_at - now)
    hour, day = (0, 0)
    if caps.hourly is not None or caps.daily is not None:
        hour, day = await s.accounts.sends_in_window(account_name, now)
    ms = fixed + estimate_capped_ms(
        backlog + recipients,
        gap,
        wait_ms=wait,
        hourly=caps.hourly,
        daily=caps.daily,
        sent_last_hour=hour,
        sent_last_day=day,
    )
    limited = None
    if ms > fixed + wait + (backlog + recipients) * gap + 1:
        limited = f"caps of account {account_name}: {caps.hourly}/hour, {caps.daily}/day"
    return Estimate(ms, humanise(ms), backlog, limited)


def _parallel(s: HasSettings, can: Capabilities | None) -> int:
    """How many sends of one campaign go out side by side on an unpaced account: a batch
    (``SEND_BATCH``) when its provider takes them, else the requests it allows in flight
    (its declared ``max_in_flight``, at most a claim of ``SEND_BATCH``)."""
    if can is None or s.settings.send_batch <= 1 or can.min_gap_ms > 0 or can.web_session:
        return 1
    if can.batch_size > 1:
        return s.settings.send_batch
    return max(1, min(s.settings.send_batch, can.max_in_flight))


async def instant_blocker(s: Submits, account_name: str, recipients: int) -> str | None:
    """Why a small list cannot go out right now on this account (then it is queued)."""
    if await s.engine.is_paused():
        return "the queue is paused: queued instead of sent now"
    account = await s.accounts.get(account_name)
    if account is not None:
        try:
            can = s.providers.get(account).capabilities
            human_paced = can.min_gap_ms > 0 or can.web_session
        except UnknownProvider:
            human_paced = False
        if human_paced:
            return f"account {account_name} sends human-paced (a WhatsApp Web gateway): queued"
    return await unavailable(s, account_name, recipients)


async def unavailable(s: Picks, account_name: str, recipients: int) -> str | None:
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
    caps = caps_on(account, now)
    if caps.hourly is None and caps.daily is None:
        return None
    hour, day = await s.accounts.sends_in_window(account_name, now)
    if caps.hourly is not None and hour + recipients > caps.hourly:
        return f"account {account_name} would pass its hourly cap ({caps.hourly}): queued"
    if caps.daily is not None and day + recipients > caps.daily:
        return f"account {account_name} would pass its daily cap ({caps.daily}): queued"
    return None


async def enqueue(
    s: Submits,
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
    # A large list goes in batch by batch first: in the MULTI it would be one long step of
    # the event loop (``Ledger.prestage``).
    if delay_ms:  # sendAt: resuming the campaign before then must not start it early
        extra = {**(extra or {}), "start_ms": str(now + delay_ms)}
    prestaged = n > PRESTAGE_FROM
    if prestaged:
        await s.ledger.prestage(cid, parsed.accepted)
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
            prestaged=prestaged,
        ),
        delay_ms=delay_ms,
    )
    if delay_ms:
        eta = Estimate(eta.ms + delay_ms, humanise(eta.ms + delay_ms), eta.backlog_ahead)
    return cid, eta


async def send_instant(
    s: Submits,
    sender: Sender,
    parsed: Parsed,
    account: str = DEFAULT_ACCOUNT,
    extra: dict[str, str] | None = None,
) -> InstantResult:
    """Send a small list now, through the same ledger, pacing and provider as the worker.

    The answer reads the ledger: a recipient is reported sent or failed only once that is
    settled there; anything else is ``queued`` on the campaign's job, never ``failed``."""
    now = s.clock.now_ms()
    cid = new_id(now)
    eta = await estimate(s, account, len(parsed.accepted))

    def stage(pipe: Any) -> None:
        s.ledger.stage(
            pipe,
            cid,
            accounts=[account],
            template=parsed.template,
            recipients=parsed.accepted,
            mode="instant",
            created_ms=now,
            extra=extra,
            lease_ms=INSTANT_LEASE_MS,
        )

    # A safety net: the campaign also gets a job, delayed past the time this request should
    # take. If this process dies mid-send, a worker picks the job up and finishes the list
    # (the ledger makes it resume, never repeat); if all goes well the job is removed. While
    # this request renews its lease the job does not start, even if someone promotes it.
    net_ms = int(2 * eta.ms) + s.settings.provider_timeout_ms + s.settings.send_lease_ms
    await s.engine.add_campaign(
        cid,
        {"campaignId": cid, "account": account, "total": len(parsed.accepted), "mode": "instant"},
        stage,
        delay_ms=max(net_ms, 10_000),
    )
    renewer = asyncio.ensure_future(_renew(s, cid))
    try:
        await _send_all(s, sender, cid, account, parsed.template, extra)
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
    result = await _instant_result(s, cid, parsed)
    await s.job_index.drop_lease(cid)
    if result.pending:
        # Retries, unknown outcomes or a pause outlive the request: its job finishes them.
        await s.job_index.list_job(cid, now)
        await s.engine.promote(cid)
    else:
        await _drop_safety_net(s, cid)
        counts = await s.ledger.counts(cid)
        await callbacks.campaign_event(s, cid, account, "completed", counts=counts)
    return result


async def _renew(s: HasJobIndex, cid: str) -> None:
    while True:
        await asyncio.sleep(INSTANT_LEASE_MS / 3 / 1000)
        with contextlib.suppress(Exception):  # Redis down: the sends fail and say so
            await s.job_index.renew_lease(cid, INSTANT_LEASE_MS)


async def _send_all(
    s: HasLedger,
    sender: Sender,
    cid: str,
    account: str,
    template: str,
    extra: dict[str, str] | None,
) -> None:
    campaign = Campaign(cid, [account], template, **content.from_meta(extra or {}))
    while True:
        step = await sender.step(campaign, token="", priority=True)
        if step.index >= 0:
            if step.open_left == 0 and not await s.ledger.unsettled(cid):
                return  # the last is recorded: asking again would first wait a pacing gap
            continue
        if step.kind is StepKind.SETTLE and await sender.settle(campaign) is None:
            continue
        return


async def _drop_safety_net(s: HasEngine, cid: str) -> None:
    """Remove the instant send's job. A worker may hold it for a moment (it found the lease
    and is putting it back in *delayed*): try again briefly."""
    for _ in range(20):
        if await s.engine.try_remove(cid):
            return
        await asyncio.sleep(0.05)


#: Settled statuses that are not a success, as an instant result reports them.
_SETTLED_FAILURES = frozenset(
    {
        RecipientStatus.FAILED,
        RecipientStatus.SKIPPED,
        RecipientStatus.SUPPRESSED,
        RecipientStatus.EXPIRED,
        RecipientStatus.CANCELED,
    }
)
_SUCCESS = frozenset({RecipientStatus.SENT, RecipientStatus.DELIVERED, RecipientStatus.READ})


async def _instant_result(s: HasLedger, cid: str, parsed: Parsed) -> InstantResult:
    """Each recipient as the ledger has it now: ``phone`` as the request gave it and
    ``normalizedPhone`` as it was sent."""
    rows = await s.ledger.rows_at(cid, list(range(len(parsed.accepted))))
    awaiting = {index for index, *_ in await s.ledger.unsettled(cid)}
    given = parsed.given if len(parsed.given) == len(parsed.accepted) else []
    result = InstantResult(cid)
    for position, row in enumerate(rows):
        status = RecipientStatus(row["status"])
        out: dict[str, Any] = {
            "phone": given[position] if given else row["phone"],
            "normalizedPhone": row["phone"],
            "index": parsed.indexes[position],
        }
        if status in _SUCCESS:
            out.update(success=True, status=status.value, messageId=row["messageId"])
            result.successful += 1
        elif status in _SETTLED_FAILURES:
            out.update(
                success=False,
                status=status.value,
                error=row["error"] or status.value,
                errorCode=row["errorCode"],
            )
            result.failed += 1
        elif status is RecipientStatus.UNKNOWN and position not in awaiting:
            # The provider cannot say whether it went out: neither a success nor a failure.
            # The job stays, so an operator can settle it (``.../resolve``).
            out.update(status=status.value, jobId=cid, error=row["error"])
            result.pending += 1
        else:
            # Not settled yet (a retry is due, an outcome is being checked, a pause): the
            # campaign's job finishes it. Never reported as failed.
            out.update(status="queued", jobId=cid)
            if row["error"]:
                out["lastError"] = row["error"]
            result.pending += 1
        result.results.append(out)
    return result


async def clean(s: Cleans, grace_ms: int) -> list[str]:
    """Remove finished jobs older than ``grace_ms`` together with their ledgers; and the
    ledgers with no job: instant sends, and campaigns whose job was removed outside waqtor
    (closed by ``reconcile``), on the same rule."""
    removed = await s.engine.clean(grace_ms)
    for cid in removed:
        await s.ledger.delete(cid)
    cutoff = s.clock.now_ms() - grace_ms
    ids = await s.job_index.campaigns_before(cutoff)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        facts = await s.job_index.clean_facts(chunk)
        for cid, (mode, orphaned, leased) in zip(chunk, facts, strict=True):
            if orphaned:
                gone = int(orphaned) <= cutoff
            else:
                # An instant send still sending, or whose job still finishes it, stays.
                gone = mode == "instant" and not leased and not await s.engine.exists(cid)
            if gone:
                await s.ledger.delete(cid)
                removed.append(cid)
    return removed


# ---- the one submission rule, shared by the API and the dashboard ----
#: Settings of a submission that make it wait for a time: it is queued, never instant.
TIMED = ("window", "quiet", "expires_ms")


def small_enough(s: HasSettings, recipients: int) -> bool:
    """Whether a list this long is sent at once (instant) when nothing stands in its way."""
    return 0 < recipients <= s.settings.instant_threshold


async def why_queued(
    s: Submits, account: str, recipients: int, *, delay_ms: int, extra: dict[str, str]
) -> tuple[bool, str | None]:
    """``(instant, reason)``: whether the list goes out now, in this request; else why a
    list small enough for that is queued (None for a list that is simply large)."""
    if delay_ms > 0 or any(k in extra for k in TIMED):
        return False, "scheduled (sendAt, window, quiet hours or validUntil): queued"
    if not small_enough(s, recipients):
        return False, None
    blocker = await instant_blocker(s, account, recipients)
    return blocker is None, blocker


class NothingToSend(Exception):
    """No valid recipient is left once the opted-out ones are dropped."""

    def __init__(self, suppressed: list[dict[str, object]]) -> None:
        super().__init__("no valid recipient")
        self.suppressed = suppressed


@dataclass
class Submitted:
    #: The accounts that send it, and those skipped (paused, resting or capped).
    senders: list[str]
    skipped: list[dict[str, str]]
    #: Opted-out recipients dropped from the list, by request index.
    suppressed: list[dict[str, object]]
    #: Sent in this request: its outcome. Else the campaign's job, its ETA and, for a small
    #: list, why it was queued.
    instant: InstantResult | None = None
    job_id: str = ""
    eta: Estimate | None = None
    reason: str | None = None


async def usable_accounts(s: Picks, names: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Of several accounts, those that can send now; paused, resting or capped ones are
    skipped. If none can, all are kept: the campaign waits for them, and says why."""
    if len(names) == 1:
        return names, []
    usable: list[str] = []
    skipped: list[dict[str, str]] = []
    for name in names:
        reason = await unavailable(s, name, 1)
        if reason is None:
            usable.append(name)
        else:
            skipped.append({"account": name, "reason": reason})
    return (usable, skipped) if usable else (names, skipped)


async def submit(
    s: Submits,
    parsed: Parsed,
    accounts: list[str],
    extra: dict[str, str] | None = None,
    *,
    delay_ms: int = 0,
    sender: Sender | None = None,
) -> Submitted:
    """Send a list: drop opted-out numbers, then send it in this request (instant) if it is
    small and nothing stands in the way, else queue it. Without a ``sender`` it is queued.
    Raises NothingToSend when no recipient is left."""
    extra = extra or {}
    senders, skipped = await usable_accounts(s, accounts)
    account = senders[0]
    suppressed = await hygiene.drop_suppressed(s, account, parsed)
    if not parsed.accepted:
        raise NothingToSend(suppressed)
    out = Submitted(senders, skipped, suppressed)
    instant = False
    if sender is not None:
        n = len(parsed.accepted)
        instant, out.reason = await why_queued(s, account, n, delay_ms=delay_ms, extra=extra)
    if instant and sender is not None:
        out.instant = await send_instant(s, sender, parsed, account, extra)
        return out
    out.job_id, out.eta = await enqueue(s, parsed, senders, extra, delay_ms=delay_ms)
    return out
