"""The send path for many recipients at once, for accounts with nothing to pace, whatever the
provider.

claim N (one script) -> render -> send -> record N (one script), where "send" is what the
provider declares (``Capabilities``): one request carrying the batch when it takes batches,
else one request per recipient, up to the adaptive in-flight limit at once
(``waqtor.sending.flow``), each in its own slot under the provider's messages-per-second limit
(``waqtor.sending.throughput``, reserved before the claim and shared by every process).

It keeps every rule of the one-at-a-time path (``Sender.step``): each recipient has its own
attempt id, written before anything is sent (and indexed for status webhooks where the
provider settles by webhook), so a worker killed mid-batch leaves ``unknown`` recipients,
never a duplicate; suppression, caps, cool-downs, quiet hours, the duplicate guard, retries
and the breaker apply per recipient. A ban signal stops the next claim, not the requests of
this one already under way.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from waqtor.domain.accounts import Account, caps_on, gap_ms
from waqtor.domain.schedule import recipient_zone
from waqtor.domain.status import RecipientStatus
from waqtor.domain.steps import OUTCOMES, StepKind
from waqtor.domain.templates import TemplateError, builtin_values, render
from waqtor.providers import content
from waqtor.providers.base import (
    AmbiguousError,
    Capabilities,
    OutgoingMessage,
    PermanentError,
    Provider,
    ProviderError,
    RateLimitedError,
    SendResult,
    TransientError,
    UnavailableError,
)
from waqtor.providers.registry import UnknownProvider
from waqtor.runtime import logs, process_metrics
from waqtor.runtime.parts import HasClock, HasSettings
from waqtor.sending import callbacks, throughput
from waqtor.sending.breaker import BAN_SIGNALS, THROTTLE_SIGNALS
from waqtor.sending.flow import Flow, Signal
from waqtor.sending.sender import Campaign, Sender, Step, quiet_hours
from waqtor.store import batches
from waqtor.store.batches import MESSAGE_INDEX_TTL_MS, Claimed, Outcome


class Batches(HasSettings, HasClock, Protocol):
    """What choosing the batch path reads."""


def batched(s: Batches, account: Account, caps: Capabilities, campaign: Campaign) -> bool:
    """Whether this account's sends of ``campaign`` go through this path: no pacing gap (the
    account's, the provider's human pacing), no sending window, ``SEND_BATCH`` above 1, and
    not a WhatsApp Web session (its checks run one message at a time, ``sending.human``)."""
    if s.settings.send_batch <= 1 or caps.min_gap_ms > 0 or caps.web_session:
        return False
    if campaign.schedule is not None and campaign.schedule.window is not None:
        return False
    return gap_ms(account, s.settings.message_delay, s.clock.now_ms()) == 0


async def send_batch(
    sender: Sender,
    campaign: Campaign,
    token: str,
    lane: int = 0,
    lock_job: str | None = None,
    wake: asyncio.Event | None = None,
) -> list[Step] | None:
    """Send up to ``SEND_BATCH`` recipients of ``lane``. None when this lane must go one at a
    time just now (a pacing delay, a sending window, or nothing left to claim, where
    ``Sender.step`` says whether the lane is done or must wait)."""
    s = sender.s
    name = campaign.accounts[lane]
    logs.bind(campaign=campaign.id, account=name, attempt=None)
    account = await s.accounts.get(name)
    if account is None or account.paused:
        return None  # Sender.step reports it
    try:
        provider = s.providers.get(account)
    except UnknownProvider:
        return None
    can = provider.capabilities
    if not batched(s, account, can, campaign):
        return None
    flow = sender.flow(name, can)
    size = flow.claim_size(s.settings.send_batch, can.messages_per_second)
    # One request per recipient: room under the in-flight limit first, then the rate slots,
    # then the claim once the last of the slots has come, then every request at once. So a
    # claimed recipient waits for nothing: a worker killed now leaves unknown only requests
    # under way (which the provider got), hardly one that never left. No request leaves
    # before its slot, and a claim's few requests together stay within the rate's headroom.
    single = flow.batch_limit == 1
    tickets = await flow.acquire(size) if single else []
    try:
        slot = await throughput.reserve(s, name, can, size)
        if slot:
            interval = throughput.interval_ms(can)
            last = slot + (size - 1) * interval if single else slot
            if not await s.clock.sleep_until(math.ceil(last), wake):
                return [Step(StepKind.INTERRUPTED)]
            if single:  # this process's claims never leave closer than their slots' span
                wait_s = flow.departure(size * interval)
                if wait_s:
                    await asyncio.sleep(wait_s)
        now = s.clock.now_ms()
        caps = caps_on(account, now)
        prefix = uuid.uuid4().hex
        claimed = await batches.claim(
            s.ledger,
            campaign.id,
            sender.claimant(campaign, token, lane, can, caps),
            prefix=prefix,
            now_ms=now,
            size=size,
            lock_job=lock_job,
        )
        if not isinstance(claimed, list):
            if claimed.kind is StepKind.EMPTY:
                return None
            return [Step(claimed.kind, due_ms=claimed.due_ms, error=claimed.reason or None)]
        batch = _Batch(sender, campaign, lane, account.name, prefix, claimed)
        await batch.run(provider, account, flow, slot, tickets)
        return batch.steps()
    finally:
        flow.give_back(tickets)  # the room of requests never made (the batch takes its own)


SENT = RecipientStatus.SENT

#: What the worker hears about an outcome: a step of this kind.
_KINDS = {
    RecipientStatus.SENT: StepKind.SENT,
    RecipientStatus.FAILED: StepKind.FAILED,
    RecipientStatus.RETRY: StepKind.RETRY,
    RecipientStatus.UNKNOWN: StepKind.UNKNOWN,
    RecipientStatus.SKIPPED: StepKind.SKIPPED,
}


class _Batch:
    def __init__(
        self,
        sender: Sender,
        campaign: Campaign,
        lane: int,
        account: str,
        prefix: str,
        claimed: list[Claimed],
    ) -> None:
        self.prefix = prefix
        self.sender = sender
        self.s = sender.s
        self.campaign = campaign
        self.lane = lane
        self.account = account
        self.claimed = claimed
        self.outcomes: list[Outcome] = []
        self.phones: dict[int, str] = {}
        self.unavailable: str | None = None  # why, when the provider as a whole is down
        self.sent = 0
        self.open_left = -1  # the campaign's open recipients once the outcomes are recorded

    def close(self, c: Claimed, status: RecipientStatus, **kw: Any) -> None:
        self.outcomes.append(Outcome(c.index, c.attempt_id, status, **kw))

    def steps(self) -> list[Step]:
        """One step per kind of outcome, not one per recipient: the worker acts per kind
        (report progress, or stop on an unavailable provider). Every recipient's own outcome
        is in the ledger."""
        out: dict[StepKind, Step] = {}
        for o in self.outcomes:
            kind = StepKind.DEFERRED if o.deferral else _KINDS[o.status]
            if kind not in out:
                out[kind] = Step(
                    kind,
                    o.index,
                    error=o.reason or None,
                    error_code=o.error_code,
                    open_left=self.open_left,
                )
        steps = list(out.values())
        if self.unavailable is not None:
            steps.append(Step(StepKind.RETRY, error=self.unavailable, unavailable=True))
        return steps

    async def run(
        self, provider: Provider, account: Any, flow: Flow, slot_ms: float, tickets: list[int]
    ) -> None:
        """Render, send and record the claimed recipients. ``tickets``: room under the
        in-flight limit taken for one request per recipient (each one used is removed)."""
        s, clock, campaign = self.s, self.s.clock, self.campaign
        quiet = quiet_hours(campaign, account)
        builtins = builtin_values("", s.settings.signature, datetime.now(self.sender.zone))
        dedupe = campaign.schedule.dedupe_ms if campaign.schedule else 0
        ready: list[tuple[Claimed, OutgoingMessage, str]] = []
        rich = campaign.wa_template is not None or campaign.media is not None
        # One dict for every recipient, its "phone" set each time: render and content read it
        # during their call only (a copy per recipient cost more than rendering).
        values = dict(builtins)
        sha1 = hashlib.sha1
        for c in self.claimed:
            recipient = c.recipient
            self.phones[c.index] = recipient.phone
            if quiet is not None:
                zone = recipient_zone(recipient.phone, quiet.zone)
                inside, ends = quiet.inside(clock.now_ms(), zone)
                if inside:  # deferred, not skipped: it goes out when its quiet hours end
                    self.close(
                        c,
                        RecipientStatus.RETRY,
                        error_code="quiet_hours",
                        reason=f"quiet hours {quiet.start}-{quiet.end} in {zone}",
                        due_ms=ends,
                        deferral=True,
                    )
                    continue
            values["phone"] = recipient.phone
            seed = f"{campaign.id}:{c.index}"
            try:
                text = render(
                    recipient.message or campaign.template, recipient.variables, values, seed=seed
                )
                extras: dict[str, Any] = {}
                if rich:
                    wa, media, own = campaign.wa_template, campaign.media, recipient.variables
                    extras = content.for_recipient(wa, media, own, values, seed, text)
            except TemplateError as exc:
                self.close(c, RecipientStatus.FAILED, error_code="template", reason=exc.reason)
                continue
            digest = sha1(f"{recipient.phone}\0{text}".encode()).hexdigest()[:16]
            message = OutgoingMessage(
                self.account, recipient.phone, text, campaign.id, c.attempt_id, **extras
            )
            ready.append((c, message, digest))
        if dedupe:
            ready = await self._drop_recent(ready, clock.now_ms() - dedupe)
        started = clock.now_ms()
        if ready:
            if flow.batch_limit > 1:
                await self._send_batches(provider, ready, flow, slot_ms)
            else:
                await self._send_each(provider, ready, flow, tickets)
            sender = self.sender
            sender.breaker.record_ok(self.account, self.sent)
        now = clock.now_ms()
        url = await callbacks.url_for(s, campaign.id, self.account)
        _, self.open_left = await batches.finish_counted(
            s.ledger,
            campaign.id,
            self.account,
            self.outcomes,
            prefix=self.prefix,
            now_ms=now,
            sent_at_ms=started if ready else 0,
            lane=self.lane,
            callback_url=url,
            callback_ids=[callbacks.new_id(now) for _ in self.outcomes] if url else (),
            phones=self.phones,
            index_ttl_ms=MESSAGE_INDEX_TTL_MS if provider.capabilities.settles_by_webhook else 0,
        )
        if ready:
            elapsed = clock.now_ms() - started
            await self.sender.observe(self.account, elapsed / len(ready))

    async def _drop_recent(
        self, ready: list[tuple[Claimed, OutgoingMessage, str]], since_ms: int
    ) -> list[tuple[Claimed, OutgoingMessage, str]]:
        """The duplicate guard: skip a (phone, text) this account sent recently, or that
        comes twice in this batch."""
        scores = await self.s.pacer.sent_text_times(self.account, [d for _, _, d in ready])
        keep: list[tuple[Claimed, OutgoingMessage, str]] = []
        seen: set[str] = set()
        for (c, message, digest), score in zip(ready, scores, strict=True):
            if digest in seen or (score is not None and score >= since_ms):
                reason = "got the same text from this account recently"
                self.close(
                    c,
                    RecipientStatus.SKIPPED,
                    error_code="duplicate_text",
                    reason=reason,
                )
                continue
            seen.add(digest)
            keep.append((c, message, digest))
        return keep

    async def _send_batches(
        self,
        provider: Provider,
        ready: list[tuple[Claimed, OutgoingMessage, str]],
        flow: Flow,
        slot_ms: float,
    ) -> None:
        """One request per ``batch_size`` messages (the claim is sized to one)."""
        s = self.s
        size = flow.batch_limit
        interval = throughput.interval_ms(provider.capabilities)
        for start in range(0, len(ready), size):
            chunk = ready[start : start + size]
            if interval:  # a request of k messages takes k rate slots: it goes at the last one
                last = start + len(chunk) - 1
                await s.clock.sleep_until(math.ceil(slot_ms + last * interval))
            (ticket,) = await flow.acquire()
            signal = Signal.OK
            try:
                try:
                    with process_metrics.provider_call(provider.name):
                        async with asyncio.timeout(s.settings.provider_timeout_ms / 1000.0):
                            results = await provider.send_batch([m for _, m, _ in chunk])
                    sent = 0  # counted once per request, not once per message
                    for (_, message, _), result in zip(chunk, results, strict=True):
                        if type(result) is SendResult:
                            sent += 1
                        elif isinstance(result, ProviderError):
                            process_metrics.provider_error(provider.name, result.code)
                            process_metrics.outcome(provider.name, message.account, result)
                        else:
                            process_metrics.outcome(provider.name, message.account, None)
                    if sent:
                        process_metrics.outcome(provider.name, self.account, None, sent)
                except TimeoutError:
                    self._timed_out(chunk)
                    signal = Signal.CONGESTED
                    continue
                for (c, _, digest), result in zip(chunk, results, strict=True):
                    if type(result) is SendResult:  # the usual answer, without a coroutine
                        self.outcomes.append(
                            Outcome(
                                c.index, c.attempt_id, SENT, result.message_id, "", "", 0, digest
                            )
                        )
                        self.sent += 1
                    else:
                        signal = _worse(signal, await self._outcome(c, digest, result))
            finally:
                flow.release(ticket, signal)
                flow.batch_done(signal)

    async def _send_each(
        self,
        provider: Provider,
        ready: list[tuple[Claimed, OutgoingMessage, str]],
        flow: Flow,
        tickets: list[int],
    ) -> None:
        """One request per message, all at once, each under its own room in the in-flight
        limit (taken before the claim, as were the rate slots)."""
        timeout = self.s.settings.provider_timeout_ms / 1000.0

        mine = [tickets.pop() for _ in ready]
        answered = [False] * len(ready)
        loop = asyncio.get_running_loop()
        # The requests' tasks count themselves down to one future (gather would add a Python
        # callback and an ensure_future per request: a tenth of this path's CPU).
        left = len(ready)
        all_done: asyncio.Future[None] = loop.create_future()

        async def one(n: int, c: Claimed, message: OutgoingMessage, digest: str) -> None:
            ticket = mine[n]
            signal, elapsed = Signal.OK, None
            started = time.monotonic()
            try:
                try:
                    with process_metrics.provider_call(provider.name, message.account):
                        result: SendResult | ProviderError = await provider.send(message)
                    elapsed = time.monotonic() - started
                except ProviderError as exc:
                    result = exc
                answered[n] = True
                if type(result) is SendResult:  # the usual answer, without a coroutine
                    self.outcomes.append(
                        Outcome(c.index, c.attempt_id, SENT, result.message_id, "", "", 0, digest)
                    )
                    self.sent += 1
                else:
                    signal = await self._outcome(c, digest, result)
            except asyncio.CancelledError:
                signal = Signal.CONGESTED  # cut off by the deadline below
                raise
            finally:
                flow.release(ticket, signal, elapsed)
                nonlocal left
                left -= 1
                if not left and not all_done.done():
                    all_done.set_result(None)

        tasks = [loop.create_task(one(n, *item)) for n, item in enumerate(ready)]
        # One deadline for the claim (not a timer per request). Requests still unanswered
        # then are unknown.
        try:
            async with asyncio.timeout(timeout):
                await all_done
        except TimeoutError:
            self._timed_out([item for n, item in enumerate(ready) if not answered[n]])
        except BaseException:  # this batch is being cancelled: so are its requests
            for task in tasks:
                task.cancel()
            raise
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()  # past the deadline: unanswered, already closed as unknown
                    task.add_done_callback(_retrieve)
        # An error in a request's own handling (recording a breaker strike, say) is raised,
        # as gather raised it; every one is retrieved.
        errors = [t.exception() for t in tasks if t.done() and not t.cancelled()]
        for error in errors:
            if error is not None:
                raise error

    def _timed_out(self, items: list[tuple[Claimed, OutgoingMessage, str]]) -> None:
        lease_end = self.s.clock.now_ms() + self.s.settings.send_lease_ms
        reason = "no answer from the provider in time; the message may have gone out"
        for c, _, _ in items:
            self.close(
                c,
                RecipientStatus.UNKNOWN,
                error_code="provider_timeout",
                reason=reason,
                due_ms=lease_end,
            )

    async def _outcome(self, c: Claimed, digest: str, result: SendResult | ProviderError) -> Signal:
        """Close one recipient after its request; what it says about the flow."""
        s = self.s
        if isinstance(result, SendResult):
            self.close(c, RecipientStatus.SENT, message_id=result.message_id, text_hash=digest)
            self.sent += 1
            return Signal.OK
        if isinstance(result, PermanentError):
            self.close(c, RecipientStatus.FAILED, error_code=result.code, reason=result.reason)
            await self.sender.breaker.record(self.account, True, result.code)
            return Signal.BAN if result.code in BAN_SIGNALS else Signal.OK
        if isinstance(result, AmbiguousError):
            self.close(
                c,
                RecipientStatus.UNKNOWN,
                error_code=result.code,
                reason=result.reason,
                due_ms=s.clock.now_ms() + s.settings.send_lease_ms,
            )
            return Signal.CONGESTED
        if not isinstance(result, TransientError):
            # Any other ProviderError: the message was refused, try again later.
            result = TransientError(result.code, result.reason)
        await self._transient(c, result)
        if isinstance(result, UnavailableError) or result.code in BAN_SIGNALS:
            return Signal.BAN
        return Signal.CONGESTED

    async def _transient(self, c: Claimed, exc: TransientError) -> None:
        s, clock = self.s, self.s.clock
        if isinstance(exc, RateLimitedError) and exc.code in THROTTLE_SIGNALS:
            # The provider's throughput, not this recipient: again after the pause, without
            # using an attempt or striking the account (the flow slows down instead).
            self.close(
                c,
                RecipientStatus.RETRY,
                error_code=exc.code,
                reason=exc.reason,
                due_ms=clock.now_ms() + int(exc.retry_after_s * 1000),
                deferral=True,
            )
            return
        if isinstance(exc, RateLimitedError):
            # Throttling is about the account; a 5xx or an outage is the provider's problem.
            await self.sender.breaker.record(self.account, True, exc.code)
            due = clock.now_ms() + int(exc.retry_after_s * 1000)
        else:
            due = clock.now_ms() + self.sender.backoff_ms(c.attempt)
        unavailable = isinstance(exc, UnavailableError)
        if c.attempt > s.settings.max_retries and not unavailable:
            self.close(c, RecipientStatus.FAILED, error_code=exc.code, reason=exc.reason)
            return
        self.close(
            c,
            RecipientStatus.RETRY,
            error_code=exc.code,
            reason=exc.reason,
            due_ms=due,
        )
        if unavailable:
            self.unavailable = exc.reason


def _retrieve(task: asyncio.Task[None]) -> None:
    """Done callback of a request cut off by the deadline: its end is known already."""
    if not task.cancelled():
        task.exception()


def _worse(a: Signal, b: Signal) -> Signal:
    order = (Signal.OK, Signal.CONGESTED, Signal.BAN)
    return a if order.index(a) >= order.index(b) else b


class Overlapped:
    """Several claims of a lane in flight at once (``width()`` of them): while one batch's
    requests are out, the next is claimed and the last recorded (each claim is atomic, so
    they never share a recipient). Outcomes come back batch by batch, in the order the
    batches started. One at a time while the account is in trouble (``Flow``), so its
    breaker sees each outcome before the next send."""

    def __init__(
        self, fetch: Callable[[], Awaitable[list[Step] | None]], width: Callable[[], int]
    ) -> None:
        self._fetch = fetch
        self._width = width
        self._running: deque[asyncio.Task[list[Step] | None]] = deque()
        self._stopped = False

    async def next(self) -> list[Step] | None:
        """The next batch's outcomes. None when the batch path declined and nothing of it is
        still running: then the caller goes one step at a time."""
        while True:
            while not self._stopped and len(self._running) < self._width():
                self._running.append(asyncio.ensure_future(self._fetch()))
            if not self._running:
                self._stopped = False  # asked again later: try batches again
                return None
            try:
                steps = await asyncio.shield(self._running[0])
            finally:
                if self._running and self._running[0].done():
                    self._running.popleft()
            if steps is None or any(step.kind not in OUTCOMES for step in steps):
                self._stopped = True  # a control answer: start nothing more, drain the rest
            if steps:
                return steps

    async def drain(self) -> None:
        """Let a batch still in flight finish (it records its own outcomes)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._running.clear()
        self._stopped = False


async def overlap_of(sender: Sender, account: str) -> Callable[[], int]:
    """How many claims of ``account``'s lane may be in flight at once (``Overlapped``)."""
    s = sender.s
    found = await s.accounts.get(account)
    try:
        provider = s.providers.get(found or s.accounts.default())
    except UnknownProvider:
        return lambda: 1
    can = provider.capabilities
    flow = sender.flow(account, can)

    def width() -> int:
        size = flow.claim_size(s.settings.send_batch, can.messages_per_second)
        return flow.claims_in_flight(size, can.messages_per_second)

    return width
