"""The job engine: a thin layer over bullmq, so nothing else imports it, and the only module
that knows bullmq's key layout: ``Engine.key`` names them for the store's scripts that must
read one (a job's lock, the queue's pause flag), which of them hold each job state and in what
shape (``Engine.job_shapes``, for the stats script), and the dashboard's list reads are here.

One bullmq job per bulk request; the job id is the campaign id. bullmq gives the job states,
progress, whole-job retries with exponential backoff, stalled-job recovery, pause and clean;
the ledger (``store.ledger``) keeps what happens to each recipient.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import bullmq
from bullmq import DelayedError, UnrecoverableError
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from waqtor.domain.status import JobState
from waqtor.store.keys import HELPER_JOB_MARK
from waqtor.store.queue_stats import Counted, JobShapes

#: Names bullmq gives its own keys beside the jobs (``bull:<queue>:<name>``), and ones Node
#: BullMQ uses: a "job id" with one of these names would read that key, not a job.
RESERVED_IDS = frozenset(
    {
        "active", "wait", "waiting", "waiting-children", "paused", "completed", "failed",
        "delayed", "repeat", "stalled", "limiter", "prioritized", "id", "stalled-check", "meta",
        "pc", "events", "marker", "de", "metrics", "drained", "lock", "logs",
    }
)  # fmt: skip
#: Job ids we read: ours are hex, helper jobs add HELPER_JOB_MARK, bullmq's own are numbers;
#: never a ':' (it would reach a job's sub-keys, ``<id>:lock``, ``<id>:logs``).
_JOB_ID = re.compile(r"[A-Za-z0-9_.~-]{1,100}")

JOB_NAME = "campaign"
#: Jobs that help send a large campaign from other workers (``CampaignWorker._assist``).
ASSIST_NAME = "assist"
ASSIST_MARK = HELPER_JOB_MARK
COUNT_STATES = ("waiting", "active", "completed", "failed", "delayed", "paused", "prioritized")
#: Fields of a job's hash a list of jobs shows (``Engine.job_fields``).
LIST_FIELDS = ("data", "progress", "timestamp", "processedOn", "finishedOn", "failedReason")

__all__ = [
    "DelayedError",
    "Engine",
    "JobView",
    "is_unrecoverable",
    "unrecoverable",
    "valid_job_id",
]


def valid_job_id(job_id: str) -> bool:
    """Whether ``job_id`` can name a job at all (else it is unknown: a 404, never a read of
    one of bullmq's own keys)."""
    return bool(_JOB_ID.fullmatch(job_id)) and job_id.lower() not in RESERVED_IDS


def unrecoverable(message: str) -> Exception:
    """An error that fails a job for good: bullmq does not retry it."""
    error: Exception = UnrecoverableError(message)
    return error


def is_unrecoverable(error: BaseException) -> bool:
    return isinstance(error, UnrecoverableError)


@dataclass(frozen=True)
class ListSizes:
    """bullmq's own lists and sets, read in one pipeline (``Engine.list_sizes``)."""

    wait: int
    prioritized: int
    active: int
    #: Delayed jobs due before ``parked_ms``, and those due at or after it.
    delayed: int
    parked: int
    completed: int
    failed: int
    queue_paused: bool
    #: Helper jobs (``ASSIST_MARK``) among the first 1,000 waiting and active ones.
    waiting_helpers: int
    active_helpers: int


def _delay_score(ms: int) -> int:
    return ms * 0x1000  # bullmq scores delayed jobs as ms * 4096


@dataclass(frozen=True)
class JobView:
    id: str
    state: str
    progress: Any
    data: dict[str, Any]
    processed_on: int | None
    finished_on: int | None
    failed_reason: str | None
    returnvalue: Any
    timestamp: int
    attempts_made: int
    stacktrace: list[str]


def _shown(state: str, queue_paused: bool) -> str:
    """bullmq's state as WaQtor names it. A paused queue holds every job that has not
    finished, whatever list bullmq keeps it in."""
    if state in ("wait", "prioritized"):
        state = JobState.WAITING.value
    if queue_paused and state in (JobState.WAITING.value, JobState.DELAYED.value):
        state = JobState.PAUSED.value
    return state


def _view(job: Any, state: str) -> JobView:
    return JobView(
        id=str(job.id),
        state=state,
        progress=job.progress,
        data=job.data if isinstance(job.data, dict) else {},
        processed_on=job.processedOn or None,
        finished_on=job.finishedOn or None,
        failed_reason=job.failedReason,
        returnvalue=job.returnvalue,
        timestamp=int(job.timestamp or 0),
        attempts_made=int(job.attemptsMade or 0),
        stacktrace=list(job.stacktrace or []),
    )


class Engine:
    def __init__(
        self,
        client: Redis,
        queue_name: str,
        *,
        attempts: int,
        backoff_ms: int,
        prefix: str = "bull",
    ) -> None:
        self.client = client
        self.queue_name = queue_name
        self.prefix = prefix
        self.queue = bullmq.Queue(queue_name, {"connection": client, "prefix": prefix})
        self.job_opts: dict[str, Any] = {
            "attempts": attempts,
            "backoff": {"type": "exponential", "delay": backoff_ms},
            # Finished jobs stay readable until `clean` removes them with their ledgers.
            "removeOnComplete": False,
            "removeOnFail": False,
            # No traceback in the job's data (Bull Board shows it): see ``failures``.
            "stackTraceLimit": 0,
        }
        source = resources.files("waqtor").joinpath("engine_views.lua").read_text()
        self._views_script = client.register_script(source)
        #: The queue's meta hash, then the keys bullmq's getState reads, in its order.
        self._view_keys = [
            self.key(name)
            for name in (
                "meta",
                "completed",
                "failed",
                "delayed",
                "active",
                "wait",
                "paused",
                "waiting-children",
                "prioritized",
            )
        ]

    def key(self, name: str) -> str:
        """bullmq's key for ``name``: a state's list or set (``wait``, ``delayed`` ...), the
        queue's ``meta`` hash, a job id, or ``<job id>:lock``. The store's scripts that must
        read one of bullmq's keys are given its name from here."""
        return str(self.queue.toKey(name))

    def job_shapes(self) -> JobShapes:
        """bullmq's keys for each job state and their shapes, for the store's one-script stats
        read (``store.queue_stats``): the same counts as ``counts``, without bullmq's round
        trips."""

        def listed(name: str) -> Counted:
            return Counted(self.key(name), "list")

        def marked(name: str) -> Counted:
            # Older bullmq left a '0:' marker at the tail of these lists; its getCounts skips
            # it too.
            return Counted(self.key(name), "list", "0:")

        def ranked(name: str) -> Counted:
            return Counted(self.key(name), "zset")

        return JobShapes(
            states={
                # Prioritized jobs wait in their own sorted set.
                "waiting": (marked("wait"), ranked("prioritized")),
                "active": (listed("active"),),
                "completed": (ranked("completed"),),
                "failed": (ranked("failed"),),
                "delayed": (ranked("delayed"),),
                "paused": (marked("paused"),),
            },
            paused_flag=(self.key("meta"), "paused"),
        )

    # ---- bullmq's lists read straight, for the dashboard (a page costs one range read) ----
    async def list_sizes(self, parked_ms: int) -> ListSizes:
        """Sizes of bullmq's lists in one pipeline; delayed jobs due at or after ``parked_ms``
        are counted apart (campaigns paused one by one are parked far in the future)."""
        parked = _delay_score(parked_ms)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.llen(self.key("wait"))
            pipe.zcard(self.key("prioritized"))
            pipe.llen(self.key("active"))
            pipe.zcount(self.key("delayed"), "-inf", f"({parked}")
            pipe.zcount(self.key("delayed"), parked, "+inf")
            pipe.zcard(self.key("completed"))
            pipe.zcard(self.key("failed"))
            pipe.hexists(self.key("meta"), "paused")
            # Helper jobs (they send a campaign already counted) are few and short-lived.
            pipe.lrange(self.key("wait"), 0, 999)
            pipe.lrange(self.key("active"), 0, 999)
            (
                wait,
                prio,
                active_n,
                delayed,
                parked_n,
                done,
                failed,
                paused,
                waiting,
                active,
            ) = await pipe.execute()
        return ListSizes(
            wait=int(wait),
            prioritized=int(prio),
            active=int(active_n),
            delayed=int(delayed),
            parked=int(parked_n),
            completed=int(done),
            failed=int(failed),
            queue_paused=bool(paused),
            waiting_helpers=sum(1 for i in waiting if ASSIST_MARK in str(i)),
            active_helpers=sum(1 for i in active if ASSIST_MARK in str(i)),
        )

    async def waiting_ids(self, offset: int, limit: int) -> list[str]:
        """Next to run first: bullmq pushes new jobs on the left and takes them from the right."""
        ids = await self.client.lrange(self.key("wait"), -(offset + limit), -(offset + 1))
        return [str(i) for i in reversed(ids)]

    async def last_waiting_ids(self, n: int) -> list[str]:
        """The ``n`` jobs that run next, last first (as bullmq keeps them)."""
        return [str(i) for i in await self.client.lrange(self.key("wait"), -n, -1)]

    async def active_ids(self, offset: int = 0, limit: int = 0) -> list[str]:
        """Active jobs from ``offset``; ``limit`` 0: all of them."""
        stop = offset + limit - 1 if limit else -1
        return [str(i) for i in await self.client.lrange(self.key("active"), offset, stop)]

    async def delayed_ids(self, parked_ms: int, parked: bool, offset: int, limit: int) -> list[str]:
        """Delayed jobs due before ``parked_ms`` (or, ``parked``, at or after it), soonest first."""
        score = _delay_score(parked_ms)
        low, high = (score, "+inf") if parked else ("-inf", f"({score}")
        ids = await self.client.zrangebyscore(
            self.key("delayed"), low, high, start=offset, num=limit
        )
        return [str(i) for i in ids]

    async def finished_ids(
        self, failed: bool, offset: int, limit: int, skip: list[str]
    ) -> list[str]:
        """One page of the completed (or failed) jobs, newest first, leaving out ``skip``.
        Costs one rank read per skipped id, not a scan."""
        key = self.key("failed" if failed else "completed")
        async with self.client.pipeline(transaction=False) as pipe:
            for member in skip:
                pipe.zrevrank(key, member)
            ranks = sorted(int(r) for r in await pipe.execute() if r is not None)
        start = offset  # the rank of the offset-th id that is not skipped
        for rank in ranks:
            if rank <= start:
                start += 1
            else:
                break
        end = start + limit
        for rank in ranks:
            if start <= rank < end:
                end += 1
        skipped = set(skip)
        ids = await self.client.zrevrange(key, start, end - 1)
        return [str(i) for i in ids if str(i) not in skipped][:limit]

    async def job_fields(self, job_ids: list[str]) -> list[list[Any]]:
        """``LIST_FIELDS`` of each job's hash (all None for a job bullmq no longer has)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self.key(job_id), list(LIST_FIELDS))
            return list(await pipe.execute())

    async def add_campaign(
        self,
        campaign_id: str,
        data: dict[str, Any],
        stage: Callable[[Pipeline], object],
        delay_ms: int = 0,
    ) -> None:
        """Write the campaign (via ``stage``) and its job in one MULTI: both or neither."""
        opts = {**self.job_opts, "jobId": campaign_id}
        if delay_ms > 0:
            opts["delay"] = delay_ms
        job = bullmq.Job(self.queue, JOB_NAME, data, opts)
        async with self.client.pipeline(transaction=True) as pipe:
            stage(pipe)
            await self.queue.scripts.addJob(job, pipe)
            await pipe.execute()

    async def add_assists(
        self, campaign_id: str, lane: int, helpers: int, *, handed_back: int = 0
    ) -> None:
        """Ask other workers to help send one lane of a campaign: one short-lived job per
        helper. A helper job holds no campaign state (the ledger does), so it is removed when it
        ends, and adding one that is already queued or running does nothing. ``handed_back``
        counts how often a helper was passed on by a process that already sends the campaign."""
        opts: dict[str, Any] = {
            "attempts": 1,
            "removeOnComplete": True,
            "removeOnFail": True,
            "stackTraceLimit": 0,
        }
        for n in range(1, helpers + 1):
            data = {"campaign": campaign_id, "lane": lane, "handedBack": handed_back}
            job_id = f"{campaign_id}{ASSIST_MARK}{lane}.{n}.{handed_back}"
            await self.queue.add(ASSIST_NAME, data, {**opts, "jobId": job_id})

    async def counts(self) -> dict[str, int]:
        raw = await self.queue.getJobCounts(*COUNT_STATES)
        counts = {state: int(raw.get(state, 0) or 0) for state in COUNT_STATES}
        counts["waiting"] += counts.pop("prioritized")
        if await self.is_paused():
            # BullMQ keeps a paused queue's jobs in its wait list; WaQtor counts them as paused.
            counts["paused"] += counts["waiting"]
            counts["waiting"] = 0
        return counts

    async def state(self, job_id: str) -> str:
        state = str(await self.queue.getJobState(job_id))
        return _shown(state, await self.is_paused())

    async def get(self, job_id: str) -> JobView | None:
        """The job, or None when there is none by that id (or the id cannot name a job)."""
        found = await self.views([job_id])
        return found[0] if found else None

    async def views(self, job_ids: list[str]) -> list[JobView]:
        """The jobs with these ids, in the same order, skipping ids bullmq no longer has.

        One script call for all of them (``engine_views.lua``): the queue's pause flag, each
        job's hash and its state by bullmq's own getState rules, not a pipeline of bullmq's
        state script per job. Every key is passed in, so it runs on a Cluster (all of them
        share the queue's hash tag)."""
        job_ids = [i for i in job_ids if valid_job_id(i)]
        if not job_ids:
            return []
        keys = [self.key(job_id) for job_id in job_ids]
        reply = await self._views_script(keys=[*self._view_keys, *keys], args=job_ids)
        paused = int(reply[0]) == 1
        found: list[JobView] = []
        for i, job_id in enumerate(job_ids):
            state, flat = reply[1 + 2 * i], reply[2 + 2 * i]
            raw = dict(zip(flat[::2], flat[1::2], strict=True))
            # Not a job: nothing there, another kind of key, or a hash without a job's fields.
            if "name" not in raw or "timestamp" not in raw:
                continue
            job = bullmq.Job.fromJSON(self.queue, raw, job_id)
            found.append(_view(job, _shown(str(state), paused)))
        return found

    async def pause(self) -> None:
        await self.queue.pause()

    async def resume(self) -> None:
        await self.queue.resume()

    async def is_paused(self) -> bool:
        return bool(await self.queue.isPaused())

    async def clean(self, grace_ms: int, limit: int = 0) -> list[str]:
        removed: list[str] = []
        for state in ("completed", "failed"):
            removed.extend(str(i) for i in await self.queue.clean(grace_ms, limit, state))
        return removed

    async def remove(self, job_id: str) -> None:
        await self.queue.remove(job_id)

    async def discard(self, job_id: str) -> None:
        """Remove a job that is no longer needed; one a worker holds right now finishes."""
        await self.try_remove(job_id)

    async def try_remove(self, job_id: str) -> bool:
        """Remove a job unless a worker holds it right now. True if it is gone."""
        try:
            return int(await self.queue.remove(job_id)) == 1
        except Exception:  # locked by a worker
            return False

    async def exists(self, job_id: str) -> bool:
        return bool(await self.client.exists(self.queue.scripts.toKey(job_id)))

    async def promote(self, job_id: str) -> bool:
        """Move a delayed job to waiting now. False if it was not delayed."""
        if str(await self.queue.getJobState(job_id)) != "delayed":
            return False
        job = await self.queue.getJob(job_id)
        if job is None:
            return False
        await job.promote()
        return True

    async def reprocess(self, job_id: str) -> bool:
        """Put a finished job back in the queue (its ledger decides what is left to do)."""
        state = str(await self.queue.getJobState(job_id))
        if state not in ("completed", "failed"):
            return False
        job = await self.queue.getJob(job_id)
        if job is None:
            return False
        await job.retry(state, {"resetAttemptsMade": True})
        return True

    async def logs(self, job_id: str, limit: int = 100) -> list[str]:
        result = await self.queue.getJobLogs(job_id, 0, limit - 1, True)
        return list(result.get("logs", []))

    async def workers(self) -> int:
        return int(await self.queue.get_workers_count())

    def node_client_name(self, worker_name: str) -> str:
        """The connection name under which Node's BullMQ (and so Bull Board) finds a worker
        of this queue: BullMQ 5+ puts the queue name in base64 (``bull:d2FxdG9y:w:<name>``),
        while this Python bullmq names its own connections ``bull:waqtor:w:<name>``. One
        connection cannot carry both names, so a worker keeps one extra, idle connection under
        Node's name (``CampaignWorker``), and both kinds of tool see it."""
        encoded = base64.b64encode(self.queue_name.encode()).decode()
        return f"{self.queue.prefix}:{encoded}:w:{worker_name}"

    async def close(self) -> None:
        await self.queue.close()

    def worker(
        self,
        processor: Callable[[Any, str], Awaitable[Any]],
        *,
        connection: Redis,
        concurrency: int,
        lock_duration_ms: int,
        stalled_interval_ms: int,
        name: str,
    ) -> Any:
        opts = {
            "connection": connection,
            "concurrency": concurrency,
            "lockDuration": lock_duration_ms,
            "stalledInterval": stalled_interval_ms,
            # The ledger makes a stalled job resume where it stopped, so stalling is never a
            # reason to fail it.
            "maxStalledCount": 1_000_000,
            "drainDelay": 1,
            # After a Redis outage, look for work again within a second, not bullmq's 15 s.
            "runRetryDelay": 1000,
            "autorun": False,
            "name": name,
            "prefix": self.prefix,
        }
        return bullmq.Worker(self.queue_name, processor, opts)


async def run_worker(worker: Any) -> asyncio.Task[Any]:
    return asyncio.ensure_future(worker.run())
