"""The campaign processor: runs one bullmq job (one campaign) through the send path.

The job only ever holds the campaign's position loosely; the ledger holds it exactly. So a job
that is retried, recovered from a dead worker or handed back on shutdown resumes at the exact
recipient. Waits longer than a pacing gap (retries due later, a paused campaign, unknowns to
settle) move the job to *delayed* instead of holding a sleeping worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from waqtor.domain.eta import clock_text
from waqtor.domain.schedule import Schedule
from waqtor.domain.status import TERMINAL, RecipientStatus
from waqtor.domain.steps import (
    ACCOUNT_WAITS,
    AGAIN,
    ENDS,
    HALTS,
    OUTCOMES,
    SENDS,
    WAITS,
    StepKind,
    UnknownStepKind,
)
from waqtor.domain.waits import wait_reason
from waqtor.engine import ASSIST_NAME, DelayedError, unrecoverable
from waqtor.providers import content
from waqtor.providers.registry import UnknownProvider
from waqtor.runtime import heartbeats, logs, shutdown
from waqtor.runtime.services import CLOSE_S, Services
from waqtor.sending import callbacks, failures
from waqtor.sending.reconcile import Reconciler
from waqtor.sending.sender import Campaign, Sender, Step
from waqtor.sending.sender_batch import Overlapped, overlap_of, send_batch
from waqtor.store.connection import connect
from waqtor.store.ledger import accounts_of
from waqtor.store.redis_watch import RedisWatch

log = logging.getLogger("waqtor.sending.worker")

#: How long a job paused by a queue-wide pause sleeps before it looks again (ms).
PAUSE_RECHECK_MS = 1000
#: A job's bullmq progress is written at most this often (ms) per campaign: a paced campaign
#: sends about one message a second, and its progress need not cost a round trip for each (the
#: dashboard and the API's counts read the ledger itself; the last write is 100 %).
PROGRESS_EVERY_MS = 2000
#: ... and, with many campaigns running in one process, no more often than this many ms times
#: their number: 500 paced campaigns would otherwise write 250 progresses a second, a round
#: trip for every other message (progress every 10 s for each of them then).
PROGRESS_MS_PER_RUN = 20
#: How long a graceful stop may wait for bullmq to let go (s).
STOP_TIMEOUT_S = 15.0
#: With Redis away, the whole stop takes at most this long (s): nothing can be recorded.
STOP_WHEN_DOWN_S = 1.2
#: With Redis away, closing each of the worker's clients takes at most this long (s).
CLOSE_WHEN_DOWN_S = 0.5
#: How often a job waiting on a paused account looks again (ms).
ACCOUNT_RECHECK_MS = 15_000
#: A paused campaign parks its job in *delayed* this long; resume promotes it at once.
PARK_MS = 365 * 24 * 3600 * 1000
#: Other workers are asked to help only with at least this many full batches left per lane.
ASSIST_MIN_BATCHES = 4
#: A helper job picked by a process that already sends its campaign is passed on this many
#: times at most, for another worker to take it.
ASSIST_HANDOFFS = 3
ASSIST_HANDOFF_S = 0.02


#: Meta field: how the campaign's job ended when that was for good (``failed``), so a job put
#: back in the queue from outside waqtor can be told from a fresh one.
JOB_END = "job_end"
#: Error code of the recipients closed because the provider stayed down for every attempt.
PROVIDER_DOWN = "provider_unavailable"
#: Why a job with no campaign behind it failed.
FOREIGN_REASON = (
    "not a waqtor campaign: no recipients are stored for this job (it was added outside "
    "waqtor, e.g. from Bull Board); nothing was sent. Send with POST /api/messages/send-bulk."
)
#: A run's pace is remembered for ETAs once it sent at least this many recipients.
THROUGHPUT_MIN_SENDS = 50
THROUGHPUT_TTL_MS = 7 * 24 * 3600 * 1000
#: Bounds of what one run may teach the ETA (ms): the wait before a worker took the job (a job
#: that waited longer waited for something else: a retry's back-off, busy workers), the run's
#: fixed costs in all, and the time per message.
PICKUP_MAX_MS = 2_000
FIXED_MAX_MS = 10_000
PER_MESSAGE_MAX_MS = 3_600_000


class JobUnavailable(Exception):
    """The provider is down: fail this attempt of the job so bullmq backs off and retries."""


class CampaignWorker:
    def __init__(self, services: Services, *, name: str | None = None) -> None:
        self.s = services
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.name = name or self.id
        self.sender = Sender(services, self.id)
        self.stopping = asyncio.Event()
        self._runs: set[_Run] = set()
        self.active: set[str] = set()
        self._bull: Any = None
        self._run_task: asyncio.Task[Any] | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._callbacks: callbacks.Dispatcher | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._watch: RedisWatch | None = None
        self._reconcile_task: asyncio.Task[None] | None = None

    # ---- lifecycle ----
    async def start(self) -> None:
        st = self.s.settings
        self._bull = self.s.engine.worker(
            self.process,
            # A patient client of our own: bullmq's default backs off up to 20 s per retry,
            # which would leave a worker idle long after Redis is back.
            connection=connect(self.s.redis_url, patient=True),
            concurrency=st.worker_concurrency,
            lock_duration_ms=st.lock_duration_ms,
            stalled_interval_ms=st.stalled_interval_ms,
            name=self.name,
        )
        self._bull.on("error", lambda err, *_: log.warning("queue error: %s", err))
        self._watch = RedisWatch(self.s.redis_url, self.s.engine.node_client_name(self.name))
        await self._watch.check()  # names the connection Bull Board looks for, or says why not
        self._watch.start()
        self._run_task = asyncio.ensure_future(self._bull.run())
        self._beat_task = asyncio.ensure_future(self._heartbeat())
        self._callbacks = callbacks.Dispatcher(self.s)  # status callbacks out, from the outbox
        self._callbacks.start()
        self._reconcile_task = asyncio.ensure_future(Reconciler(self.s, self.id).run(self.stopping))
        log.info("worker %s started (concurrency %d)", self.id, st.worker_concurrency)

    async def stop(self) -> None:
        """Graceful: in-flight sends finish and are recorded, then jobs go straight back.
        With Redis away nothing can be recorded or handed back, so it does not wait for it:
        the worker is gone within ``STOP_WHEN_DOWN_S`` (its jobs are recovered as stalled)."""
        self.stopping.set()
        loop = asyncio.get_running_loop()
        redis_up = self._watch is None or self._watch.up
        deadline = loop.time() + (STOP_TIMEOUT_S if redis_up else STOP_WHEN_DOWN_S)

        def left(most: float = STOP_TIMEOUT_S) -> float:
            return max(0.05, min(most, deadline - loop.time()))

        if not redis_up:
            log.warning("worker %s: stopping with Redis away; its jobs will be recovered", self.id)
        me = f"worker {self.id}:"
        # Every step is bounded (``shutdown.step``): one that hangs is named and left behind.
        if self._callbacks is not None:
            await shutdown.step(f"{me} callback dispatcher stop", self._callbacks.stop(), left())
        for run in list(self._runs):
            run.halt_with("stopping")  # wake lanes sleeping for a pacing slot
        if self._bull is not None:
            # Graceful: in-flight jobs finish and are recorded, then bullmq lets go. Its close
            # shields itself from cancellation, hence ``step`` rather than ``wait_for``.
            graceful = f"{me} bullmq close (in-flight jobs finishing)"
            if not await shutdown.step(graceful, self._bull.close(force=not redis_up), left()):
                log.warning("%s graceful close did not finish; forcing", me)
                await shutdown.step(
                    f"{me} bullmq forced close", self._bull.close(force=True), left(2)
                )
        if self._run_task is not None:
            await shutdown.step(
                f"{me} bullmq run loop",
                asyncio.gather(self._run_task, return_exceptions=True),
                left(),
            )
        if self._bull is not None:
            # bullmq's run loop can reopen a connection while it winds down; close it for good.
            await shutdown.step(
                f"{me} bullmq connection close", self._bull.backend.close(force=True), left(2)
            )
        await shutdown.cancel_tasks(
            f"{me} heartbeat, reconcile and background tasks",
            [*self._background, self._reconcile_task, self._beat_task],
            left(2),
        )
        if redis_up:  # else the heartbeat just ages out
            await shutdown.step(
                f"{me} heartbeat removal", self.s.heartbeats.remove(self.id), left(2)
            )
        if self._watch is not None:
            await shutdown.step(f"{me} Redis watch close", self._watch.close(), 2)
        log.info("worker %s stopped", self.id)

    async def close(self) -> None:
        """Close the worker's clients (after ``stop``), without waiting on a Redis that is
        away."""
        redis_up = self._watch is None or self._watch.up
        await self.s.close(CLOSE_S if redis_up else CLOSE_WHEN_DOWN_S)

    async def _heartbeat(self) -> None:
        interval = self.s.settings.heartbeat_ms / 1000.0
        while True:
            try:
                beat = {
                    "id": self.id,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "campaigns": sorted(self.active),
                    "ts": self.s.clock.now_ms(),
                }
                await self.s.heartbeats.beat(self.id, beat)
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(interval)

    # ---- the processor ----
    async def process(self, job: Any, token: str) -> dict[str, int]:
        # A failed job keeps a short reason only: bullmq would store the whole traceback, server
        # paths and all, in the job's data, which Node tools such as Bull Board show.
        job.opts["stackTraceLimit"] = 0
        try:
            if job.name == ASSIST_NAME:
                return await self._assist(job, token)
            cid = str(job.id)
            logs.bind(campaign=cid, account=None, attempt=None)
            self.active.add(cid)
            try:
                return await self._run(job, token, cid)
            finally:
                self.active.discard(cid)
        except DelayedError:
            raise
        except Exception as exc:
            log.warning("job %s failed: %s", job.id, failures.short_reason(exc))
            raise await failures.shorten(self.s, str(job.id), exc) from None

    async def _assist(self, job: Any, token: str) -> dict[str, int]:
        """Help send a campaign that another job runs: batches of one lane, until the lane has
        nothing left to claim or the campaign must stop. Everything else (recovery, settling,
        pauses, completion) stays with the campaign's own job; a helper that dies leaves
        in-flight sends that job recovers once their send lease is over."""
        s = self.s
        cid = str(job.data.get("campaign", ""))
        lane = int(job.data.get("lane", 0))
        if cid in self.active:
            # This process already sends the campaign: two more batches in flight here would
            # not help. Pass the request on as a new job (the worker that has waited longest
            # for work gets it next), a few times, then drop it.
            handed = int(job.data.get("handedBack", 0))
            if handed < ASSIST_HANDOFFS:
                log.debug("helper job for %s picked by its own sender; passing it on", cid)
                # Added once this job has ended: bullmq hands a finishing worker the next
                # waiting job itself, which would bring it straight back here.
                self._later(
                    ASSIST_HANDOFF_S,
                    lambda: s.engine.add_assists(cid, lane, 1, handed_back=handed + 1),
                )
            return {"batches": 0}
        meta = await s.ledger.meta(cid)
        if not meta or lane >= len(accounts_of(meta)):
            return {"batches": 0}
        campaign = _campaign(cid, meta)
        batches = Overlapped(
            lambda: send_batch(self.sender, campaign, token, lane, lock_job=str(job.id)),
            await overlap_of(self.sender, campaign.accounts[lane]),
        )
        self.active.add(cid)
        log.debug("helping to send campaign %s, lane %d", cid, lane)
        done = 0
        try:
            while not self.stopping.is_set():
                steps = await batches.next()
                # Anything but outcomes (a stop, a wait, an outage) is for the campaign's job.
                if not steps or any(
                    step.unavailable or step.kind not in OUTCOMES for step in steps
                ):
                    break
                done += 1
        finally:
            await batches.drain()
            self.active.discard(cid)
        return {"batches": done}

    def _later(self, delay_s: float, work: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay_s)
            try:
                await work()
            except Exception as exc:  # a lost request for help only costs speed
                log.warning("could not ask for help: %s", exc)

        task = asyncio.ensure_future(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _ask_for_help(self, run: _Run, lane: int) -> None:
        """Once per lane and run, when its sends go through without trouble (batches at full
        size; requests of a provider without batches several at once) and much is left: ask
        other live workers to take batches of this lane too."""
        s = self.s
        st = s.settings
        if lane in run.assisted or not st.assist_workers:
            return
        name = run.campaign.accounts[lane]
        try:
            account = await s.accounts.get(name) or s.accounts.default()
            flow = self.sender.flow(name, s.providers.get(account).capabilities)
        except UnknownProvider:
            return
        if not flow.flowing(st.send_batch):
            return
        run.assisted.add(lane)
        counts = await s.ledger.counts(run.campaign.id)
        left = (counts["pending"] + counts["retry"]) // len(run.campaign.accounts)
        helpers = min(st.assist_workers, await heartbeats.alive(s) - 1)
        if helpers > 0 and left >= ASSIST_MIN_BATCHES * st.send_batch:
            await s.engine.add_assists(run.campaign.id, lane, helpers)
            cid = run.campaign.id
            log.info("campaign %s lane %d: asked %d other worker(s) to help", cid, lane, helpers)

    async def _wait_in_flight(self, run: _Run) -> None:
        """Sends of the campaign are in flight (maybe a helper's): wait for them. Ones that
        outlive the send lease belonged to a worker that died: recovered as unknown, as a dead
        owner's are when its job is taken over."""
        s = self.s
        now = s.clock.now_ms()
        if not run.in_flight_since:
            run.in_flight_since = now
        elif now - run.in_flight_since > s.settings.send_lease_ms:
            run.in_flight_since = 0
            lost = await s.ledger.recover(run.campaign.id, run.campaign.accounts, run.token, now)
            if lost:
                log.warning(
                    "campaign %s: %d send(s) of a helper that stopped are unknown",
                    run.campaign.id,
                    len(lost),
                )
        await asyncio.sleep(0.05)

    async def _delay(self, job: Any, token: str, until_ms: int) -> DelayedError:
        await job.moveToDelayed(until_ms, token)
        return DelayedError()

    async def _run(self, job: Any, token: str, cid: str) -> dict[str, int]:
        s = self.s
        picked_ms = s.clock.now_ms()
        meta = await s.ledger.meta(cid)
        if not meta:
            raise await self._foreign(job, cid)
        campaign = _campaign(cid, meta)
        if meta.get("mode") == "instant":
            alive_ms = await s.job_index.lease_left_ms(cid)
            if alive_ms > 0:
                # The request that sends this list is alive (it renews its lease): a safety
                # net that started now would take its sends for a dead worker's.
                await job.log("the instant send's request is still running: the job waits")
                raise await self._delay(job, token, s.clock.now_ms() + alive_ms + 50)
        if "wait" in meta:
            await s.job_index.drop_meta(cid, "wait")
        if meta.get(JOB_END) == "failed":
            await self._rerun_failed(job, campaign)
        lost = await s.ledger.recover(cid, campaign.accounts, token, s.clock.now_ms())
        if lost:
            await job.log(f"{len(lost)} recipient(s) were in flight when a worker stopped: unknown")
            log.warning("campaign %s: %d in-flight send(s) left by a dead worker", cid, len(lost))
        await self.sender.settle(campaign)
        await callbacks.campaign_event(s, cid, campaign.account, "active")
        run = _Run(job, token, campaign, max(1, int(meta.get("total", "1"))))
        run.picked_ms, run.started_ms = picked_ms, s.clock.now_ms()
        at_start = await s.ledger.counts(cid)
        run.done_at_start = sum(at_start[st.value] for st in TERMINAL)
        if self.stopping.is_set():
            run.halt_with("stopping")
        self._runs.add(run)
        try:
            # One lane per sender account, side by side: each waits only for its own account.
            ends = await asyncio.gather(*(self._lane(run, lane) for lane in campaign.lanes))
            run.sent_ms = s.clock.now_ms()
        finally:
            self._runs.discard(run)
        stop = run.stop
        if stop is not None:
            await self._halt(run, stop)
        waits = [end for end in ends if end.kind is not StepKind.DONE]
        if waits:
            first = min(waits, key=lambda end: end.due_ms)
            if first.reason:
                await s.job_index.set_meta(
                    cid, "wait", json.dumps({"reason": first.reason, "until": first.due_ms})
                )
                await job.log(first.reason)
            raise await self._delay(job, token, first.due_ms)
        again = await self.sender.settle(campaign)
        if again is not None:
            raise await self._delay(job, token, again)
        counts = await s.ledger.counts(cid)
        await self._throughput(run, counts)
        await job.updateProgress(100)
        if await s.job_index.meta_field(cid, "canceled") == "1":
            await s.job_index.mark_canceled(cid, s.clock.now_ms())
        await callbacks.campaign_event(s, cid, campaign.account, "completed", counts=counts)
        return {k: v for k, v in counts.items() if v} | {"total": int(meta.get("total", "0"))}

    async def _foreign(self, job: Any, cid: str) -> Exception:
        """A job nobody stored a campaign for (added from Bull Board, say): fail it once, with
        a reason a person can act on, and count it apart from campaigns that failed."""
        s = self.s
        await s.job_index.mark_foreign(cid, s.clock.now_ms())
        log.warning(
            "job %s (%r) is not a waqtor campaign: nothing stored for it; failed", cid, job.name
        )
        return unrecoverable(FOREIGN_REASON)

    async def _rerun_failed(self, job: Any, campaign: Campaign) -> None:
        """The campaign's job had failed for good, and was put back in the queue from outside
        waqtor (Bull Board's retry): retry what the job's failure closed, as our own retry
        route would; with nothing of that left, the campaign stays failed."""
        s, cid = self.s, campaign.id
        await s.job_index.drop_meta(cid, JOB_END)
        again = await s.ledger.retry_failed(
            cid, campaign.accounts, [PROVIDER_DOWN], s.clock.now_ms()
        )
        if again:
            await job.log(f"re-run: {again} recipient(s) the job's failure closed are queued again")
            log.info(
                "campaign %s re-run from outside waqtor: %d recipient(s) queued again", cid, again
            )
            return
        failed = (await s.ledger.counts(cid))[RecipientStatus.FAILED.value]
        if failed:
            await s.job_index.set_meta(cid, JOB_END, "failed")
            raise unrecoverable(
                f"re-run of a failed campaign: {failed} recipient(s) stay failed and none of them "
                "failed with the job; retry them with POST /api/queue/jobs/{id}/retry"
            )

    async def _throughput(self, run: _Run, counts: dict[str, int]) -> None:
        """How this run really went, for the ETA of the next campaigns on the same accounts:
        the time per message of its sends (all its lanes, batches and helpers together) and
        what it cost besides them (waiting to be picked up, starting, finishing)."""
        s = self.s
        done = sum(counts[st.value] for st in TERMINAL) - run.done_at_start
        sending = run.sent_ms - run.started_ms
        if done < THROUGHPUT_MIN_SENDS or sending <= 0:
            return
        per_message = min(sending * len(run.campaign.accounts) / done, PER_MESSAGE_MAX_MS)
        pickup = 0
        fresh = run.done_at_start == 0 and not getattr(run.job, "delay", 0)
        created = getattr(run.job, "timestamp", 0) or 0
        taken = getattr(run.job, "processedOn", 0) or 0
        if fresh and created and taken:  # sent in one go: its wait for a worker is part of it
            # bullmq's own times (its clock, not the service's, which tests may replace).
            pickup = min(max(0, int(taken) - int(created)), PICKUP_MAX_MS)
        fixed = pickup + (run.started_ms - run.picked_ms) + (s.clock.now_ms() - run.sent_ms)
        fixed = min(max(0, fixed), FIXED_MAX_MS)
        for account in run.campaign.accounts:
            await s.job_index.record_run(account, per_message, fixed, THROUGHPUT_TTL_MS)

    async def _lane(self, run: _Run, lane: int) -> _End:
        """Send one lane's recipients until it is done, must wait, or the campaign stops: in
        batches while the account has nothing to pace (``sender_batch``), else one at a time."""
        batches = Overlapped(
            lambda: send_batch(self.sender, run.campaign, run.token, lane, wake=run.halt),
            await overlap_of(self.sender, run.campaign.accounts[lane]),
        )
        try:
            return await self._lane_steps(run, lane, batches)
        finally:
            await batches.drain()  # nothing of this lane left in flight

    async def _next_step(
        self, run: _Run, lane: int, batches: Overlapped, batch: deque[Step]
    ) -> Step:
        """The next outcome: from a batch (``sender_batch``) while the account allows it,
        else one step at a time."""
        if batch:
            return batch.popleft()
        steps = await batches.next()
        if steps:
            await self._ask_for_help(run, lane)
            batch.extend(steps)
            return batch.popleft()
        return await self.sender.step(run.campaign, run.token, run.halt, lane)

    async def _lane_steps(self, run: _Run, lane: int, batches: Overlapped) -> _End:
        s = self.s
        campaign = run.campaign
        batch: deque[Step] = deque()
        while run.stop is None:
            if self.stopping.is_set():
                run.stop = "stopping"
                break
            window = campaign.schedule.window if campaign.schedule else None
            if window is not None:
                inside, change = window.inside(s.clock.now_ms())
                if not inside:
                    reason = (
                        f"outside the sending window {window.start}-{window.end} {window.zone};"
                        f" resumes at {clock_text(change, window.zone)}"
                    )
                    return _End(StepKind.WAIT, change, reason)
                await self._spread(run, change)
            step = await self._next_step(run, lane, batches, batch)
            kind = step.kind
            if kind in OUTCOMES:
                if kind in SENDS:
                    if step.unavailable:
                        run.halt_with("unavailable", step.error or "unavailable")
                        break
                    await self._report(run, step)
                continue
            if kind in AGAIN:
                continue
            if kind is StepKind.INFLIGHT:
                await self._wait_in_flight(run)
                continue
            run.in_flight_since = 0
            if kind in HALTS:
                run.halt_with(kind.value)
                break
            if kind in WAITS:
                return _End(kind, step.due_ms)
            if kind in ACCOUNT_WAITS:
                until = (
                    step.due_ms
                    if kind is not StepKind.ACCOUNT_PAUSED
                    else s.clock.now_ms() + ACCOUNT_RECHECK_MS
                )
                account = campaign.accounts[lane]
                return _End(kind, until, wait_reason(kind, step.error, account, until))
            if kind in ENDS:
                break
            # CLAIMED or EMPTY never reach here; a new kind must get a rule, not end the lane.
            raise UnknownStepKind(f"lane {lane} of {campaign.id}: no rule for step {kind}")
        return _End(StepKind.DONE)

    async def _spread(self, run: _Run, window_end_ms: int) -> None:
        """Pace a windowed campaign so its remaining recipients end inside today's window."""
        counts = await self.s.ledger.counts(run.campaign.id)
        left = counts["pending"] + counts["retry"]
        if left <= 0:
            return
        now = self.s.clock.now_ms()
        gap = (window_end_ms - now) / left
        if run.last_send_ms and gap > 0:
            await self.s.clock.sleep_until(int(run.last_send_ms + gap), run.halt)
        run.last_send_ms = self.s.clock.now_ms()

    async def _report(self, run: _Run, step: Step) -> None:
        now = self.s.clock.now_ms()
        every = max(PROGRESS_EVERY_MS, PROGRESS_MS_PER_RUN * len(self._runs))
        if now - run.reported_ms < every:
            return  # progress is read by people, not once per message
        run.reported_ms = now
        if step.open_left >= 0:  # the script that recorded the outcome counted what is left
            pct = min(100, int((run.total - step.open_left) * 100 / run.total))
        else:
            pct = await self._progress(run.campaign.id, run.total)
        if pct != run.last_pct:
            run.last_pct = pct
            await run.job.updateProgress(pct)

    async def _halt(self, run: _Run, why: str) -> None:
        """A campaign-wide stop that one lane saw: every lane has ended; act once."""
        s, job, token, cid = self.s, run.job, run.token, run.campaign.id
        if why == "lost":
            raise DelayedError()  # another worker owns the job now: leave it alone
        if why == "stopping":
            raise await self._delay(job, token, s.clock.now_ms())  # hand it back at once
        if why == "unavailable":
            await self._provider_down(job, run.campaign, run.detail)
        if why == "paused":
            await job.log("campaign paused")
            await callbacks.campaign_event(s, cid, run.campaign.account, "paused")
            parked = await self._delay(job, token, s.clock.now_ms() + PARK_MS)
            if (await s.ledger.meta(cid)).get("paused") != "1":
                await s.engine.promote(cid)  # resumed while we were parking
            raise parked
        if why == "paused_queue":
            raise await self._delay(job, token, s.clock.now_ms() + PAUSE_RECHECK_MS)
        if why == "canceled":
            await s.ledger.close_open(
                cid, run.campaign.accounts, RecipientStatus.CANCELED, now_ms=s.clock.now_ms()
            )
        if why == "expired":
            closed = await s.ledger.close_open(
                cid,
                run.campaign.accounts,
                RecipientStatus.EXPIRED,
                now_ms=s.clock.now_ms(),
                error_code="expired",
                reason="not sent before the campaign's validUntil",
            )
            await job.log(f"campaign expired: {closed} unsent recipient(s) expired")
            await callbacks.campaign_event(
                s, cid, run.campaign.account, "canceled", counts=await s.ledger.counts(cid)
            )

    async def _progress(self, cid: str, total: int) -> int:
        counts = await self.s.ledger.counts(cid)
        done = sum(counts[st.value] for st in TERMINAL)
        return min(100, int(done * 100 / total))

    async def _provider_down(self, job: Any, campaign: Campaign, reason: str) -> None:
        attempts = int(job.opts.get("attempts", 1))
        if int(job.attemptsMade) + 1 >= attempts:
            closed = await self.s.ledger.close_open(
                campaign.id,
                campaign.accounts,
                RecipientStatus.FAILED,
                now_ms=self.s.clock.now_ms(),
                error_code=PROVIDER_DOWN,
                reason=reason,
            )
            await self.s.job_index.set_meta(campaign.id, JOB_END, "failed")
            await job.log(f"provider unavailable on the last attempt: {closed} recipient(s) failed")
            await callbacks.campaign_event(
                self.s,
                campaign.id,
                campaign.account,
                "failed",
                counts=await self.s.ledger.counts(campaign.id),
                reason=f"provider unavailable: {reason}",
            )
        raise JobUnavailable(f"provider unavailable: {reason}")


def _campaign(cid: str, meta: dict[str, str]) -> Campaign:
    return Campaign(
        cid,
        accounts_of(meta),
        meta.get("template", ""),
        **content.from_meta(meta),
        schedule=Schedule.from_meta(meta),
    )


@dataclass
class _End:
    """How a lane ended: ``DONE``, or a wait until ``due_ms`` (with a reason to show)."""

    kind: StepKind
    due_ms: int = 0
    reason: str | None = None


@dataclass(eq=False)
class _Run:
    """One run of a campaign's job, shared by its lanes."""

    job: Any
    token: str
    campaign: Campaign
    total: int
    last_pct: int = -1
    last_send_ms: int = 0
    reported_ms: int = 0
    stop: str | None = None
    detail: str = ""
    halt: asyncio.Event = field(default_factory=asyncio.Event)
    #: Lanes that asked other workers for help (``_ask_for_help``), and since when (ms) the
    #: campaign has had nothing to claim but sends in flight.
    assisted: set[int] = field(default_factory=set)
    in_flight_since: int = 0
    #: When a worker took the job, started sending and had sent the last of the run (ms), and
    #: how many recipients were settled at the start.
    picked_ms: int = 0
    started_ms: int = 0
    sent_ms: int = 0
    done_at_start: int = 0

    def halt_with(self, why: str, detail: str = "") -> None:
        if self.stop is None:
            self.stop, self.detail = why, detail
        self.halt.set()
