"""A web account's pairing page: the live QR code (or pairing code) and the session's state,
refreshed every few seconds while pairing; actions ask the session's holder to pair again."""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import APIRouter, Path, Request
from starlette.responses import RedirectResponse, Response

from waqtor.dashboard import render
from waqtor.dashboard.auth import Act, Look, PageError, Svc, codec
from waqtor.dashboard.errors import DashboardRoute
from waqtor.providers.web import qr
from waqtor.providers.web.hub import NAME
from waqtor.providers.web.session import ban_end
from waqtor.runtime.parts import HasAccounts, HasWeb
from waqtor.store import web_sessions as ws


class WebPages(HasAccounts, HasWeb, Protocol):
    """What the WhatsApp Web pages read and write."""


router = APIRouter(prefix="/admin/queues", route_class=DashboardRoute, include_in_schema=False)
Name = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]

LABELS = {
    ws.UNPAIRED: "not paired",
    ws.CONNECTING: "connecting",
    ws.PAIRING: "pairing",
    ws.CONNECTED: "connected",
    ws.LOGGED_OUT: "logged out",
    ws.BANNED: "banned",
    ws.REPLACED: "replaced by another connection",
}


async def _web_account(s: HasAccounts, name: str) -> None:
    account = await s.accounts.get(name, fresh=True)
    if account is None or account.provider != NAME:
        raise PageError(404, f"No WhatsApp Web account named {name}")


@router.get("/accounts/{name}/web")
async def web_page(request: Request, name: Name, who: Look, s: Svc[WebPages]) -> Response:
    await _web_account(s, name)
    state = await s.web.store.state(name)
    label = LABELS.get(state.state, state.state)
    if state.state == ws.BANNED and state.until_ms:
        label = f"banned until {ban_end(state.until_ms)}"
    account = await s.accounts.get(name, fresh=True)
    context = {
        "nav": "accounts",
        "account_name": name,
        "state": state,
        "label": label,
        "qr_image": qr.svg_data_uri(state.qr) if state.qr else "",
        "holder": await s.web.store.holder(name),
        "paused": account.pausedReason if account and account.paused else "",
        # Refreshed while something is about to change: a pairing asked for or under way.
        "refresh": state.state in (ws.PAIRING, ws.CONNECTING)
        or await s.web.store.pairing_requested(name),
    }
    return render.page(request, "web_account.html", context)


@router.post("/accounts/{name}/web/pair")
async def pair(request: Request, name: Name, who: Act, s: Svc[WebPages]) -> Response:
    await _web_account(s, name)
    form = await request.form()
    phone = "".join(ch for ch in str(form.get("phone") or "") if ch.isdigit())
    if form.get("phone") and not 8 <= len(phone) <= 15:
        raise PageError(400, "phone: the number to link, with its country code (8-15 digits)")
    await s.web.store.request_pairing(name, f"code:{phone}" if phone else "qr")
    response = RedirectResponse(f"/admin/queues/accounts/{name}/web", status_code=303)
    message = "Pairing requested: the code appears here in a few seconds."
    codec(request).write(response, request, who.session.with_flash(message, "ok"))
    return response
