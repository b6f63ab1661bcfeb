"""The queue's figures behind ``GET /api/queue/stats`` and the accounts' alerts, in one script call.

Before, stats made a round trip each for bullmq's counts, its pause flag, the campaigns paused
one by one, the message counts, the accounts and every account's cool-down. One read-only
script also gives figures from a single moment rather than from six.

The store does not know the job queue's layout: the engine says where it keeps each job state
and in what shape (``JobShapes``, from ``Engine.job_shapes``), and the script counts those keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from redis.asyncio import Redis

from waqtor.domain.status import RecipientStatus
from waqtor.store.accounts import DEFAULT
from waqtor.store.keys import HELPER_JOB_MARK, Keys

#: The job counts the API shows, in the order it shows them (``total`` last). ``canceled``
#: and ``foreign`` are ours: the engine counts them as completed and failed.
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
#: The states the engine keeps its jobs in and passes in (``JobShapes.states``).
ENGINE_STATES = ("waiting", "active", "completed", "failed", "delayed", "paused")


@dataclass(frozen=True)
class Counted:
    """A key holding jobs of one state, and how to count them."""

    key: str
    #: A Redis list (its ids counted minus helper jobs') or a sorted set (its size).
    kind: Literal["list", "zset"]
    #: For a list: an entry at its tail starting with this is a marker, not a job ('': none;
    #: one marker for all the lists of a ``JobShapes``).
    tail_marker: str = ""


@dataclass(frozen=True)
class JobShapes:
    """Where the engine keeps its jobs (``Engine.job_shapes``): the store counts these keys
    without knowing the engine's layout."""

    #: Each state of ``ENGINE_STATES`` -> the keys whose counts add up to it.
    states: Mapping[str, Sequence[Counted]]
    #: The hash and field whose presence means the whole queue is paused.
    paused_flag: tuple[str, str]


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
    engine: Mapping[str, int], queue_paused: bool, held: int, canceled: int = 0, foreign: int = 0
) -> dict[str, int]:
    """The engine's counts (``ENGINE_STATES``) as WaQtor shows them (the same rules as
    ``Engine.counts`` and the stats route applied before), with canceled campaigns apart from
    completed ones and jobs that were never campaigns (added from Bull Board) apart from failed
    ones."""
    counts = {state: engine.get(state, 0) for state in JOB_STATES}
    counts["canceled"] = min(canceled, counts["completed"])
    counts["completed"] -= counts["canceled"]
    counts["foreign"] = min(foreign, counts["failed"])
    counts["failed"] -= counts["foreign"]
    if queue_paused:
        # A paused queue keeps its jobs waiting; WaQtor counts them as paused.
        counts["paused"] += counts["waiting"]
        counts["waiting"] = 0
    # Campaigns paused one by one wait as delayed jobs; WaQtor would call them paused.
    moved = min(counts["delayed"], held)
    counts["delayed"] -= moved
    counts["paused"] += moved
    counts["total"] = sum(counts.values())
    return counts


def _figures(reply: list[Any], owners: Sequence[str]) -> QueueFigures:
    """``owners``: the state each counted key's figure adds to, in the script's order."""
    per_key, queue_paused, held, message_flat, paused_flat, cooling_flat, canceled, foreign = reply
    engine = dict.fromkeys(ENGINE_STATES, 0)
    for state, n in zip(owners, per_key, strict=True):
        engine[state] += int(n)
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
        jobs=job_counts(engine, bool(int(queue_paused)), int(held), int(canceled), int(foreign)),
        messages=messages,
        paused_accounts=paused,
        cooling_until_ms=cooling,
    )


class QueueStatsReader:
    def __init__(self, redis: Redis, keys: Keys, shapes: JobShapes) -> None:
        """``shapes``: where the engine keeps its jobs (``Engine.job_shapes``)."""
        unknown = set(shapes.states) - set(ENGINE_STATES)
        if unknown:
            raise ValueError(f"job states the stats do not show: {sorted(unknown)}")
        source = resources.files("waqtor.store").joinpath("lua/queue_stats.lua").read_text()
        # Registered here, not in scripts.NAMES: only the API reads it.
        self._script = redis.register_script(source)
        head, tail = keys.cool_until_ms_parts()
        flag_key, flag_field = shapes.paused_flag
        counted = [(state, c) for state, cs in shapes.states.items() for c in cs]
        self._owners = [state for state, _ in counted]
        self._keys = [
            flag_key,
            keys.paused_campaigns,
            keys.message_counts,
            keys.accounts,
            keys.canceled_jobs,
            keys.foreign_jobs,
            *(c.key for _, c in counted),
        ]
        # One letter per key, and the one tail marker: each argument costs its encoding on
        # every read, so the shapes go in two.
        markers = {c.tail_marker for _, c in counted if c.kind == "list" and c.tail_marker}
        if len(markers) > 1:
            raise ValueError(f"one tail marker at most, not {sorted(markers)}")
        kinds = "".join(
            "z" if c.kind == "zset" else "m" if c.tail_marker else "l" for _, c in counted
        )
        marker = markers.pop() if markers else ""
        self._args = [head, tail, DEFAULT, HELPER_JOB_MARK, flag_field, kinds, marker]

    async def read(self) -> QueueFigures:
        reply = await self._script(keys=self._keys, args=self._args)
        return _figures(list(reply), self._owners)
