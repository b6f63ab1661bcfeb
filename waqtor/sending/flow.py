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
#: A claim takes at most ``messages_per_second`` x this many recipients (s): the rate slots
#: of one claim span about this long, which bounds how long a claimed recipient, and the room
#: its request holds under the limit, waits for its slot.
SLOT_HORIZON_S = 0.01


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
        self._next_departure_ms = 0.0
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

    def claims_in_flight(self, size: int, messages_per_second: float | None = None) -> int:
        """Claims of one lane that may be in flight at once: one while the limit is 1 (each
        outcome is known before the next claim), else enough to keep ``width`` requests busy
        with one more being claimed or recorded; under a rate limit, no more than cover the
        answer time with slots (claims further ahead would only hold room while they wait)."""
        if self.width < 2 or (self.batch_limit > 1 and self.batch_size < 2):
            return 1
        if self.batch_limit > 1:
            return self.width
        claims = 1 + math.ceil(self.width / max(1, size))
        if messages_per_second and self.srtt_s:
            # Twice the answer time, for the claim and record around each request, and a few
            # more: a claim waiting for its slots holds no recipient, only room.
            span_s = size / messages_per_second
            claims = min(claims, 3 + math.ceil(2 * self.srtt_s / span_s))
        return claims

    def flowing(self, most: int) -> bool:
        """Sends go through without trouble: batches at full size (``most`` recipients, or
        the provider's batch size), or several requests in flight at once."""
        if self.batch_limit > 1:
            return self.batch_size >= min(most, self.batch_limit)
        return self.width >= 2

    # ---- requests ----
    async def acquire(self, count: int = 1) -> list[int]:
        """Wait for room for ``count`` requests under the limit (all of it while nothing is in
        flight, even above the limit); returns their numbers, for ``release``."""
        while self.in_flight and self.in_flight + count > self.width:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
        self.in_flight += count
        first = self.started + 1
        self.started += count
        return list(range(first, self.started + 1))

    def give_back(self, tickets: list[int]) -> None:
        """Room taken for requests that were never made (fewer recipients claimed)."""
        self.in_flight -= len(tickets)
        self._wake()

    def release(self, ticket: int, signal: Signal, elapsed_s: float | None = None) -> None:
        self.in_flight -= 1
        if signal is Signal.OK and elapsed_s is not None and self._slow(elapsed_s):
            signal = Signal.CONGESTED
        self._adapt(ticket, signal)
        self._wake()

    def _wake(self) -> None:
        # Every waiter looks again (each takes what it needs, or waits anew).
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

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

    def departure(self, interval_ms: float) -> float:
        """How long (s) the next request must wait to leave this process ``interval_ms`` after
        the one before. The shared rate slots space the requests' *planned* times; one that
        leaves late must not leave right before the next, or the provider sees a burst. The
        times form a grid from the planned ones, so a timer's late wake-ups do not add up."""
        now = time.monotonic() * 1000.0
        at = max(now, self._next_departure_ms)
        self._next_departure_ms = at + interval_ms
        return (at - now) / 1000.0 if at - now > 1.0 else 0.0

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
