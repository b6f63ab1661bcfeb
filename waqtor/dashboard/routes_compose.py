"""Compose: preview first (rendered samples, invalid, duplicate and suppressed numbers, ETA),
then send and land on the campaign's live page."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from waqtor.campaigns import preview
from waqtor.campaigns import submission as campaigns
from waqtor.dashboard import compose, render
from waqtor.dashboard.auth import Act, Look, PageError, Post, Svc, Viewer, codec
from waqtor.dashboard.errors import DashboardRoute, is_htmx

#: Composing, previewing and sending a campaign read and write what submitting it does.
ComposePages = campaigns.Submits


router = APIRouter(prefix="/admin/queues", route_class=DashboardRoute, include_in_schema=False)
_DUPLICATE = re.compile(r"^duplicate of recipient (\d+)$")


def _problems(result: dict[str, Any] | None) -> tuple[list[Any], list[Any]]:
    """Invalid rows, and duplicates with the row they repeat (rows count from 1)."""
    bad: list[Any] = []
    dups: list[Any] = []
    for row in (result or {}).get("invalid", []):
        match = _DUPLICATE.match(str(row.get("error", "")))
        if match:
            dups.append({**row, "first": int(match.group(1)) + 1})
        else:
            bad.append(row)
    return bad, dups


async def _page(
    request: Request,
    s: ComposePages,
    draft: compose.Draft,
    *,
    sub: compose.Submission | None = None,
    error: str = "",
    status: int = 200,
) -> Response:
    """The compose page, or (for htmx) just its preview part, with a dry run of ``sub``."""
    result = (
        await preview.dry_run(s, sub.parsed, draft.accounts[0], draft.accounts) if sub else None
    )
    if result is not None:
        # The campaign ends when its slowest account does.
        result["slowest"] = max(result["schedule"].values(), key=lambda p: p["estimatedMs"])
    bad, dups = _problems(result)
    context = {
        "nav": "compose",
        "draft": draft,
        "p": result,
        "bad": bad,
        "dups": dups,
        "digest": sub.digest if sub else "",
        "notes": [n for a in draft.accounts for n in await compose.account_notes(s, a)]
        if sub
        else [],
        "error": error,
    }
    if is_htmx(request):
        return render.page(request, "_preview.html", context, status=status)
    context["accounts"] = [a.name for a in await s.accounts.all()]
    return render.page(request, "compose.html", context, status=status)


class _Invalid(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


async def _read(request: Request, s: ComposePages) -> compose.Submission:
    form = await request.form(max_files=1, max_fields=20)
    try:
        return await compose.read(s, form)
    except PageError as exc:
        draft = compose.draft_of(form)
        page = await _page(request, s, draft, error=exc.message, status=exc.status)
        raise _Invalid(page) from exc


@router.get("/compose")
async def compose_page(request: Request, who: Look, s: Svc[ComposePages]) -> Response:
    return await _page(request, s, compose.Draft(message="Hello {name}, "))


@router.post("/compose/preview")
async def compose_preview(request: Request, who: Post, s: Svc[ComposePages]) -> Response:
    try:
        sub = await _read(request, s)
    except _Invalid as bad:
        return bad.response
    return await _page(request, s, sub.draft, sub=sub)


@router.post("/compose/send")
async def compose_send(request: Request, who: Act, s: Svc[ComposePages]) -> Response:
    try:
        sub = await _read(request, s)
    except _Invalid as bad:
        return bad.response
    form = await request.form()
    if form.get("digest") != sub.digest:
        error = "The list or message changed since the preview: check this preview, then send."
        return await _page(request, s, sub.draft, sub=sub, error=error, status=409)
    try:
        # No sender here: the dashboard always queues (the page follows the campaign's job).
        done = await campaigns.submit(s, sub.parsed, sub.draft.accounts, delay_ms=sub.delay_ms)
    except campaigns.NothingToSend:
        error = "Nothing to send: no valid recipient is left."
        return await _page(request, s, sub.draft, sub=sub, error=error, status=400)
    eta = done.eta.text if done.eta is not None else ""
    text = f"Campaign queued: {len(sub.parsed.accepted)} recipient(s), {eta}."
    return _sent(request, who, done.job_id, text)


def _sent(request: Request, who: Viewer, cid: str, message: str) -> Response:
    target = f"/admin/queues/jobs/{cid}"
    response: Response
    if is_htmx(request):
        response = Response(status_code=204, headers={"HX-Redirect": target})
    else:
        response = RedirectResponse(target, status_code=303)
    codec(request).write(response, request, who.session.with_flash(message))
    return response
