"""``GET /api/queue/jobs/{id}/events``: one campaign's progress as server-sent events, behind
the API key (the dashboard's streams need its session cookie).

Each stream reads the campaign once a tick and writes an ``event: job`` (the same ``data`` as
``GET /api/queue/jobs/{id}``) only when it changed, then ``event: end`` once the campaign has
finished. It ends by itself after ``LIFETIME_S`` (a client reconnects, or polls) or when the
server is stopping; at most ``MAX_STREAMS`` are open per process, so a crowd of watchers costs
bounded Redis reads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from waqtor.api.deps import Parts
from waqtor.api.errors import REDIS_DOWN, ApiError
from waqtor.api.routes_jobs import JobId
from waqtor.campaigns import job_views
from waqtor.domain.status import FINISHED_JOB_STATES
from waqtor.runtime.exiting import exiting

router = APIRouter(prefix="/api/queue/jobs", tags=["campaigns"])

TICK_S = 1.0
LIFETIME_S = 120.0
KEEPALIVE_S = 15.0
MAX_STREAMS = 200


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


async def _detail(s: job_views.Views, job_id: str) -> dict[str, Any] | None:
    view = await s.engine.get(job_id)
    if view is None:
        return await job_views.orphan_detail(s, job_id)
    return await job_views.job_detail(s, view)


def _event(name: str, data: dict[str, Any]) -> str:
    # One line of JSON: json.dumps never writes a raw line break.
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _stream(
    request: Request, s: job_views.Views, job_id: str, first: dict[str, Any]
) -> AsyncIterator[str]:
    state = request.app.state
    state.event_streams = getattr(state, "event_streams", 0) + 1
    loop = asyncio.get_running_loop()
    started = last_write = loop.time()
    last: dict[str, Any] | None = None
    detail: dict[str, Any] | None = first
    try:
        yield "retry: 1000\n\n"
        while not exiting.is_set() and loop.time() - started < LIFETIME_S:
            if detail is None:
                yield _event("end", {"id": job_id, "status": "removed"})
                return
            if detail != last:
                last = detail
                last_write = loop.time()
                yield _event("job", detail)
            if detail["status"] in FINISHED_JOB_STATES:
                yield _event("end", {"id": job_id, "status": detail["status"]})
                return
            if loop.time() - last_write > KEEPALIVE_S:
                last_write = loop.time()
                yield ": keep-alive\n\n"
            await asyncio.sleep(TICK_S)
            if await request.is_disconnected():
                return
            try:
                detail = await _detail(s, job_id)
            except REDIS_DOWN as exc:
                yield _event("error", {"error": f"Redis unavailable: {exc}"})
                return
    finally:
        state.event_streams -= 1


@router.get(
    "/{job_id}/events",
    response_class=EventStream,
    responses={
        200: {
            "description": "``event: job`` with the campaign's detail whenever it changes, "
            "then ``event: end`` when it has finished. Reconnect (or poll) after the stream "
            "ends on its own."
        },
        404: {},
    },
)
async def events(job_id: JobId, request: Request, s: Parts[job_views.Views]) -> StreamingResponse:
    if getattr(request.app.state, "event_streams", 0) >= MAX_STREAMS:
        raise ApiError(503, f"too many event streams open (limit {MAX_STREAMS}): poll instead")
    first = await _detail(s, job_id)
    if first is None:
        raise ApiError(404, "Job not found")
    return EventStream(
        _stream(request, s, job_id, first),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
