"""Control of one campaign: pause, resume, cancel, retry failed, promote, remove, resolve.

Each takes effect before the campaign's next message: the claim script reads the flags, and a
job parked in *delayed* is promoted so it notices at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from waqtor.domain.status import RecipientStatus
from waqtor.runtime.parts import HasClock, HasEngine, HasJobIndex, HasLedger
from waqtor.store.ledger import accounts_of


class Controls(HasClock, HasEngine, HasLedger, HasJobIndex, Protocol):
    """What campaign control reads and writes."""


FINISHED = ("completed", "failed")


class ControlError(Exception):
    """``status`` is the HTTP status an API should answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Outcome:
    message: str
    changed: int = 0


async def _state(s: Controls, cid: str) -> str:
    view = await s.engine.get(cid)
    if view is None or not await s.ledger.meta(cid):
        raise ControlError(404, "Job not found")
    return view.state


async def _running_meta(s: Controls, cid: str, verb: str) -> dict[str, str]:
    """The meta of a campaign that can still be paused or resumed: neither finished nor
    canceled (409 naming which)."""
    state = await _state(s, cid)
    if state in FINISHED:
        raise ControlError(409, f"Job is {state}; nothing to {verb}")
    meta = await s.ledger.meta(cid)
    if meta.get("canceled") == "1":
        raise ControlError(409, f"Campaign was canceled; nothing to {verb}")
    return meta


async def pause(s: Controls, cid: str) -> Outcome:
    meta = await _running_meta(s, cid, "pause")
    was = meta.get("paused") == "1"
    await s.ledger.set_flag(cid, "paused", "1")
    await s.job_index.hold(cid)
    if was:
        return Outcome("Campaign was already paused")
    return Outcome("Campaign paused: no message goes out until it is resumed", 1)


async def resume(s: Controls, cid: str) -> Outcome:
    meta = await _running_meta(s, cid, "resume")
    was = meta.get("paused") == "1"
    await s.ledger.set_flag(cid, "paused", "0")
    await s.job_index.release(cid)
    # A parked job starts again now, at the exact recipient; one still waiting for its
    # sendAt keeps waiting (resuming is not "start now": promote is).
    if int(meta.get("start_ms", "0")) <= s.clock.now_ms():
        await s.engine.promote(cid)
    if not was:
        return Outcome("Campaign was not paused")
    return Outcome("Campaign resumed", 1)


async def cancel(s: Controls, cid: str) -> Outcome:
    state = await _state(s, cid)
    if state in FINISHED:
        raise ControlError(409, f"Job is {state}; nothing to cancel")
    meta = await s.ledger.meta(cid)
    await s.ledger.set_flag(cid, "canceled", "1")
    await s.job_index.release(cid)
    changed = await s.ledger.close_open(
        cid, accounts_of(meta), RecipientStatus.CANCELED, now_ms=s.clock.now_ms()
    )
    await s.engine.promote(cid)  # let a delayed or parked job finish now
    return Outcome(f"Campaign canceled: {changed} unsent recipient(s) canceled", changed)


async def retry_failed(s: Controls, cid: str, codes: Sequence[str] = ()) -> Outcome:
    state = await _state(s, cid)
    meta = await s.ledger.meta(cid)
    if meta.get("canceled") == "1":
        raise ControlError(409, "Campaign was canceled")
    changed = await s.ledger.retry_failed(cid, accounts_of(meta), list(codes), s.clock.now_ms())
    if changed:
        await _go_on(s, cid, state)
    return Outcome(f"{changed} failed recipient(s) queued again", changed)


async def _go_on(s: Controls, cid: str, state: str) -> None:
    """Start the job now: a finished one is put back in the queue (its ledger decides what is
    left to do), a delayed one is promoted."""
    if state in FINISHED:
        # We chose what to retry: the re-run must not also retry what the job's failure
        # closed, as it does for a re-run from outside waqtor (worker.JOB_END).
        await s.job_index.drop_meta(cid, "job_end")
        await s.engine.reprocess(cid)
    else:
        await s.engine.promote(cid)


async def promote(s: Controls, cid: str) -> Outcome:
    await _state(s, cid)
    if await s.job_index.leased(cid):
        raise ControlError(
            409,
            "Job is an instant send's safety net and its request is still sending; "
            "it starts by itself only if that request stops",
        )
    if not await s.engine.promote(cid):
        raise ControlError(409, "Job is not delayed or scheduled")
    return Outcome("Job promoted: it starts now", 1)


async def remove(s: Controls, cid: str) -> Outcome:
    if await s.engine.get(cid) is None and (await s.ledger.meta(cid)).get("orphaned"):
        # Its job was removed outside waqtor and the reconciler closed it: only the ledger
        # (kept for the report) is left.
        await s.ledger.delete(cid)
        return Outcome("Campaign's recipients removed", 1)
    state = await _state(s, cid)
    canceled = (await s.ledger.meta(cid)).get("canceled") == "1"
    if state == "active" or (state not in FINISHED and not canceled):
        # A canceled campaign's job has nothing left to send, so it may go while it waits
        # (say, in a paused queue); a running job is finishing and goes once it has.
        raise ControlError(409, f"Job is {state}: cancel it first, then remove it")
    await s.engine.remove(cid)
    await s.ledger.delete(cid)
    return Outcome("Job and its recipients removed", 1)


async def resolve(s: Controls, cid: str, index: int, action: str, message_id: str = "") -> Outcome:
    state = await _state(s, cid)
    meta = await s.ledger.meta(cid)
    if not 0 <= index < int(meta.get("total", "0")):
        raise ControlError(404, "Recipient not found")
    done = await s.ledger.resolve(
        cid, accounts_of(meta), index, action, s.clock.now_ms(), message_id
    )
    if not done:
        raise ControlError(409, "Recipient is not unknown")
    if action == "resend":
        await _go_on(s, cid, state)
    return Outcome("Recipient marked sent" if action == "sent" else "Recipient will be sent again")
