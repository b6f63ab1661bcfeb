"""How much one sender may have in flight, adapted to what the provider answers.

One :class:`Flow` per sender (an account, or the phone number several accounts share) in each
worker process. It holds the *in-flight limit*: how many provider requests may be running at
once. The limit adapts the way TCP's congestion window does (additive increase,
multiplicative decrease):

- it starts at 1 and grows by 1 for every request that goes through (slow start: it doubles
  per round of requests) up to a threshold, then by about 1 per round, never above the
  provider's ``Capabilities.max_in_flight``;
- a throughput refusal (the Cloud API's 130429, an HTTP 429), a refusal of the request, an
  unanswered request, or a rising answer time (the smoothed time above twice the least recent
  one, plus 50 ms) halves it, **once per round**: the refusals of requests that started before
  the last cut belong to that cut, so a burst of 130429s halves the limit once and is never
  counted as many signals;
- a ban signal (spam, policy block, pair rate limit) or an unavailable provider drops it to 1,
  so the breaker sees each outcome before the next send.

For a provider that takes batches it also holds the batch size, which starts at one recipient
and doubles while every send goes through (a ban signal or an outage drops it to one, other
refusals halve it).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from enum import Enum

#: An answer time above ``LATENCY_FACTOR`` x the least recent one, plus ``LATENCY_SLACK_S``,
#: counts as congestion.
LATENCY_FACTOR = 2.0
LATENCY_SLACK_S = 0.05
#: The least answer time is taken over the last two periods of this length (s).
BASE_PERIOD_S = 10.0
#: Claimed recipients wait for their rate slot at most about this long (s): a claim never
#: takes more than ``messages_per_second`` x this many.
SLOT_HORIZON_S = 0.05


class Signal(Enum):
    OK = "ok"
    #: Slow down: a throughput limit, a refused or unanswered request, a rising answer time.
    CONGESTED = "congested"
    #: Stop and look: a ban signal or an unavailable provider.
    BAN = "ban"


class Flow:
    def __init__(self, ceiling: int, *, batch_limit: int = 1) -> None:
        #: Requests in flight at most (``Capabilities.max_in_flight``).
        self.ceiling = max(1, ceiling)
        self.limit = 1.0
        self.threshold = float(self.ceiling)
        #: Messages per request at most (1: one message per request).
        self.batch_limit = max(1, batch_limit)
        self.batch_size = 1
        self.in_flight = 0
        self.started = 0  # requests started, numbered from 1
        self._cut_at = 0  # the number of the last request started before the last cut
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.srtt_s = 0.0
        self._min_now = math.inf
        self._min_before = math.inf
        self._period_end = 0.0

    # ---- sizes ----
    @property
    def width(self) -> int:
        """Requests that may run at once now."""
        return max(1, min(self.ceiling, int(self.limit)))

    def claim_size(self, most: int, messages_per_second: float | None) -> int:
        """Recipients one claim should take (at most ``most``, ``SEND_BATCH``)."""
        if self.batch_limit > 1:
            return max(1, min(most, self.batch_size, self.batch_limit))
        size = min(most, self.width)
        if messages_per_second:
            size = min(size, max(1, int(messages_per_second * SLOT_HORIZON_S)))
        return max(1, size)

    def claims_in_flight(self, size: int) -> int:
        """Claims of one lane that may be in flight at once: one while the limit is 1 (each
        outcome is known before the next claim), else enough to keep ``width`` requests busy
        with one more being claimed or recorded."""
        if self.width < 2 or (self.batch_limit > 1 and self.batch_size < 2):
            return 1
        if self.batch_limit > 1:
            return self.width
        return 1 + math.ceil(self.width / max(1, size))

    def flowing(self, most: int) -> bool:
        """Sends go through without trouble: batches at full size (``most`` recipients, or
        the provider's batch size), or several requests in flight at once."""
        if self.batch_limit > 1:
            return self.batch_size >= min(most, self.batch_limit)
        return self.width >= 2

    # ---- requests ----
    async def acquire(self) -> int:
        """Wait for room under the limit; returns the request's number (for ``release``)."""
        while self.in_flight >= self.width:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
        self.in_flight += 1
        self.started += 1
        return self.started

    def release(self, ticket: int, signal: Signal, elapsed_s: float | None = None) -> None:
        self.in_flight -= 1
        if signal is Signal.OK and elapsed_s is not None and self._slow(elapsed_s):
            signal = Signal.CONGESTED
        self._adapt(ticket, signal)
        self._wake()

    def _wake(self) -> None:
        room = self.width - self.in_flight
        while room > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                room -= 1

    def _adapt(self, ticket: int, signal: Signal) -> None:
        if signal is Signal.BAN:
            self.threshold = max(1.0, self.limit / 2)
            self.limit = 1.0
            self._cut_at = self.started
            return
        if signal is Signal.CONGESTED:
            if ticket > self._cut_at:  # one cut per round, however many refusals it brings
                self.threshold = max(1.0, self.limit / 2)
                self.limit = self.threshold
                self._cut_at = self.started
            return
        if self.limit < self.threshold:
            self.limit += 1.0
        else:
            self.limit += 1.0 / self.limit
        self.limit = min(self.limit, float(self.ceiling))

    def batch_done(self, signal: Signal) -> None:
        """After a batch request (providers that take batches): size the next one."""
        if signal is Signal.BAN:
            self.batch_size = 1
        elif signal is Signal.CONGESTED:
            self.batch_size = max(1, self.batch_size // 2)
        else:
            self.batch_size = min(self.batch_limit, self.batch_size * 2)

    # ---- answer times ----
    def _slow(self, elapsed_s: float) -> bool:
        now = time.monotonic()
        if now >= self._period_end:
            self._min_before, self._min_now = self._min_now, math.inf
            self._period_end = now + BASE_PERIOD_S
        self._min_now = min(self._min_now, elapsed_s)
        self.srtt_s = elapsed_s if not self.srtt_s else 0.875 * self.srtt_s + 0.125 * elapsed_s
        base = min(self._min_now, self._min_before)
        return self.srtt_s > LATENCY_FACTOR * base + LATENCY_SLACK_S
