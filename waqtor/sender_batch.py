"""The send path for many recipients at once, for accounts with nothing to pace.

claim N (one script) -> render -> provider.send_batch (one request) -> record N (one script).

It keeps every rule of the one-at-a-time path (``Sender.step``): each recipient has its own
attempt id, written before anything is sent, so a worker killed mid-batch leaves ``unknown``
recipients, never a duplicate; suppression, caps, cool-downs, quiet hours, the duplicate guard,
retries and the breaker apply per recipient. A batch is in flight the way up to N sends are
in flight on the Cloud API path: a ban signal stops the next batch, not the rest of this one.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any, Protocol

from waqtor import callbacks
from waqtor.breaker import BAN_SIGNALS
from waqtor.concurrency import SEND_KINDS
from waqtor.domain.accounts import effective_caps, gap_ms
from waqtor.domain.schedule import recipient_zone
from waqtor.domain.status import RecipientStatus
from waqtor.domain.templates import TemplateError, builtin_values, render
from waqtor.providers import content
from waqtor.providers.base import (
    AmbiguousError,
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
from waqtor.sender import Campaign, Sender, Step, quiet_hours
from waqtor.store import batches
from waqtor.store.batches import Claimed, Outcome


class BatchProvider(Provider, Protocol):
    async def send_batch(
        self, messages: list[OutgoingMessage]
    ) -> list[SendResult | ProviderError]: ...


def batch_provider(provider: Provider) -> BatchProvider | None:
    """The provider, if it takes batches and nothing makes it track sends one by one (a
    messages-per-second limit, or status webhooks that need each attempt indexed first)."""
    if not hasattr(provider, "send_batch"):
        return None
    if getattr(provider, "messages_per_second", None):
        return None
    if getattr(provider, "settles_by_webhook", False):
        return None
    return provider  # type: ignore[return-value]


async def send_batch(
    sender: Sender, campaign: Campaign, token: str, lane: int = 0, lock_job: str | None = None
) -> list[Step] | None:
    """Send up to ``SEND_BATCH`` recipients of ``lane``. None when this lane must go one at a
    time just now (a pacing delay, a sending window, a provider without batches, or nothing
    left to claim, where ``Sender.step`` says whether the lane is done or must wait)."""
    s = sender.s
    size = s.settings.send_batch
    if size <= 1 or (campaign.schedule is not None and campaign.schedule.window is not None):
        return None
    name = campaign.accounts[lane]
    account = await s.accounts.get(name)
    if account is None or account.paused:
        return None  # Sender.step reports it
    try:
        provider = batch_provider(s.providers.get(account))
    except UnknownProvider:
        return None
    now = s.clock.now_ms()
    if provider is None or gap_ms(account, s.settings.message_delay, now) > 0:
        return None
    caps = effective_caps(account, date.today(), now)
    size = min(size, sender.batch_sizes.get(name, 1))
    prefix = uuid.uuid4().hex
    claimed = await batches.claim(
        s.ledger,
        campaign.id,
        token=token,
        prefix=prefix,
        now_ms=now,
        worker_id=sender.worker_id,
        lease_ms=s.settings.send_lease_ms,
        account=name,
        size=size,
        hourly_cap=caps.hourly,
        daily_cap=caps.daily,
        lane=lane,
        lanes=len(campaign.accounts),
        lock_job=lock_job,
    )
    if not isinstance(claimed, list):
        if claimed.kind == "empty":
            return None
        return [Step(claimed.kind, due_ms=claimed.due_ms, error=claimed.reason or None)]
    batch = _Batch(sender, campaign, lane, account.name, prefix, claimed)
    await batch.run(provider, account)
    sender.batch_sizes[name] = batch.next_size(size, s.settings.send_batch)
    return batch.steps()


#: What the worker hears about an outcome: a step of this kind.
_KINDS = {
    RecipientStatus.SENT: "sent",
    RecipientStatus.FAILED: "failed",
    RecipientStatus.RETRY: "retry",
    RecipientStatus.UNKNOWN: "unknown",
    RecipientStatus.SKIPPED: "skipped",
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

    def close(self, c: Claimed, status: RecipientStatus, **kw: Any) -> None:
        self.outcomes.append(Outcome(c.index, c.attempt_id, status, **kw))

    def steps(self) -> list[Step]:
        """One step per kind of outcome, not one per recipient: the worker acts per kind
        (report progress, or stop on an unavailable provider). Every recipient's own outcome
        is in the ledger."""
        out: dict[str, Step] = {}
        for o in self.outcomes:
            kind = "deferred" if o.deferral else _KINDS[o.status]
            if kind not in out:
                out[kind] = Step(kind, o.index, error=o.reason or None, error_code=o.error_code)
        steps = list(out.values())
        if self.unavailable is not None:
            steps.append(Step("retry", error=self.unavailable, unavailable=True))
        return steps

    def next_size(self, size: int, limit: int) -> int:
        """Slow start: batches begin at one recipient and double while every send goes
        through. A ban signal or an unavailable provider drops the size back to one, so an
        account in trouble sends a step at a time (the breaker sees each outcome before the
        next send, as on the one-at-a-time path); other refusals and unknown outcomes halve it."""
        halve = False
        for o in self.outcomes:
            if o.error_code in BAN_SIGNALS:
                return 1
            if o.status in (RecipientStatus.RETRY, RecipientStatus.UNKNOWN) and not o.deferral:
                halve = True
        if self.unavailable is not None:
            return 1
        return max(1, size // 2) if halve else min(limit, size * 2)

    async def run(self, provider: BatchProvider, account: Any) -> None:
        s, clock, campaign = self.s, self.s.clock, self.campaign
        quiet = quiet_hours(campaign, account)
        builtins = builtin_values("", s.settings.signature, datetime.now(self.sender.zone))
        dedupe = campaign.schedule.dedupe_ms if campaign.schedule else 0
        ready: list[tuple[Claimed, OutgoingMessage, str]] = []
        rich = campaign.wa_template is not None or campaign.media is not None
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
            values = {**builtins, "phone": recipient.phone}
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
            digest = hashlib.sha1(f"{recipient.phone}\0{text}".encode()).hexdigest()[:16]
            message = OutgoingMessage(
                self.account, recipient.phone, text, campaign.id, c.attempt_id, **extras
            )
            ready.append((c, message, digest))
        if dedupe:
            ready = await self._drop_recent(ready, clock.now_ms() - dedupe)
        started = clock.now_ms()
        if ready:
            await self._send(provider, ready, started)
        now = clock.now_ms()
        url = await callbacks.url_for(s, campaign.id, self.account)
        await batches.finish(
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
        )
        if ready:
            elapsed = clock.now_ms() - started
            await self.sender.observe(self.account, elapsed / len(ready))

    async def _drop_recent(
        self, ready: list[tuple[Claimed, OutgoingMessage, str]], since_ms: int
    ) -> list[tuple[Claimed, OutgoingMessage, str]]:
        """The duplicate guard: skip a (phone, text) this account sent recently, or that
        comes twice in this batch."""
        scores = await self.s.redis.zmscore(
            self.s.keys.sent_texts(self.account), [d for _, _, d in ready]
        )
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

    async def _send(
        self,
        provider: BatchProvider,
        ready: list[tuple[Claimed, OutgoingMessage, str]],
        started: int,
    ) -> None:
        s, sender = self.s, self.sender
        timeout = s.settings.provider_timeout_ms / 1000.0
        try:
            async with asyncio.timeout(timeout):
                results = await provider.send_batch([m for _, m, _ in ready])
        except TimeoutError:
            lease_end = s.clock.now_ms() + s.settings.send_lease_ms
            reason = "no answer from the provider in time; the message may have gone out"
            for c, _, _ in ready:
                self.close(
                    c,
                    RecipientStatus.UNKNOWN,
                    error_code="provider_timeout",
                    reason=reason,
                    due_ms=lease_end,
                )
            return
        sent = 0
        for (c, _, digest), result in zip(ready, results, strict=True):
            if isinstance(result, SendResult):
                self.close(c, RecipientStatus.SENT, message_id=result.message_id, text_hash=digest)
                sent += 1
            elif isinstance(result, PermanentError):
                self.close(
                    c,
                    RecipientStatus.FAILED,
                    error_code=result.code,
                    reason=result.reason,
                )
                await sender.breaker.record(self.account, True, result.code)
            elif isinstance(result, TransientError):
                await self._transient(c, result)
            elif isinstance(result, AmbiguousError):
                self.close(
                    c,
                    RecipientStatus.UNKNOWN,
                    error_code=result.code,
                    reason=result.reason,
                    due_ms=s.clock.now_ms() + s.settings.send_lease_ms,
                )
            else:  # any other ProviderError: the message was refused, try again later
                await self._transient(c, TransientError(result.code, result.reason))
        sender.breaker.record_ok(self.account, sent)

    async def _transient(self, c: Claimed, exc: TransientError) -> None:
        s, clock = self.s, self.s.clock
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


class Overlapped:
    """Two batches of a lane in flight at once: while Redis runs one batch's scripts, the
    worker renders and sends the other (each claim is atomic, so they never share a
    recipient). Outcomes come back batch by batch, in the order the batches started.
    ``width`` says how many may run: one while the account is in trouble (see
    ``_Batch.next_size``), so its breaker sees each outcome before the next send."""

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
            if steps is None or any(step.kind not in SEND_KINDS for step in steps):
                self._stopped = True  # a control answer: start nothing more, drain the rest
            if steps:
                return steps

    async def drain(self) -> None:
        """Let a batch still in flight finish (it records its own outcomes)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._running.clear()
        self._stopped = False


def overlap(sender: Sender, account: str) -> int:
    """Batches of ``account`` that may be in flight at once (``Overlapped``)."""
    return 2 if sender.batch_sizes.get(account, 1) > 1 else 1
