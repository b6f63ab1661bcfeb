"""Login with an API key (in a POST body only), and logout."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from waqtor.api.auth import role_of
from waqtor.dashboard import render
from waqtor.dashboard.auth import Post, check_csrf, codec
from waqtor.dashboard.errors import LOGIN, DashboardRoute, safe_next
from waqtor.dashboard.session import Session

router = APIRouter(prefix="/admin", route_class=DashboardRoute, include_in_schema=False)

FAILED_LOGIN_DELAY_S = 0.5


def _login_page(request: Request, session: Session, nxt: str, error: str = "") -> Response:
    status = 401 if error else 200
    response = render.page(
        request, "login.html", {"csrf": session.csrf, "next": nxt, "error": error}, status=status
    )
    codec(request).write(response, request, session)
    return response


@router.get("/login")
async def login_form(request: Request, next: str = "/admin/queues") -> Response:
    session = codec(request).read(request)
    state = request.app.state
    if session and codec(request).role(session, state.api_keys, state.readonly_keys):
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, session or Session.anonymous(), safe_next(next))


@router.post("/login")
async def login(request: Request) -> Response:
    session = codec(request).read(request)
    await check_csrf(request, session)
    assert session is not None  # check_csrf rejects a request without a session
    form = await request.form()
    key = form.get("key")
    nxt = safe_next(str(form.get("next") or ""))
    state = request.app.state
    role = role_of(key, state.api_keys, state.readonly_keys) if isinstance(key, str) else None
    if role is None:
        await asyncio.sleep(FAILED_LOGIN_DELAY_S)  # slows down guessing
        return _login_page(request, session, nxt, "That key is not valid. Check it and try again.")
    assert isinstance(key, str)
    fresh = codec(request).login(key)
    if role == "readonly":
        fresh = fresh.with_flash("Logged in with a read-only key: you can look, not change.")
    response = RedirectResponse(nxt, status_code=303)
    codec(request).write(response, request, fresh)
    return response


@router.post("/logout")
async def logout(request: Request, who: Post) -> Response:
    response = RedirectResponse(LOGIN + "?out=1", status_code=303)
    codec(request).clear(response, request)
    return response


@router.get("")
@router.get("/")
async def root() -> Response:
    return RedirectResponse("/admin/queues", status_code=303)
