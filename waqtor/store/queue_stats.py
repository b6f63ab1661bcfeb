"""The queue's figures behind ``GET /api/queue/stats`` and the accounts' alerts, in one script call.

Before, stats made a round trip each for bullmq's counts, its pause flag, the campaigns paused
one by one, the message counts, the accounts and every account's cool-down. One read-only
script also gives figures from a single moment rather than from six.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis

from waqtor.domain.status import RecipientStatus
from waqtor.store.accounts import DEFAULT
from waqtor.store.keys import HELPER_JOB_MARK, Keys

#: bullmq's lists and sorted sets the script counts, in this order.
BULL_STATES = ("wait", "active", "completed", "failed", "delayed", "paused", "prioritized")
#: The job counts the API shows, in the order it shows them (``total`` last). ``canceled``
#: and ``foreign`` are ours: bullmq counts them as completed and failed.
JOB_STATES = (
    "waiting",
    "active",
    "completed",
    "failed",
    "delayed",
    "paused",
    "canceled",
    "foreign",
)


@dataclass(frozen=True)
class QueueFigures:
    #: Jobs per state, named as WaQtor names them, and ``total``.
    jobs: dict[str, int]
    #: Recipients per status, over every stored campaign.
    messages: dict[str, int]
    #: Accounts paused by the breaker or an operator: (name, reason), sorted by name.
    paused_accounts: list[tuple[str, str | None]]
    #: Every other account with a cool-down key: name -> end of the cool-down (ms).
    cooling_until_ms: dict[str, int]


def job_counts(
    bull: dict[str, int], queue_paused: bool, held: int, canceled: int = 0, foreign: int = 0
) -> dict[str, int]:
    """bullmq's counts as WaQtor shows them (the same rules as ``Engine.counts`` and the
    stats route applied before), with canceled campaigns apart from completed ones and jobs
    that were never campaigns (added from Bull Board) apart from failed ones."""
    counts = {state: bull.get(state, 0) for state in JOB_STATES}
    counts["canceled"] = min(canceled, counts["completed"])
    counts["completed"] -= counts["canceled"]
    counts["foreign"] = min(foreign, counts["failed"])
    counts["failed"] -= counts["foreign"]
    counts["waiting"] = bull.get("wait", 0) + bull.get("prioritized", 0)
    if queue_paused:
        # BullMQ keeps a paused queue's jobs in its wait list; WaQtor counts them as paused.
        counts["paused"] += counts["waiting"]
        counts["waiting"] = 0
    # Campaigns paused one by one wait in bullmq's delayed set; WaQtor would call them paused.
    moved = min(counts["delayed"], held)
    counts["delayed"] -= moved
    counts["paused"] += moved
    counts["total"] = sum(counts.values())
    return counts


def _figures(reply: list[Any]) -> QueueFigures:
    bull_raw, queue_paused, held, message_flat, paused_flat, cooling_flat, canceled, foreign = reply
    bull = {state: int(n) for state, n in zip(BULL_STATES, bull_raw, strict=True)}
    by_code = dict(zip(message_flat[::2], message_flat[1::2], strict=True))
    messages = {s.value: max(0, int(by_code.get(s.code, 0))) for s in RecipientStatus}
    paused = sorted(
        (str(name), json.loads(raw).get("pausedReason"))
        for name, raw in zip(paused_flat[::2], paused_flat[1::2], strict=True)
    )
    cooling = {
        str(name): int(until)
        for name, until in zip(cooling_flat[::2], cooling_flat[1::2], strict=True)
    }
    return QueueFigures(
        jobs=job_counts(bull, bool(int(queue_paused)), int(held), int(canceled), int(foreign)),
        messages=messages,
        paused_accounts=paused,
        cooling_until_ms=cooling,
    )


class QueueStatsReader:
    def __init__(self, redis: Redis, keys: Keys, bull_key: Callable[[str], str]) -> None:
        """``bull_key``: names bullmq's keys (``Engine.key``)."""
        source = resources.files("waqtor.store").joinpath("lua/queue_stats.lua").read_text()
        # Registered here, not in scripts.NAMES: only the API reads it.
        self._script = redis.register_script(source)
        head, tail = keys.cool_until_ms_parts()
        self._keys = [
            bull_key("meta"),
            keys.paused_campaigns,
            keys.message_counts,
            keys.accounts,
            keys.canceled_jobs,
            keys.foreign_jobs,
            *(bull_key(state) for state in BULL_STATES),
        ]
        self._args = [head, tail, DEFAULT, HELPER_JOB_MARK, *BULL_STATES]

    async def read(self) -> QueueFigures:
        reply = await self._script(keys=self._keys, args=self._args)
        return _figures(list(reply))
