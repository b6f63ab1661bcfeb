"""The send path for one recipient, shared by instant mode and the worker.

pacing slot -> ledger claim (pending -> sending) -> provider.send -> ledger outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from waqtor.domain.accounts import Account, Caps, caps_on, gap_ms
from waqtor.domain.phones import mask
from waqtor.domain.schedule import Daily, Schedule, recipient_zone
from waqtor.domain.status import RecipientStatus
from waqtor.domain.steps import StepKind
from waqtor.domain.templates import TemplateError, builtin_values, render
from waqtor.providers import content
from waqtor.providers.base import (
    AmbiguousError,
    BanSignalError,
    Capabilities,
    Lookup,
    OutgoingMessage,
    PermanentError,
    Provider,
    ProviderError,
    RateLimitedError,
    SessionDownError,
    TransientError,
    UnavailableError,
)
from waqtor.providers.registry import UnknownProvider
from waqtor.runtime import logs, process_metrics
from waqtor.runtime.parts import (
    HasAccounts,
    HasClock,
    HasGateways,
    HasJobIndex,
    HasLedger,
    HasPacer,
    HasProviders,
    HasSettings,
)
from waqtor.sending import callbacks, human, throughput
from waqtor.sending.breaker import THROTTLE_SIGNALS, Breaker
from waqtor.sending.flow import Flow
from waqtor.store import batches
from waqtor.store.batches import ATTEMPT_INDEX_TTL_MS, MESSAGE_INDEX_TTL_MS, Outcome
from waqtor.store.ledger import Claimant


class Records(HasClock, HasLedger, HasAccounts, HasJobIndex, Protocol):
    """What recording one send's outcome (and queueing its callback) writes."""


class Sends(
    HasSettings,
    HasClock,
    HasLedger,
    HasPacer,
    HasAccounts,
    HasJobIndex,
    HasGateways,
    HasProviders,
    Protocol,
):
    """What the send path reads and writes: every account's sends, pacing and outcomes."""


log = logging.getLogger("waqtor.sending.sender")

#: How often (ms) a worker shares an account's observed send time, for ETAs.
PUBLISH_EVERY_MS = 5000
PUBLISH_MS_PER_ACCOUNT = 20


@dataclass(frozen=True)
class Step:
    """What one step did: a recipient's outcome, or a claim's reason for not sending."""

    kind: StepKind
    index: int = -1
    message_id: str | None = None
    error: str | None = None
    error_code: str | None = None
    due_ms: int = 0
    unavailable: bool = False
    #: The campaign's recipients still open after this outcome was recorded (-1: not known).
    open_left: int = -1


@dataclass(frozen=True)
class Campaign:
    id: str
    accounts: list[str]  # one per lane: recipient i is sent by accounts[i % len(accounts)]
    template: str
    #: An approved WhatsApp template or media by URL (``providers.content``), if any.
    wa_template: dict[str, Any] | None = None
    media: dict[str, Any] | None = None
    #: Expiry, sending window, quiet hours, duplicate guard (``domain.schedule``), if any.
    schedule: Schedule | None = None

    @property
    def account(self) -> str:
        return self.accounts[0]

    @property
    def lanes(self) -> range:
        return range(len(self.accounts))

    def lane_of(self, index: int) -> int:
        return index % len(self.accounts)


class Sender:
    def __init__(self, services: Sends, worker_id: str) -> None:
        self.s = services
        self.worker_id = worker_id
        self.breaker = Breaker(services)
        self._rng = random.Random()
        self._send_ms: dict[str, float] = {}
        #: Per sender (account, or the phone number accounts share): the adaptive in-flight
        #: limit and batch size of the batch send path (``sender_batch``).
        self.flows: dict[str, Flow] = {}
        self._published: dict[str, float] = {}
        #: Per paced account: when its next slot should be free (ms), as this process last saw
        #: it: a lane sleeps until then and reserves in its claim (one round trip, not two).
        self._expected_ms: dict[str, int] = {}
        try:
            self.zone = ZoneInfo(services.settings.timezone)
        except Exception:
            self.zone = ZoneInfo("UTC")

    def flow(self, account: str, caps: Capabilities) -> Flow:
        key = throughput.owner(account, caps)
        flow = self.flows.get(key)
        if flow is None:
            flow = self.flows[key] = Flow(
                caps.max_in_flight,
                batch_limit=min(caps.batch_size, self.s.settings.send_batch),
            )
        return flow

    def claimant(
        self, campaign: Campaign, token: str, lane: int, can: Capabilities, caps: Caps
    ) -> Claimant:
        """What this process's claims of the lane carry, one at a time or in batches."""
        return Claimant(
            token=token,
            worker_id=self.worker_id,
            lease_ms=self.s.settings.send_lease_ms,
            account=campaign.accounts[lane],
            hourly_cap=caps.hourly,
            daily_cap=caps.daily,
            lane=lane,
            lanes=len(campaign.accounts),
            # Before the request: a status webhook can find the attempt.
            attempt_index_ttl_ms=ATTEMPT_INDEX_TTL_MS if can.settles_by_webhook else 0,
        )

    def backoff_ms(self, attempt: int) -> int:
        """Exponential backoff with jitter: base * 2^(attempt-1), times 0.5..1.5."""
        base = self.s.settings.retry_backoff_ms * (2 ** max(0, attempt - 1))
        return int(base * self._rng.uniform(0.5, 1.5))

    async def step(
        self,
        campaign: Campaign,
        token: str,
        wake: asyncio.Event | None = None,
        lane: int = 0,
        priority: bool = False,
    ) -> Step:
        """Send (at most) one recipient of ``lane``: those of ``campaign.accounts[lane]``."""
        s = self.s
        clock = s.clock
        name = campaign.accounts[lane]
        account = await s.accounts.get(name)
        if account is None:
            return Step(StepKind.ACCOUNT_PAUSED, error=f"account {name} no longer exists")
        if account.paused:
            return Step(StepKind.ACCOUNT_PAUSED, error=account.pausedReason or "account paused")
        try:
            provider = s.providers.get(account)
        except UnknownProvider as exc:
            return Step(StepKind.ACCOUNT_PAUSED, error=str(exc))
        can = provider.capabilities
        if can.web_session:
            waiting = await human.session_wait(s, self.breaker, provider, name)
            if waiting is not None:
                return Step(StepKind.ACCOUNT_PAUSED, error=waiting)
        now = clock.now_ms()
        caps = caps_on(account, now)
        delay = max(gap_ms(account, s.settings.message_delay, now), can.min_gap_ms)
        jitter = human.default_jitter(account, s.settings, can.min_gap_ms)
        reserve_gap = -1  # >= 0: the claim reserves the account's slot in its own round trip
        if delay == 0:
            slot = now  # nothing to space out: skip the round trip
        elif priority or can.messages_per_second:
            slot = await s.pacer.reserve(name, now, delay, jitter, priority)
        else:
            # Sleep until the slot this process expects to be free, then reserve and claim in
            # one script; a slot another sender took is reserved after it (EARLY, below).
            slot = self._expected_ms.get(name, 0)
            reserve_gap = s.pacer.gap_ms(delay, jitter)
        if not await clock.sleep_until(slot, wake):
            return Step(StepKind.INTERRUPTED)
        if not await throughput.throttle(s, name, can, wake):  # the provider's msgs/s
            return Step(StepKind.INTERRUPTED)
        attempt_id = uuid.uuid4().hex
        logs.bind(campaign=campaign.id, account=name, attempt=attempt_id)
        who = self.claimant(campaign, token, lane, can, caps)
        while True:
            claimed_at = clock.now_ms()
            claim = await s.ledger.claim_next(
                campaign.id,
                who,
                attempt_id=attempt_id,
                now_ms=claimed_at,
                min_gap_ms=delay,
                reserve_gap_ms=reserve_gap,
            )
            if claim.kind is not StepKind.EARLY:
                break
            if reserve_gap >= 0:  # reserved: the slot is ours from claim.due_ms on
                self._expected_ms[name] = claim.due_ms + reserve_gap
                reserve_gap = -1
            if not await clock.sleep_until(claim.due_ms, wake):
                return Step(StepKind.INTERRUPTED)
        if reserve_gap >= 0:  # reserved and claimed at claimed_at: the next slot follows
            self._expected_ms[name] = claimed_at + reserve_gap
        if claim.kind is not StepKind.CLAIMED or claim.recipient is None:
            return Step(claim.kind, due_ms=claim.due_ms, error=claim.reason or None)
        recipient = claim.recipient
        idx = claim.index
        indexed = MESSAGE_INDEX_TTL_MS if can.settles_by_webhook else 0

        started = 0  # set when the request is handed to the provider
        text_hash = ""

        left = -1  # the campaign's open recipients, as the script that recorded this one said

        async def finish(status: RecipientStatus, **kw: Any) -> None:
            nonlocal left
            digest = text_hash if status is RecipientStatus.SENT else ""
            _, left = await record(
                s,
                campaign.id,
                name,
                lane,
                Outcome(idx, attempt_id, status, text_hash=digest, **kw),
                sent_at_ms=started,
                phone=recipient.phone,
                index_ttl_ms=indexed,
            )

        def outcome(kind: StepKind, **kw: Any) -> Step:
            return Step(kind, idx, open_left=left, **kw)

        quiet = quiet_hours(campaign, account)
        if quiet is not None:
            zone = recipient_zone(recipient.phone, quiet.zone)
            inside, ends = quiet.inside(clock.now_ms(), zone)
            if inside:  # deferred, not skipped: it goes out when its quiet hours end
                await finish(
                    RecipientStatus.RETRY,
                    error_code="quiet_hours",
                    reason=f"quiet hours {quiet.start}-{quiet.end} in {zone}",
                    due_ms=ends,
                    deferral=True,
                )
                return outcome(StepKind.DEFERRED, due_ms=ends)

        local_now = datetime.now(self.zone)
        builtins = builtin_values(recipient.phone, s.settings.signature, local_now)
        seed = f"{campaign.id}:{idx}"
        try:
            text = render(
                recipient.message or campaign.template, recipient.variables, builtins, seed=seed
            )
            extras = content.for_recipient(
                campaign.wa_template, campaign.media, recipient.variables, builtins, seed, text
            )
        except TemplateError as exc:
            await finish(RecipientStatus.FAILED, error_code="template", reason=exc.reason)
            return outcome(StepKind.FAILED, error=exc.reason, error_code="template")

        text_hash = hashlib.sha1(f"{recipient.phone}\0{text}".encode()).hexdigest()[:16]
        dedupe = campaign.schedule.dedupe_ms if campaign.schedule else 0
        if dedupe and await _sent_recently(s, name, text_hash, clock.now_ms() - dedupe):
            reason = "got the same text from this account recently"
            await finish(RecipientStatus.SKIPPED, error_code="duplicate_text", reason=reason)
            return outcome(StepKind.SKIPPED, error=reason, error_code="duplicate_text")

        typing = 0
        if can.web_session:
            try:
                stop = await human.gate(s, provider, account, recipient.phone)
                if stop is not None and stop.code == "not_on_whatsapp":
                    await finish(RecipientStatus.FAILED, error_code=stop.code, reason=stop.reason)
                    return outcome(StepKind.FAILED, error=stop.reason, error_code=stop.code)
                if stop is not None:  # the new-contact cap: the account waits for it
                    await finish(
                        RecipientStatus.RETRY,
                        error_code=stop.code,
                        reason=stop.reason,
                        due_ms=stop.reopens_ms,
                        deferral=True,
                    )
                    return outcome(
                        StepKind.CAPPED, due_ms=stop.reopens_ms, error="new-contact daily"
                    )
                typing = human.typing_ms(s.settings, text, delay)
                # Before the request: an ack for this number settles the send if its outcome
                # is lost, and a reply is counted for this campaign.
                await s.gateways.note_send(name, recipient.phone, campaign.id, attempt_id)
                if can.presence and typing:
                    await provider.send_presence(name, recipient.phone, typing)
                    typing = 0
            except SessionDownError as exc:
                return await self._session_down(finish, outcome, provider, name, exc)
            except ProviderError as exc:  # nothing was sent: again after a backoff
                due = clock.now_ms() + self.backoff_ms(claim.attempt)
                await finish(
                    RecipientStatus.RETRY, error_code=exc.code, reason=exc.reason, due_ms=due
                )
                return outcome(StepKind.RETRY, error=exc.reason, error_code=exc.code)
        if not can.typing_in_send:
            typing = 0
        message = OutgoingMessage(
            name, recipient.phone, text, campaign.id, attempt_id, **extras, typing_ms=typing
        )
        started = clock.now_ms()
        if delay:  # the finish script moves the account's last send to started + 1
            self._expected_ms[name] = max(self._expected_ms.get(name, 0), started + 1 + delay)
        timeout = (s.settings.provider_timeout_ms + typing) / 1000.0
        try:
            # asyncio.timeout, not wait_for: no extra task, so the request starts right here.
            with process_metrics.provider_call(provider.name, name):
                async with asyncio.timeout(timeout):
                    result = await provider.send(message)
        except SessionDownError as exc:
            return await self._session_down(finish, outcome, provider, name, exc)
        except BanSignalError as exc:
            # Never a transient retry: the account rests (the breaker's cool-down, a pause
            # after repeated signals) and the recipient waits until the rest is over.
            await self.breaker.record(name, True, exc.code)
            due = max(await s.accounts.cooling_until(name), clock.now_ms() + 1000)
            if claim.attempt > s.settings.max_retries:
                await finish(RecipientStatus.FAILED, error_code=exc.code, reason=exc.reason)
                return outcome(StepKind.FAILED, error=exc.reason, error_code=exc.code)
            await finish(RecipientStatus.RETRY, error_code=exc.code, reason=exc.reason, due_ms=due)
            return outcome(StepKind.RETRY, error=exc.reason, error_code=exc.code)
        except PermanentError as exc:
            await finish(RecipientStatus.FAILED, error_code=exc.code, reason=exc.reason)
            await self.breaker.record(name, True, exc.code)
            return outcome(StepKind.FAILED, error=exc.reason, error_code=exc.code)
        except TransientError as exc:
            if isinstance(exc, RateLimitedError) and exc.code in THROTTLE_SIGNALS:
                # The provider's throughput, not this recipient nor the account's standing:
                # again after the pause, without using up an attempt or striking the account.
                due = clock.now_ms() + int(exc.retry_after_s * 1000)
                await finish(
                    RecipientStatus.RETRY,
                    error_code=exc.code,
                    reason=exc.reason,
                    due_ms=due,
                    deferral=True,
                )
                return outcome(StepKind.DEFERRED, error=exc.reason, error_code=exc.code)
            if isinstance(exc, RateLimitedError):
                # Throttling is about the account; a 5xx or an outage is the provider's problem
                # and must not pause the account.
                await self.breaker.record(name, True, exc.code)
                due = clock.now_ms() + int(exc.retry_after_s * 1000)
            else:
                due = clock.now_ms() + self.backoff_ms(claim.attempt)
            unavailable = isinstance(exc, UnavailableError)
            if claim.attempt > s.settings.max_retries and not unavailable:
                await finish(RecipientStatus.FAILED, error_code=exc.code, reason=exc.reason)
                return outcome(StepKind.FAILED, error=exc.reason, error_code=exc.code)
            await finish(RecipientStatus.RETRY, error_code=exc.code, reason=exc.reason, due_ms=due)
            return outcome(
                StepKind.RETRY, error=exc.reason, error_code=exc.code, unavailable=unavailable
            )
        except (AmbiguousError, TimeoutError) as exc:
            code = exc.code if isinstance(exc, AmbiguousError) else "provider_timeout"
            reason = (
                exc.reason
                if isinstance(exc, AmbiguousError)
                else "no answer from the provider in time; the message may have gone out"
            )
            lease_end = clock.now_ms() + s.settings.send_lease_ms
            await finish(RecipientStatus.UNKNOWN, error_code=code, reason=reason, due_ms=lease_end)
            log.warning("outcome unknown for %s: %s", mask(recipient.phone), reason)
            return outcome(StepKind.UNKNOWN, error=reason, error_code=code)
        await finish(RecipientStatus.SENT, message_id=result.message_id)
        await self.breaker.record(name, False)
        await self.observe(name, clock.now_ms() - started)
        return outcome(StepKind.SENT, message_id=result.message_id)

    async def _session_down(
        self,
        finish: Callable[..., Awaitable[None]],
        outcome: Callable[..., Step],
        provider: Provider,
        account: str,
        exc: SessionDownError,
    ) -> Step:
        """The gateway's session stopped working: the recipient goes back to wait (no attempt
        used, nothing failed) and the account waits, or is paused if the session needs an
        operator."""
        await finish(
            RecipientStatus.RETRY,
            error_code=exc.code,
            reason=exc.reason,
            due_ms=self.s.clock.now_ms(),
            deferral=True,
        )
        reason = await human.session_down(self.s, self.breaker, provider, account, exc)
        return outcome(StepKind.ACCOUNT_PAUSED, error=reason)

    async def observe(self, account: str, elapsed_ms: float) -> None:
        """Track the provider's send time; share it every few seconds, not every message."""
        old = self._send_ms.get(account)
        value = elapsed_ms if old is None else 0.9 * old + 0.1 * elapsed_ms
        self._send_ms[account] = value
        now = self.s.clock.now_ms()
        # Every 5 s per account, and no more than about 50 a second in all (500 paced
        # accounts would otherwise publish 100 a second: a round trip for every fifth message).
        every = max(PUBLISH_EVERY_MS, PUBLISH_MS_PER_ACCOUNT * len(self._send_ms))
        if now - self._published.get(account, 0) > every:
            self._published[account] = now
            await self.s.pacer.publish_send_time(account, value)

    async def settle(self, campaign: Campaign) -> int | None:
        """Ask the provider about unknown recipients. Returns when (ms) to ask again, or None.

        Asked only once the send lease is over (a send still inside it may yet be recorded by
        its own worker). Found by attempt id: sent. Not found: the provider has fenced that
        attempt (``Provider.lookup``), so sending the recipient again cannot duplicate it.
        """
        s = self.s
        pending_until: int | None = None
        for index, attempt_id, lease_end, attempts in await s.ledger.unsettled(campaign.id):
            now = s.clock.now_ms()
            if now < lease_end:
                pending_until = min(pending_until or lease_end, lease_end)
                continue
            lane = campaign.lane_of(index)
            name = campaign.accounts[lane]
            account = await s.accounts.get(name) or s.accounts.default()
            try:
                provider = s.providers.get(account)
            except UnknownProvider:
                continue
            if provider.capabilities.lookup is Lookup.NONE:
                # Only a status webhook (or an operator) can settle it.
                await s.ledger.drop_unsettled(campaign.id, index)
                continue
            try:
                message_id = await provider.lookup(attempt_id)
            except NotImplementedError:  # a lookup switched off for now
                await s.ledger.drop_unsettled(campaign.id, index)
                continue
            if message_id:
                outcome = Outcome(index, attempt_id, RecipientStatus.SENT, message_id=message_id)
            elif attempts > s.settings.max_retries:
                outcome = Outcome(
                    index,
                    attempt_id,
                    RecipientStatus.FAILED,
                    error_code="not_delivered",
                    reason="provider has no record of any attempt; retries used up",
                )
            else:
                outcome = Outcome(
                    index,
                    attempt_id,
                    RecipientStatus.RETRY,
                    error_code="not_delivered",
                    reason="provider has no record of the attempt; sending again",
                    due_ms=s.clock.now_ms(),
                )
            await record(s, campaign.id, name, lane, outcome)
        return pending_until


async def record(
    s: Records,
    campaign_id: str,
    account: str,
    lane: int,
    outcome: Outcome,
    *,
    sent_at_ms: int = 0,
    phone: str | None = None,
    index_ttl_ms: int = 0,
) -> tuple[bool, int]:
    """Record one outcome, and queue its status callback in the same script (when the
    campaign or account has a callback URL). False when the attempt was stale; and the
    campaign's recipients still open. ``index_ttl_ms`` > 0: the provider settles by webhook
    (``batches.finish_counted``)."""
    now = s.clock.now_ms()
    url = await callbacks.url_for(s, campaign_id, account)
    (applied,), open_left = await batches.finish_counted(
        s.ledger,
        campaign_id,
        account,
        [outcome],
        prefix="",
        now_ms=now,
        sent_at_ms=sent_at_ms,
        lane=lane,
        callback_url=url,
        callback_ids=[callbacks.new_id(now)] if url else (),
        phones={outcome.index: phone} if phone else None,
        index_ttl_ms=index_ttl_ms,
    )
    return applied, open_left


def quiet_hours(campaign: Campaign, account: Account) -> Daily | None:
    """The campaign's quiet hours, else the account's (falling back to its time zone)."""
    if campaign.schedule and campaign.schedule.quiet:
        return campaign.schedule.quiet
    if account.quietHours is not None:
        hours = account.quietHours
        return Daily(hours.start, hours.end, account.timezone or "UTC")
    return None


async def _sent_recently(s: HasPacer, account: str, text_hash: str, since_ms: int) -> bool:
    (score,) = await s.pacer.sent_text_times(account, [text_hash])
    return score is not None and score >= since_ms
