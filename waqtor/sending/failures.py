"""Why a campaign's job failed, kept where it belongs.

bullmq stores a failed job's reason and, by default, its full Python traceback (file paths of
this server included) in the job's own hash, which Node tools such as Bull Board show to
whoever can open them. The job keeps a short reason only; the trace goes to a key of our own
(size-capped, expiring) that the campaign page shows to admins.
"""

from __future__ import annotations

import logging
import traceback

from waqtor.engine import is_unrecoverable, unrecoverable
from waqtor.runtime.parts import HasJobIndex

log = logging.getLogger("waqtor.sending.worker")

MAX_REASON_CHARS = 300
MAX_TRACE_CHARS = 16_000
TRACE_TTL_MS = 30 * 24 * 3600 * 1000


class JobFailed(Exception):
    """What a failed job's ``failedReason`` says: one short line, no trace."""


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 1] + "…"
    return text


async def shorten(s: HasJobIndex, cid: str, exc: BaseException) -> Exception:
    """Keep ``exc``'s trace under our own key and return the short error bullmq may store: one
    it does not retry if ``exc`` was one of those (a job with no campaign behind it, whose
    trace says nothing and is not kept)."""
    if is_unrecoverable(exc):
        return unrecoverable(short_reason(exc))
    trace = "".join(traceback.format_exception(exc))
    if len(trace) > MAX_TRACE_CHARS:
        trace = "…" + trace[-(MAX_TRACE_CHARS - 1) :]  # the end says where it broke
    try:
        await s.job_index.keep_trace(cid, trace, TRACE_TTL_MS)
    except Exception as err:  # Redis away: the reason still reaches the job
        log.warning("could not keep the trace of campaign %s: %s", cid, err)
    return JobFailed(short_reason(exc))


async def trace(s: HasJobIndex, cid: str) -> str:
    return await s.job_index.trace(cid)
