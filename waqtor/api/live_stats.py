"""The body of ``GET /api/queue/stats``, read live and shared by concurrent requests.

Requests that arrive together share one Redis read (``SingleFlight``), and the body is encoded
to JSON once per read, not once per request. Each request still gets a read that started after
it arrived, so a change another client has just made is always in its answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from waqtor.api.models import ok
from waqtor.api.single_flight import SingleFlight
from waqtor.domain.clock import Clock
from waqtor.domain.waits import wait_reason
from waqtor.store.queue_stats import QueueFigures, QueueStatsReader


@dataclass(frozen=True)
class Snapshot:
    #: ``{"success": true, "data": {...}}``; shared by every request of one read: never mutate.
    body: dict[str, Any]
    #: ``body`` as JSON, byte for byte what FastAPI's JSONResponse would send.
    encoded: bytes


def account_alerts(figures: QueueFigures, now_ms: int) -> list[dict[str, Any]]:
    """Accounts the breaker (or an operator) paused, and accounts resting after a ban signal,
    sorted by name."""
    alerts: list[tuple[str, dict[str, Any]]] = [
        (name, {"account": name, "state": "paused", "reason": reason})
        for name, reason in figures.paused_accounts
    ]
    for name, cool in figures.cooling_until_ms.items():
        if cool > now_ms:
            alerts.append(
                (
                    name,
                    {
                        "account": name,
                        "state": "cooling",
                        "until": cool,
                        "reason": wait_reason("cooling", None, name, cool),
                    },
                )
            )
    return [alert for _, alert in sorted(alerts, key=lambda pair: pair[0])]


def render(content: Any) -> bytes:
    """JSON exactly as Starlette's ``JSONResponse.render`` writes it."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


class LiveStats:
    def __init__(self, reader: QueueStatsReader, clock: Clock) -> None:
        self.reader = reader
        self.clock = clock
        self.flight: SingleFlight[Snapshot] = SingleFlight(self._read)

    async def _read(self) -> Snapshot:
        figures = await self.reader.read()
        data = {
            **figures.jobs,
            "messages": figures.messages,
            "alerts": account_alerts(figures, self.clock.now_ms()),
        }
        body = ok(data)
        return Snapshot(body=body, encoded=render(body))

    async def get(self) -> Snapshot:
        return await self.flight.get()

    async def encoded(self) -> bytes:
        return (await self.flight.get()).encoded

    async def alerts(self) -> list[dict[str, Any]]:
        """The accounts' alerts alone, read now (for the health route)."""
        return account_alerts(await self.reader.read(), self.clock.now_ms())

    async def counts_and_alerts(self) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """The job counts and the accounts' alerts, from one read (for the health route)."""
        figures = await self.reader.read()
        return figures.jobs, account_alerts(figures, self.clock.now_ms())
