"""Actions: plain POST forms (CSRF token, admin role), answered by a redirect and a message."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from waqtor.campaigns import control
from waqtor.campaigns import submission as campaigns
from waqtor.dashboard.auth import Act, PageError, Svc, Viewer, codec
from waqtor.dashboard.errors import DashboardRoute
from waqtor.dashboard.routes_campaign import JobId
from waqtor.runtime.parts import HasEngine

router = APIRouter(prefix="/admin/queues", route_class=DashboardRoute, include_in_schema=False)

UNITS_MS = {"minutes": 60_000, "hours": 3_600_000, "days": 86_400_000}
Action = Callable[[control.Controls, str], Awaitable[control.Outcome]]
ACTIONS: dict[str, Action] = {
    "pause": control.pause,
    "resume": control.resume,
    "cancel": control.cancel,
    "promote": control.promote,
    "remove": control.remove,
}


def _back(request: Request, who: Viewer, to: str, message: str, kind: str = "ok") -> Response:
    response = RedirectResponse(to, status_code=303)
    codec(request).write(response, request, who.session.with_flash(message, kind))
    return response


@router.post("/pause")
async def pause_queue(request: Request, who: Act, s: Svc[HasEngine]) -> Response:
    await s.engine.pause()
    text = "Queue paused: running campaigns stop before their next message."
    return _back(request, who, "/admin/queues", text)


@router.post("/resume")
async def resume_queue(request: Request, who: Act, s: Svc[HasEngine]) -> Response:
    await s.engine.resume()
    return _back(request, who, "/admin/queues", "Queue resumed.")


@router.post("/clean")
async def clean_queue(request: Request, who: Act, s: Svc[campaigns.Cleans]) -> Response:
    form = await request.form()
    unit = str(form.get("unit") or "hours")
    try:
        amount = float(str(form.get("grace") or ""))
    except ValueError:
        amount = -1
    if unit not in UNITS_MS or not 0 <= amount <= 3650 * 24:
        raise PageError(400, "grace: a number of minutes, hours or days (0 or more)")
    grace_ms = int(amount * UNITS_MS[unit])
    removed = await campaigns.clean(s, grace_ms)
    text = f"Removed {len(removed)} finished job(s) older than {amount:g} {unit}."
    return _back(request, who, "/admin/queues", text)


@router.post("/jobs/{job_id}/{action}")
async def campaign_action(
    request: Request, job_id: JobId, action: str, who: Act, s: Svc[control.Controls]
) -> Response:
    page = f"/admin/queues/jobs/{job_id}"
    try:
        if action == "retry":
            form = await request.form()
            raw = str(form.get("codes") or "")
            codes = [c.strip() for c in raw.replace(";", ",").split(",") if c.strip()]
            outcome = await control.retry_failed(s, job_id, codes)
        elif action in ACTIONS:
            outcome = await ACTIONS[action](s, job_id)
        else:
            raise PageError(404, f"Unknown action {action!r}")
    except control.ControlError as exc:
        return _back(request, who, page, exc.message, "error")
    if action == "remove":
        return _back(request, who, "/admin/queues/jobs?state=completed", outcome.message)
    return _back(request, who, page, outcome.message)
