"""Login with an API key (in a POST body only), logout, and "log out everywhere".

A failed login counts against the client address (``web.guard``): past the limit the form
answers 429 with Retry-After before it reads anything, whatever key is typed. A login starts a
server-side session record; logout deletes it, so a copied cookie stops working at once.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from waqtor.dashboard import render
from waqtor.dashboard.auth import Post, check_csrf, codec, sessions
from waqtor.dashboard.errors import LOGIN, DashboardRoute, safe_next
from waqtor.dashboard.session import Session
from waqtor.web.guard import Guard, client_address
from waqtor.web.keys import role_of

router = APIRouter(prefix="/admin", route_class=DashboardRoute, include_in_schema=False)

FAILED_LOGIN_DELAY_S = 0.5


def _login_page(
    request: Request, session: Session, nxt: str, error: str = "", status: int = 0
) -> Response:
    response = render.page(
        request,
        "login.html",
        {"csrf": session.csrf, "next": nxt, "error": error},
        status=status or (401 if error else 200),
    )
    codec(request).write(response, request, session)
    return response


def _too_many(request: Request, session: Session, nxt: str, wait_s: int) -> Response:
    text = f"Too many failed logins from your address: try again in {wait_s} seconds."
    response = _login_page(request, session, nxt, text, status=429)
    response.headers["Retry-After"] = str(wait_s)
    return response


def _guard(request: Request) -> Guard | None:
    found: Guard | None = getattr(request.app.state, "guard", None)
    return found


@router.get("/login")
async def login_form(request: Request, next: str = "/admin/queues") -> Response:
    session = codec(request).read(request)
    state = request.app.state
    if session and codec(request).role(session, state.api_keys, state.readonly_keys):
        if await sessions(request).alive(session.sid, session.key):
            return RedirectResponse(safe_next(next), status_code=303)
        session = None  # logged out elsewhere: a fresh form
    return _login_page(request, session or Session.anonymous(), safe_next(next))


@router.post("/login")
async def login(request: Request) -> Response:
    session = codec(request).read(request) or Session.anonymous()
    address = client_address(request.scope)
    guard = _guard(request)
    wait = await guard.retry_after(address) if guard else 0
    if wait:  # refused before the form is read: a right key looks like a wrong one
        return _too_many(request, session, "/admin/queues", wait)
    await check_csrf(request, session)
    form = await request.form()
    key = form.get("key")
    nxt = safe_next(str(form.get("next") or ""))
    state = request.app.state
    role = role_of(key, state.api_keys, state.readonly_keys) if isinstance(key, str) else None
    if role is None:
        wait = await guard.failed(address) if guard else 0
        if wait:
            return _too_many(request, session, nxt, wait)
        await asyncio.sleep(FAILED_LOGIN_DELAY_S)  # slows down guessing
        return _login_page(request, session, nxt, "That key is not valid. Check it and try again.")
    assert isinstance(key, str)
    codec_ = codec(request)
    sid = await sessions(request).start(codec_.fingerprint(key), codec_.max_age_s)
    fresh = codec_.login(key, sid)
    if role == "readonly":
        fresh = fresh.with_flash("Logged in with a read-only key: you can look, not change.")
    response = RedirectResponse(nxt, status_code=303)
    codec_.write(response, request, fresh)
    return response


@router.post("/logout")
async def logout(request: Request, who: Post) -> Response:
    """Ends this session on the server too: its cookie, wherever copied, stops working."""
    await sessions(request).end(who.session.sid)
    response = RedirectResponse(LOGIN + "?out=1", status_code=303)
    codec(request).clear(response, request)
    return response


@router.post("/logout/everywhere")
async def logout_everywhere(request: Request, who: Post) -> Response:
    """Ends every session of the key this one logged in with (every browser, every copy)."""
    await sessions(request).end_all(who.session.key, who.session.sid)
    response = RedirectResponse(LOGIN + "?out=all", status_code=303)
    codec(request).clear(response, request)
    return response


@router.get("")
@router.get("/")
async def root() -> Response:
    return RedirectResponse("/admin/queues", status_code=303)
