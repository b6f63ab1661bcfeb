"""The overview's numbers: job and message counts, send rates and health per account, worker
heartbeats and Redis memory, read in a handful of round trips per tick."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from waqtor.dashboard import banner, jobs
from waqtor.dashboard.rates import MINUTE_MS, WINDOW_MIN, RateWindow
from waqtor.domain.accounts import effective_caps
from waqtor.domain.status import RecipientStatus
from waqtor.domain.waits import DAY_MS, HOUR_MS, cap_reached, wait_reason
from waqtor.runtime.services import Services

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


def _workers(raw: dict[str, str], now_ms: int, stale_ms: int) -> list[Worker]:
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
                alive=now_ms - seen <= stale_ms,
            )
        )
    return sorted(out, key=lambda w: (not w.alive, w.id))


class Overview:
    def __init__(self) -> None:
        self.rates = RateWindow()
        self._lock = asyncio.Lock()

    async def _busy_accounts(self, s: Services) -> set[str]:
        """Accounts of the running campaigns and of the next ones in line."""
        ids = [str(i) for i in await s.redis.lrange(jobs.bull(s, "active"), 0, -1)]
        ids += [str(i) for i in await s.redis.lrange(jobs.bull(s, "wait"), -_NEXT_WAITING, -1)]
        found = {"default"} if not ids else set()
        for row in await jobs.rows(s, ids):
            found.add(row.account)
        return found

    async def _accounts(self, s: Services, now_ms: int, paused: bool) -> list[Account]:
        known = {a.name: a for a in await s.accounts.all()}
        names = sorted(set(known) | set(self.rates.accounts()) | await self._busy_accounts(s))
        k = s.keys
        async with s.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(k.backlog(name))
                pipe.get(k.cool_until_ms(name))
                pipe.zrangebyscore(k.sent_window(name), now_ms - HOUR_MS, "+inf", withscores=True)
                # The day's window as the claim script sees it: entries older than 24 h do
                # not count (it drops them before it checks).
                pipe.zrangebyscore(
                    k.sent_window(name), now_ms - DAY_MS, "+inf", start=0, num=1, withscores=True
                )
                pipe.zcount(k.sent_window(name), now_ms - DAY_MS, "+inf")
            raw = await pipe.execute()
        today = datetime.now(UTC).date()
        out = []
        for i, name in enumerate(names):
            backlog, cool, hour, oldest, day = raw[5 * i : 5 * i + 5]
            account = known.get(name)
            caps = effective_caps(account, today, now_ms) if account else None
            hourly = caps.hourly if caps else None
            daily = caps.daily if caps else None
            series: list[int] | None = None
            if banner.simulates(s, account.provider if account else None):
                series = self.rates.series(name, now_ms)
            elif caps and caps.hourly is not None:
                series = _series([int(score) for _, score in hour], now_ms)
            state, detail, until = "ok", "sending" if int(backlog or 0) > 0 else "idle", 0
            cap = cap_reached(
                hourly=hourly,
                daily=daily,
                sent_last_hour=len(hour),
                sent_last_day=int(day),
                first_in_hour_ms=int(hour[0][1]) if hour else None,
                first_in_day_ms=int(oldest[0][1]) if oldest else None,
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

    async def snapshot(self, s: Services) -> Snapshot:
        async with self._lock:
            now = s.clock.now_ms()
            counts = await jobs.counts(s, now)
            async with s.redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(s.keys.message_counts)
                pipe.hgetall(s.keys.workers)
                pipe.info("memory")
                pipe.hexists(jobs.bull(s, "meta"), "paused")
                msgs, beats, memory, paused = await pipe.execute()
            messages = {st.value: max(0, int(msgs.get(st.code, 0))) for st in RecipientStatus}
            snap = Snapshot(now, counts, messages, bool(paused))
            snap.workers = _workers(beats, now, 3 * s.settings.heartbeat_ms)
            snap.memory = {
                "used": str(memory.get("used_memory_human", "?")),
                "peak": str(memory.get("used_memory_peak_human", "?")),
                "max": str(memory.get("maxmemory_human", "0B")),
                "policy": str(memory.get("maxmemory_policy", "?")),
            }
            if s.simulator is not None:
                await self.rates.update(s, now)
            snap.accounts = await self._accounts(s, now, bool(paused))
            return snap
