"""Jobs by state, read straight from bullmq's lists and sorted sets: a page costs one range
read and one pipeline of hash reads, however many jobs there are.

*paused* holds the jobs of a paused queue (bullmq keeps them in its wait list) and campaigns
paused one by one (the worker parks those in *delayed*, due about a year from now).
*canceled* and *foreign* are ours: canceled campaigns (bullmq calls their jobs completed) and
jobs added outside waqtor with no campaign behind them (failed on purpose), each listed and
counted apart from the completed and failed ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from waqtor.domain.status import RecipientStatus
from waqtor.runtime.services import Services
from waqtor.store.keys import HELPER_JOB_MARK

STATES = ("waiting", "active", "delayed", "paused", "completed", "canceled", "failed", "foreign")
#: Our own states, each a sorted set of ids taken out of one of bullmq's finished sets.
_APART = {"canceled": "completed", "foreign": "failed"}
#: Delayed jobs due further out than this are parked paused campaigns (worker.PARK_MS = 1 year).
PARKED_AFTER_MS = 180 * 24 * 3600 * 1000
#: Ledger counters of recipients that went out (sent, then perhaps delivered and read).
_SENT = tuple(
    "n:" + st.code for st in (RecipientStatus.SENT, RecipientStatus.DELIVERED, RecipientStatus.READ)
)
_FIELDS = ("data", "progress", "timestamp", "processedOn", "finishedOn", "failedReason")


def bull(s: Services, suffix: str) -> str:
    return f"{s.keys.bull_prefix}:{s.keys.queue}:{suffix}"


def _parked_score(now_ms: int) -> int:
    return (now_ms + PARKED_AFTER_MS) * 0x1000  # bullmq scores delayed jobs as ms * 4096


async def counts(s: Services, now_ms: int) -> dict[str, int]:
    parked = _parked_score(now_ms)
    async with s.redis.pipeline(transaction=False) as pipe:
        pipe.llen(bull(s, "wait"))
        pipe.zcard(bull(s, "prioritized"))
        pipe.llen(bull(s, "active"))
        pipe.zcount(bull(s, "delayed"), "-inf", f"({parked}")
        pipe.zcount(bull(s, "delayed"), parked, "+inf")
        pipe.zcard(bull(s, "completed"))
        pipe.zcard(bull(s, "failed"))
        pipe.hexists(bull(s, "meta"), "paused")
        # Helper jobs (they send a campaign already counted) are few and short-lived.
        pipe.zcard(s.keys.canceled_jobs)
        pipe.zcard(s.keys.foreign_jobs)
        pipe.lrange(bull(s, "wait"), 0, 999)
        pipe.lrange(bull(s, "active"), 0, 999)
        (
            wait,
            prio,
            active,
            delayed,
            parked_n,
            completed,
            failed,
            paused,
            canceled,
            foreign,
            *lists,
        ) = await pipe.execute()
    helpers = [sum(1 for i in ids if HELPER_JOB_MARK in str(i)) for ids in lists]
    waiting = int(wait) + int(prio) - helpers[0]
    canceled = min(int(canceled), int(completed))
    foreign = min(int(foreign), int(failed))
    return {
        "waiting": 0 if paused else waiting,
        "active": int(active) - helpers[1],
        "delayed": int(delayed),
        "paused": int(parked_n) + (waiting if paused else 0),
        "completed": int(completed) - canceled,
        "canceled": canceled,
        "failed": int(failed) - foreign,
        "foreign": foreign,
    }


def _apart_key(s: Services, state: str) -> str:
    return s.keys.canceled_jobs if state == "canceled" else s.keys.foreign_jobs


async def _excluding(s: Services, state: str, offset: int, limit: int) -> list[str]:
    """One page of bullmq's ``completed`` (or ``failed``) set, newest first, without the ids
    we list apart (canceled, foreign). Costs one rank read per id set apart, not a scan."""
    key = bull(s, state)
    apart = _apart_key(s, "canceled" if state == "completed" else "foreign")
    members = [str(m) for m in await s.redis.zrange(apart, 0, -1)]
    async with s.redis.pipeline(transaction=False) as pipe:
        for member in members:
            pipe.zrevrank(key, member)
        ranks = sorted(int(r) for r in await pipe.execute() if r is not None)
    start = offset  # the rank of the offset-th id that is not set apart
    for rank in ranks:
        if rank <= start:
            start += 1
        else:
            break
    end = start + limit
    for rank in ranks:
        if start <= rank < end:
            end += 1
    skip = set(members)
    ids = await s.redis.zrevrange(key, start, end - 1)
    return [str(i) for i in ids if str(i) not in skip][:limit]


async def _waiting(s: Services, offset: int, limit: int) -> list[str]:
    """Next to run first: bullmq pushes new jobs on the left and takes them from the right."""
    stop = -(offset + 1)
    start = -(offset + limit)
    ids = await s.redis.lrange(bull(s, "wait"), start, stop)
    return [str(i) for i in reversed(ids)]


async def page(
    s: Services, state: str, offset: int, limit: int, now_ms: int
) -> tuple[list[str], int]:
    """Ids of one page of jobs in ``state`` and how many jobs that state holds."""
    n = await counts(s, now_ms)
    parked = _parked_score(now_ms)
    delayed = bull(s, "delayed")
    ids: list[Any]
    if state == "waiting":
        ids = await _waiting(s, offset, limit) if n["waiting"] else []
    elif state == "active":
        ids = [str(i) for i in await s.redis.lrange(bull(s, "active"), offset, offset + limit - 1)]
    elif state == "delayed":
        ids = await s.redis.zrangebyscore(delayed, "-inf", f"({parked}", start=offset, num=limit)
    elif state == "paused":
        held = n["paused"] - await s.redis.zcount(delayed, parked, "+inf")
        ids = await _waiting(s, offset, limit) if offset < held else []
        if len(ids) < limit:
            rest = max(0, offset - held)
            ids += await s.redis.zrangebyscore(
                delayed, parked, "+inf", start=rest, num=limit - len(ids)
            )
    elif state in _APART:
        ids = await s.redis.zrevrange(_apart_key(s, state), offset, offset + limit - 1)
    else:
        ids = await _excluding(s, state, offset, limit)
    return [str(i) for i in ids], n[state]


@dataclass(frozen=True)
class JobRow:
    id: str
    created: int
    account: str
    total: int
    message: str
    progress: int
    processed_on: int | None
    finished_on: int | None
    failed_reason: str
    sent: int
    failed: int
    paused: bool
    canceled: bool


def _int(raw: Any) -> int:
    try:
        return int(float(raw))
    except (TypeError, ValueError):
        return 0


async def rows(s: Services, ids: list[str]) -> list[JobRow]:
    """The list's columns for these jobs, in one pipeline; ids bullmq no longer has, and
    helper jobs, are skipped."""
    async with s.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(bull(s, job_id), list(_FIELDS))
            pipe.hmget(s.keys.meta(job_id), ["paused", "canceled", "n:F", *_SENT])
        raw = await pipe.execute()
    out: list[JobRow] = []
    for i, job_id in enumerate(ids):
        job, meta = raw[2 * i], raw[2 * i + 1]
        if job[0] is None or HELPER_JOB_MARK in job_id:
            continue
        try:
            data = json.loads(job[0])
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        out.append(
            JobRow(
                id=job_id,
                created=_int(job[2]),
                account=str(data.get("account", "default")),
                total=_int(data.get("total")),
                message=str(data.get("message", "")),
                progress=_int(job[1]),
                processed_on=_int(job[3]) or None,
                finished_on=_int(job[4]) or None,
                failed_reason=str(job[5] or ""),
                sent=sum(_int(n) for n in meta[3:]),
                failed=_int(meta[2]),
                paused=meta[0] == "1",
                canceled=meta[1] == "1",
            )
        )
    return out
