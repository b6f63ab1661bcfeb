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
from typing import Any, Protocol

from waqtor.domain.status import RecipientStatus
from waqtor.engine import ASSIST_MARK
from waqtor.runtime.parts import HasEngine, HasJobIndex


class Lists(HasEngine, HasJobIndex, Protocol):
    """What the job lists read."""


STATES = ("waiting", "active", "delayed", "paused", "completed", "canceled", "failed", "foreign")
#: Our own states, each a sorted set of ids taken out of one of bullmq's finished sets.
_APART = {"canceled": "completed", "foreign": "failed"}
#: Delayed jobs due further out than this are parked paused campaigns (worker.PARK_MS = 1 year).
PARKED_AFTER_MS = 180 * 24 * 3600 * 1000
#: Ledger counters of recipients that went out (sent, then perhaps delivered and read).
_SENT = tuple(
    "n:" + st.code for st in (RecipientStatus.SENT, RecipientStatus.DELIVERED, RecipientStatus.READ)
)


async def counts(s: Lists, now_ms: int) -> dict[str, int]:
    return (await _counts(s, now_ms))[0]


async def _counts(s: Lists, now_ms: int) -> tuple[dict[str, int], int]:
    """The counts, and how many of the paused jobs are parked campaigns."""
    n = await s.engine.list_sizes(now_ms + PARKED_AFTER_MS)
    canceled = min(await s.job_index.apart_count(canceled=True), n.completed)
    foreign = min(await s.job_index.apart_count(canceled=False), n.failed)
    waiting = n.wait + n.prioritized - n.waiting_helpers
    shown = {
        "waiting": 0 if n.queue_paused else waiting,
        "active": n.active - n.active_helpers,
        "delayed": n.delayed,
        "paused": n.parked + (waiting if n.queue_paused else 0),
        "completed": n.completed - canceled,
        "canceled": canceled,
        "failed": n.failed - foreign,
        "foreign": foreign,
    }
    return shown, n.parked


async def _excluding(s: Lists, state: str, offset: int, limit: int) -> list[str]:
    """One page of bullmq's ``completed`` (or ``failed``) set, newest first, without the ids
    we list apart (canceled, foreign)."""
    failed = state == "failed"
    apart = await s.job_index.apart_ids(canceled=not failed)
    return await s.engine.finished_ids(failed, offset, limit, apart)


async def page(s: Lists, state: str, offset: int, limit: int, now_ms: int) -> tuple[list[str], int]:
    """Ids of one page of jobs in ``state`` and how many jobs that state holds."""
    n, parked = await _counts(s, now_ms)
    parked_ms = now_ms + PARKED_AFTER_MS
    engine = s.engine
    ids: list[str]
    if state == "waiting":
        ids = await engine.waiting_ids(offset, limit) if n["waiting"] else []
    elif state == "active":
        ids = await engine.active_ids(offset, limit)
    elif state == "delayed":
        ids = await engine.delayed_ids(parked_ms, False, offset, limit)
    elif state == "paused":
        held = n["paused"] - parked
        ids = await engine.waiting_ids(offset, limit) if offset < held else []
        if len(ids) < limit:
            rest = max(0, offset - held)
            ids += await engine.delayed_ids(parked_ms, True, rest, limit - len(ids))
    elif state in _APART:
        ids = await s.job_index.apart_page(state == "canceled", offset, limit)
    else:
        ids = await _excluding(s, state, offset, limit)
    return ids, n[state]


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


async def rows(s: Lists, ids: list[str]) -> list[JobRow]:
    """The list's columns for these jobs, in one pipeline; ids bullmq no longer has, and
    helper jobs, are skipped."""
    jobs = await s.engine.job_fields(ids)
    metas = await s.job_index.meta_rows(ids, ["paused", "canceled", "n:F", *_SENT])
    out: list[JobRow] = []
    for job_id, job, meta in zip(ids, jobs, metas, strict=True):
        if job[0] is None or ASSIST_MARK in job_id:
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
