"""Several sends of one campaign in flight at once, for providers that allow it.

The worker's loop takes one step at a time: claim a recipient, send, record. Against an API
that answers in 100 ms that is about 9 messages a second per campaign, far below a Cloud API
number's 80. For an account with no pacing delay (``MESSAGE_DELAY`` / ``delayMs`` 0) whose
provider declares ``max_in_flight`` (the Cloud API does), :class:`Pipeline` keeps up to that
many steps running side by side. Each is the ordinary step (ledger claim -> provider ->
ledger finish), so every per-recipient guarantee holds unchanged; only the waiting overlaps.

The provider's messages-per-second limit (``messages_per_second``) is kept by
:func:`throttle`, a slot reserved in Redis (shared by every process) *before* the claim: a
send waiting for its slot holds no recipient, so it can never turn into an unknown outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from waqtor.domain.accounts import gap_ms
from waqtor.providers.base import Provider
from waqtor.providers.registry import UnknownProvider
from waqtor.services import Services

if TYPE_CHECKING:  # the send path imports this module for throttle()
    from waqtor.sender import Step

#: Step kinds that report a recipient's outcome; any other kind is control for the worker.
SEND_KINDS = frozenset({"sent", "failed", "retry", "unknown"})
#: Control kinds that say "nothing to do just now" and give way to any other control.
_WEAK = frozenset({"inflight", "early"})
_WIDTH_CACHE_S = 1.0
_SLOT_TTL_MS = 60_000


async def throttle(
    s: Services, account: str, provider: Provider, wake: asyncio.Event | None = None
) -> bool:
    """Wait for the account's next slot under its provider's messages-per-second limit.
    False if ``wake`` interrupted the wait."""
    mps = getattr(provider, "messages_per_second", None)
    if not mps:
        return True
    # The limit belongs to the phone number: accounts sharing one share its slots.
    owner = str(getattr(provider, "throttle_key", None) or account)
    now = s.clock.now_ms()
    slot = await s.scripts["throttle"](
        keys=[s.keys.throughput_next_ms(owner)], args=[now, 1000.0 / mps, _SLOT_TTL_MS]
    )
    return await s.clock.sleep_until(int(slot), wake)


async def width(s: Services, account_name: str) -> int:
    """How many sends of one campaign may be in flight on this account: the provider's
    ``max_in_flight`` when the account has no pacing delay, else 1."""
    account = await s.accounts.get(account_name)
    if account is None or account.paused:
        return 1
    try:
        provider = s.providers.get(account)
    except UnknownProvider:
        return 1
    wide = int(getattr(provider, "max_in_flight", 1) or 1)
    if wide <= 1 or gap_ms(account, s.settings.message_delay, s.clock.now_ms()) > 0:
        return 1
    return wide


class Pipeline:
    """Steps of one campaign (one account's share of it), up to :func:`width` at once.

    ``next()`` returns outcomes as they complete. When a step answers anything else (done,
    wait, paused, interrupted ...), no new step starts; the running ones finish and their
    outcomes come first, then that answer, so the worker acts on it with nothing in flight.
    With a width of 1 it is exactly the plain loop.
    """

    def __init__(
        self, services: Services, account: str, step: Callable[[], Awaitable[Step]]
    ) -> None:
        self.s = services
        self.account = account
        self._step = step
        self._running: set[asyncio.Task[Step]] = set()
        self._ready: deque[Step] = deque()
        self._control: Step | None = None
        self._error: BaseException | None = None
        self._width = 1
        self._width_at = 0.0

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def busy(self) -> bool:
        """Steps running, or answers not yet handed out."""
        return bool(self._running or self._ready or self._control is not None)

    async def _current_width(self) -> int:
        now = time.monotonic()
        if now - self._width_at > _WIDTH_CACHE_S:
            self._width = await width(self.s, self.account)
            self._width_at = now
        return self._width

    async def drain(self) -> None:
        """Let the sends still in flight finish (each records its own outcome), dropping
        their reports: for a loop that stops before the pipeline said so."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._running.clear()
        self._ready.clear()
        self._control = None
        self._error = None

    async def next(self) -> Step:
        if not self._running and not self._ready and self._control is None:
            if await self._current_width() <= 1:
                return await self._step()
        try:
            return await self._next()
        except asyncio.CancelledError:
            for task in self._running:
                task.cancel()
            raise

    async def _next(self) -> Step:
        while True:
            if self._ready:
                return self._ready.popleft()
            if not self._running:
                if self._error is not None:
                    error, self._error = self._error, None
                    self._control = None
                    raise error
                if self._control is not None:
                    control, self._control = self._control, None
                    return control
            if self._control is None and self._error is None:
                wide = await self._current_width()
                while len(self._running) < wide:
                    self._running.add(asyncio.ensure_future(self._step()))
            done, _ = await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                self._running.discard(task)
                if task.cancelled():
                    continue
                exc = task.exception()
                if exc is not None:
                    self._error = self._error or exc
                    continue
                step = task.result()
                if step.kind in SEND_KINDS:
                    self._ready.append(step)
                elif self._control is None or (
                    self._control.kind in _WEAK and step.kind not in _WEAK
                ):
                    self._control = step
