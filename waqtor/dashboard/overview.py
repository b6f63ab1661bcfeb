"""The overview's numbers: job and message counts, send rates and health per account, worker
heartbeats and Redis memory, read in a handful of round trips per tick."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from waqtor.dashboard import jobs
from waqtor.dashboard.rates import RateWindow
from waqtor.domain.status import RecipientStatus
from waqtor.services import Services

_NEXT_WAITING = 20


@dataclass(frozen=True)
class Account:
    name: str
    state: str  # ok | cooling down | paused
    detail: str
    backlog: int
    last_hour: int
    series: list[int]
    cap: int | None = None  # hourly cap, when the core has caps


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
    rates: bool = False  # False: no outbox to read rates from (not the simulator)


def _cap(s: Services, account: str) -> int | None:
    """Hourly caps do not exist in the core yet; a future ``Services.caps`` mapping is shown."""
    caps = getattr(s, "caps", None)
    value = caps.get(account) if isinstance(caps, Mapping) else None
    return int(value) if isinstance(value, int) else None


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
        names = sorted(set(self.rates.accounts()) | await self._busy_accounts(s))
        async with s.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(s.keys.backlog(name))
                pipe.get(s.keys.next_slot_ms(name))
            raw = await pipe.execute()
        st = s.settings
        longest_gap = st.message_delay * (1 + st.message_jitter)
        out = []
        for i, name in enumerate(names):
            backlog = max(0, int(raw[2 * i] or 0))
            wait_ms = int(raw[2 * i + 1] or 0) - now_ms
            if paused and backlog:
                state, detail = "paused", "the queue is paused"
            elif backlog and wait_ms > longest_gap + 1000:
                state, detail = "cooling down", f"next send in {wait_ms / 1000:.0f} s"
            elif backlog:
                state, detail = "ok", "sending"
            else:
                state, detail = "ok", "idle"
            series = self.rates.series(name, now_ms)
            out.append(Account(name, state, detail, backlog, sum(series), series, _cap(s, name)))
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
                snap.rates = True
            snap.accounts = await self._accounts(s, now, bool(paused))
            return snap
