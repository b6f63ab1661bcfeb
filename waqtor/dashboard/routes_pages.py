"""The overview (live), jobs by state (paged, searchable) and the simulator's outbox."""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from waqtor.dashboard import jobs, live, render, search
from waqtor.dashboard.auth import Look, PageError, Svc, still_logged_in
from waqtor.dashboard.errors import DashboardRoute
from waqtor.dashboard.overview import Overview, Overviews
from waqtor.runtime.parts import HasClock, HasEngine, HasJobIndex, HasLedger, HasSimulator


class Finds(HasClock, HasEngine, HasLedger, HasJobIndex, Protocol):
    """What the jobs page reads."""


router = APIRouter(prefix="/admin/queues", route_class=DashboardRoute, include_in_schema=False)

PAGE = 50
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
Page = Annotated[int, Query(ge=0, le=1_000_000)]


def _overview(request: Request) -> Overview:
    found: Overview = request.app.state.dashboard_overview
    return found


def _producer(request: Request, s: Overviews) -> live.Produce:
    overview, r = _overview(request), render.renderer(request)

    async def produce() -> dict[str, str]:
        snap = await overview.snapshot(s)
        return {
            "overview": r.fragment("_overview.html", snap=snap),
            "queue": "paused" if snap.queue_paused else "running",
        }

    return produce


@router.get("")
async def overview_page(request: Request, who: Look, s: Svc[Overviews]) -> Response:
    snap = await _overview(request).snapshot(s)
    return render.page(request, "overview.html", {"snap": snap, "nav": "overview"})


@router.get("/controls")
async def queue_controls(request: Request, who: Look, s: Svc[HasEngine]) -> Response:
    paused = await s.engine.is_paused()
    return render.page(request, "_queue_controls.html", {"queue_paused": paused})


@router.get("/events")
async def overview_events(request: Request, who: Look, s: Svc[Overviews]) -> StreamingResponse:
    hub: live.Hub = request.app.state.dashboard_hub
    body = live.stream(
        request, hub, "overview", _producer(request, s), allowed=still_logged_in(request)
    )
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/jobs")
async def jobs_page(
    request: Request,
    who: Look,
    s: Svc[Finds],
    state: Annotated[str, Query(max_length=20)] = "waiting",
    page: Page = 0,
    q: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    q = q.strip()
    if state not in jobs.STATES:
        raise PageError(400, f"state: one of {', '.join(jobs.STATES)}")
    now = s.clock.now_ms()
    context: dict[str, object] = {"nav": "jobs", "state": state, "q": q, "page": page}
    if q and await search.job_exists(s, q):
        return RedirectResponse(f"/admin/queues/jobs/{q}", status_code=303)
    if q and search.looks_like_phone(q):
        context["found"] = await search.by_phone(s, q)
    elif q:
        context["not_found"] = True
    ids, total = await jobs.page(s, state, page * PAGE, PAGE, now)
    context.update(
        counts=await jobs.counts(s, now),
        rows=await jobs.rows(s, ids),
        total=total,
        has_next=(page + 1) * PAGE < total,
    )
    return render.page(request, "jobs.html", context)


@router.get("/outbox")
async def outbox_page(
    request: Request, who: Look, s: Svc[HasSimulator], page: Page = 0, reveal: bool = False
) -> Response:
    sim = s.simulator
    if sim is None:
        raise PageError(404, "The simulator provider is not active: there is no outbox")
    total = await sim.store.outbox_length()
    start = max(0, total - (page + 1) * PAGE)
    stop = total - page * PAGE
    rows, _ = await sim.outbox(start, max(0, stop - start)) if stop > 0 else ([], 0)
    context = {
        "nav": "outbox",
        "rows": list(reversed(rows)),
        "total": total,
        "page": page,
        "reveal": reveal,
        "has_next": start > 0,
    }
    return render.page(request, "outbox.html", context)
