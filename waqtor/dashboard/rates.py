"""Messages sent per account per minute over the last hour, from the simulator's outbox.

The outbox only grows at its end, so the window reads just the entries added since the last
tick (and, once at start, the last hour backwards). Real providers keep no outbox: then the
overview omits the chart.
"""

from __future__ import annotations

import json
from collections import defaultdict

from waqtor.store.simulator import SimulatorStore

MINUTE_MS = 60_000
WINDOW_MIN = 60
_CHUNK = 5000
_BACKFILL_MAX = 500_000


class RateWindow:
    def __init__(self) -> None:
        self.cursor = -1  # next outbox index to read; -1: not started
        self.buckets: dict[str, dict[int, int]] = defaultdict(dict)

    def _add(self, raw_rows: list[str], cutoff_min: int) -> None:
        for raw in raw_rows:
            try:
                row = json.loads(raw)
                minute = int(row["ts"]) // MINUTE_MS
                account = str(row.get("account", "default"))
            except (ValueError, KeyError, TypeError):
                continue
            if minute >= cutoff_min:
                per = self.buckets[account]
                per[minute] = per.get(minute, 0) + 1

    async def _backfill(self, outbox: SimulatorStore, length: int, cutoff_ms: int) -> int:
        """Index of the first outbox entry of the last hour (reading backwards in chunks)."""
        start = length
        while start > 0 and length - start < _BACKFILL_MAX:
            lo = max(0, start - _CHUNK)
            rows = await outbox.outbox_range(lo, start - 1)
            first = json.loads(rows[0]).get("ts", 0) if rows else 0
            start = lo
            if int(first) < cutoff_ms:
                break
        return start

    async def update(self, outbox: SimulatorStore, now_ms: int) -> None:
        cutoff_min = now_ms // MINUTE_MS - WINDOW_MIN + 1
        length = await outbox.outbox_length()
        if length < self.cursor:  # the outbox was emptied
            self.cursor = -1
            self.buckets.clear()
        if self.cursor < 0:
            self.cursor = await self._backfill(outbox, length, cutoff_min * MINUTE_MS)
        while self.cursor < length:
            stop = min(length, self.cursor + _CHUNK) - 1
            self._add([str(r) for r in await outbox.outbox_range(self.cursor, stop)], cutoff_min)
            self.cursor = stop + 1
        for account in list(self.buckets):
            per = self.buckets[account]
            for minute in [m for m in per if m < cutoff_min]:
                del per[minute]
            if not per:
                del self.buckets[account]

    def accounts(self) -> list[str]:
        return sorted(self.buckets)

    def series(self, account: str, now_ms: int) -> list[int]:
        """Sends per minute, oldest first, the current minute last."""
        now_min = now_ms // MINUTE_MS
        per = self.buckets.get(account, {})
        return [per.get(m, 0) for m in range(now_min - WINDOW_MIN + 1, now_min + 1)]
