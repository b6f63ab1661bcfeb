"""Time, behind a seam so tests can inject a clock instead of waiting."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime
from typing import Protocol


def day_of(now_ms: int) -> date:
    """The calendar day (UTC) at ``now_ms``: the day an account's caps and warm-up go by, taken
    from the injected clock, never from the machine's calendar."""
    return datetime.fromtimestamp(now_ms / 1000, UTC).date()


class Clock(Protocol):
    def now_ms(self) -> int: ...

    async def sleep_until(self, when_ms: int, wake: asyncio.Event | None = None) -> bool:
        """Sleep until ``when_ms``; return False early if ``wake`` is set first."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def sleep_until(self, when_ms: int, wake: asyncio.Event | None = None) -> bool:
        delay = (when_ms - self.now_ms()) / 1000.0
        if delay <= 0:
            return True
        if wake is None:
            await asyncio.sleep(delay)
            return True
        try:
            await asyncio.wait_for(wake.wait(), timeout=delay)
        except TimeoutError:
            return True
        return False
