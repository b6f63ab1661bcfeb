"""A campaign's page: live progress, recipient table, log, actions; and its CSV report."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response, StreamingResponse

from waqtor.campaigns import reports
from waqtor.dashboard import campaign, live, render
from waqtor.dashboard.auth import Look, PageError, Svc, still_logged_in
from waqtor.dashboard.errors import DashboardRoute
from waqtor.dashboard.recipients import Filter, parse_status, table
from waqtor.dashboard.routes_pages import SSE_HEADERS
from waqtor.engine import valid_job_id
from waqtor.runtime.parts import HasEngine
from waqtor.sending import failures

router = APIRouter(prefix="/admin/queues/jobs", route_class=DashboardRoute, include_in_schema=False)

ROWS_EVERY_S = 3.0


def _known(job_id: Annotated[str, Path()]) -> str:
    """An id that cannot name a job (bullmq's own key names, a ':') is unknown: a 404 page."""
    if not valid_job_id(job_id):
        raise PageError(404, "No campaign with that id (it may have been removed or cleaned)")
    return job_id


JobId = Annotated[str, Depends(_known)]


async def _log(s: HasEngine, view: campaign.CampaignView) -> list[str]:
    return await s.engine.logs(view.id) if view.job is not None else []


class _RowsSignal:
    """Open recipient tables reload their page when counts moved, at most every
    ``ROWS_EVERY_S`` (and once more when the campaign finishes)."""

    def __init__(self) -> None:
        self.sig = ""
        self.at = 0.0

    def update(self, view: campaign.CampaignView) -> str:
        sig = ",".join(str(n) for n in view.counts.values())
        now = time.monotonic()
        if sig != self.sig and (now - self.at >= ROWS_EVERY_S or view.finished):
            self.sig, self.at = sig, now
        return self.sig


def _producer(request: Request, s: campaign.Loads, cid: str) -> live.Produce:
    r = render.renderer(request)
    rows = _RowsSignal()

    async def produce() -> dict[str, str]:
        view = await campaign.load(s, cid)
        if view is None:
            gone = "<p class='notice'>This campaign no longer exists (removed or cleaned).</p>"
            return {"progress": gone, "state": "gone"}
        return {
            "progress": r.fragment("_progress.html", v=view),
            "log": r.fragment("_log.html", v=view, log=await _log(s, view)),
            "state": f"{view.state}:{','.join(view.actions)}",
            "rows": rows.update(view),
        }

    return produce


async def _load(s: campaign.Loads, cid: str) -> campaign.CampaignView:
    view = await campaign.load(s, cid)
    if view is None:
        raise PageError(404, "No campaign with that id (it may have been removed or cleaned)")
    return view


@router.get("/{job_id}")
async def campaign_page(
    request: Request,
    job_id: JobId,
    who: Look,
    s: Svc[campaign.Loads],
    status: Annotated[str, Query(max_length=20)] = "",
    q: Annotated[str, Query(max_length=32)] = "",
    page: Annotated[int, Query(ge=0, le=100_000)] = 0,
    reveal: bool = False,
) -> Response:
    flt = Filter(parse_status(status), q.strip(), page, reveal)
    view = await _load(s, job_id)
    rows = await table(s, job_id, flt)
    partial = request.headers.get("HX-Target") == "recipients" and not request.headers.get(
        "HX-History-Restore-Request"
    )
    if partial:
        return render.page(request, "_recipients.html", {"v": view, "t": rows})
    trace = await failures.trace(s, job_id) if who.can_act else ""
    context = {"nav": "jobs", "v": view, "t": rows, "log": await _log(s, view), "trace": trace}
    return render.page(request, "campaign.html", context)


@router.get("/{job_id}/actions")
async def campaign_actions(
    request: Request, job_id: JobId, who: Look, s: Svc[campaign.Loads]
) -> Response:
    view = await _load(s, job_id)
    return render.page(request, "_actions.html", {"v": view})


@router.get("/{job_id}/events")
async def campaign_events(
    request: Request, job_id: JobId, who: Look, s: Svc[campaign.Loads]
) -> StreamingResponse:
    hub: live.Hub = request.app.state.dashboard_hub
    body = live.stream(
        request,
        hub,
        f"campaign:{job_id}",
        _producer(request, s, job_id),
        allowed=still_logged_in(request),
    )
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/{job_id}/report.csv")
async def report(job_id: JobId, who: Look, s: Svc[campaign.Loads]) -> StreamingResponse:
    await _load(s, job_id)
    return StreamingResponse(
        reports.csv_report(s, job_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{job_id}.csv"'},
    )
