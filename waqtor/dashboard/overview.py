"""The overview's numbers: job and message counts, send rates and health per account, worker
heartbeats and Redis memory, read in a handful of round trips per tick."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from waqtor.dashboard import banner, jobs
from waqtor.dashboard.rates import MINUTE_MS, WINDOW_MIN, RateWindow
from waqtor.domain.accounts import caps_on
from waqtor.domain.liveness import alive as seen_alive
from waqtor.domain.status import RecipientStatus
from waqtor.domain.waits import cap_reached, wait_reason
from waqtor.runtime.parts import (
    HasAccounts,
    HasClock,
    HasEngine,
    HasJobIndex,
    HasProviders,
    HasSettings,
    HasSimulator,
    HasStore,
)


class Overviews(
    HasSettings,
    HasClock,
    HasEngine,
    HasStore,
    HasAccounts,
    HasJobIndex,
    HasProviders,
    HasSimulator,
    Protocol,
):
    """What the overview reads."""


_NEXT_WAITING = 20


@dataclass(frozen=True)
class Account:
    name: str
    state: str  # ok | cooling down | paused | capped
    detail: str
    until_ms: int  # when a rest or a cap ends (0: not resting)
    backlog: int
    last_hour: int | None  # None: unknown (no outbox and no cap window to count from)
    series: list[int] | None
    cap: int | None = None  # hourly cap in force, if the account has one


@dataclass(frozen=True)
class Worker:
    id: str
    host: str
    pid: int
    campaigns: int
    seen_ms: int
    alive: bool


@dataclass
class Snapshot:
    now_ms: int
    counts: dict[str, int]
    messages: dict[str, int]
    queue_paused: bool
    workers: list[Worker] = field(default_factory=list)
    memory: dict[str, str] = field(default_factory=dict)
    accounts: list[Account] = field(default_factory=list)


def _series(times_ms: list[int], now_ms: int) -> list[int]:
    """Sends per minute over the last hour, oldest first, from send times."""
    now_min = now_ms // MINUTE_MS
    out = [0] * WINDOW_MIN
    for ts in times_ms:
        slot = WINDOW_MIN - 1 - (now_min - ts // MINUTE_MS)
        if 0 <= slot < WINDOW_MIN:
            out[slot] += 1
    return out


def _workers(raw: dict[str, str], now_ms: int, heartbeat_ms: int) -> list[Worker]:
    out = []
    for worker_id, text in raw.items():
        try:
            beat: dict[str, Any] = json.loads(text)
        except ValueError:
            continue
        seen = int(beat.get("ts", 0))
        out.append(
            Worker(
                id=str(worker_id),
                host=str(beat.get("host", "")),
                pid=int(beat.get("pid", 0)),
                campaigns=len(beat.get("campaigns", [])),
                seen_ms=seen,
                alive=seen_alive(seen, now_ms, heartbeat_ms),
            )
        )
    return sorted(out, key=lambda w: (not w.alive, w.id))


class Overview:
    def __init__(self) -> None:
        self.rates = RateWindow()
        self._lock = asyncio.Lock()

    async def _busy_accounts(self, s: jobs.Lists) -> set[str]:
        """Accounts of the running campaigns and of the next ones in line."""
        ids = await s.engine.active_ids()
        ids += await s.engine.last_waiting_ids(_NEXT_WAITING)
        found = {"default"} if not ids else set()
        for row in await jobs.rows(s, ids):
            found.add(row.account)
        return found

    async def _accounts(self, s: Overviews, now_ms: int, paused: bool) -> list[Account]:
        known = {a.name: a for a in await s.accounts.all()}
        names = sorted(set(known) | set(self.rates.accounts()) | await self._busy_accounts(s))
        figures = await s.store.dashboard.accounts(names, now_ms)
        out = []
        for name, fig in zip(names, figures, strict=True):
            backlog, cool, hour = fig.backlog, fig.cool_until_ms, fig.hour_ms
            account = known.get(name)
            caps = caps_on(account, now_ms) if account else None
            hourly = caps.hourly if caps else None
            daily = caps.daily if caps else None
            series: list[int] | None = None
            if banner.simulates(s, account.provider if account else None):
                series = self.rates.series(name, now_ms)
            elif caps and caps.hourly is not None:
                series = _series(hour, now_ms)
            state, detail, until = "ok", "sending" if int(backlog or 0) > 0 else "idle", 0
            cap = cap_reached(
                hourly=hourly,
                daily=daily,
                sent_last_hour=len(hour),
                sent_last_day=fig.sent_in_day,
                first_in_hour_ms=hour[0] if hour else None,
                first_in_day_ms=fig.oldest_in_day_ms,
                now_ms=now_ms,
            )
            if account is not None and account.paused:
                state, detail = "paused", account.pausedReason or "paused by the breaker"
            elif int(cool or 0) > now_ms:
                # The words the worker stores on the campaigns it parks (``waitingFor``).
                until = int(cool)
                state, detail = "cooling down", wait_reason("cooling", None, name, until)
            elif cap is not None:
                until = cap[1]
                state, detail = "capped", wait_reason("capped", cap[0], name, until)
            elif paused and int(backlog or 0) > 0:
                state, detail = "paused", "the queue is paused"
            last_hour = sum(series) if series is not None else None
            out.append(
                Account(
                    name, state, detail, until, max(0, int(backlog or 0)), last_hour, series, hourly
                )
            )
        return out

    async def snapshot(self, s: Overviews) -> Snapshot:
        async with self._lock:
            now = s.clock.now_ms()
            counts = await jobs.counts(s, now)
            totals = await s.store.dashboard.totals()
            paused = await s.engine.is_paused()
            msgs, beats, memory = totals.message_counts, totals.beats, totals.memory
            messages = {st.value: max(0, int(msgs.get(st.code, 0))) for st in RecipientStatus}
            snap = Snapshot(now, counts, messages, bool(paused))
            snap.workers = _workers(beats, now, s.settings.heartbeat_ms)
            snap.memory = {
                "used": str(memory.get("used_memory_human", "?")),
                "peak": str(memory.get("used_memory_peak_human", "?")),
                "max": str(memory.get("maxmemory_human", "0B")),
                "policy": str(memory.get("maxmemory_policy", "?")),
            }
            await self.rates.update(s.simulator.store, now)
            snap.accounts = await self._accounts(s, now, bool(paused))
            return snap
