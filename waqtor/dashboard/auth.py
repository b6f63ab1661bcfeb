"""Who is looking: the session's role, and the checks every page and every POST goes through.

Pages need a logged-in session (else a redirect to the login page). Every POST needs the
session's CSRF token, as the ``csrf`` form field or the ``X-CSRF-Token`` header (htmx sends it);
changes need the admin role as well.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from waqtor.dashboard.session import Session, SessionCodec
from waqtor.runtime.services import Services
from waqtor.store.sessions import SessionStore

CSRF_HEADER = "X-CSRF-Token"


class LoginRequired(Exception):
    """Not logged in (or the session's key is no longer configured)."""


class PageError(Exception):
    """Shown to the user as an error page (or an alert, for htmx requests)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Viewer:
    role: str  # "admin" or "readonly"
    session: Session

    @property
    def can_act(self) -> bool:
        return self.role == "admin"

    @property
    def csrf(self) -> str:
        return self.session.csrf


def codec(request: Request) -> SessionCodec:
    found: SessionCodec = request.app.state.dashboard_codec
    return found


def services(request: Request) -> Services:
    s: Services = request.app.state.services
    return s


def sessions(request: Request) -> SessionStore:
    s = services(request)
    return s.store.sessions()


async def resolve(request: Request) -> Viewer | None:
    """The logged-in viewer, or None: a valid signed cookie, a key still configured, and a
    server-side session record still alive (logout deletes it)."""
    session = codec(request).read(request)
    if session is None or not session.key:
        return None
    state = request.app.state
    role = codec(request).role(session, state.api_keys, state.readonly_keys)
    if role is None or not await sessions(request).alive(session.sid, session.key):
        return None
    return Viewer(role, session)


def still_logged_in(request: Request) -> Callable[[], Awaitable[bool]]:
    """For a long-lived stream: asks again whether its session is alive."""

    async def check() -> bool:
        try:
            return await resolve(request) is not None
        except Exception:  # Redis away for a moment: the stream says so itself, and goes on
            return True

    return check


async def viewer(request: Request) -> Viewer:
    found = await resolve(request)
    if found is None:
        raise LoginRequired()
    request.state.viewer = found
    return found


async def check_csrf(request: Request, session: Session | None) -> None:
    given = request.headers.get(CSRF_HEADER, "")
    if not given:
        form = await request.form()
        field = form.get("csrf")
        given = field if isinstance(field, str) else ""
    if session is None or not given or not hmac.compare_digest(given, session.csrf):
        raise PageError(403, "Missing or invalid CSRF token: reload the page and try again")


async def poster(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> Viewer:
    """A POST that changes nothing (logout, preview): any role, valid CSRF token."""
    await check_csrf(request, who.session)
    return who


async def actor(request: Request, who: Annotated[Viewer, Depends(poster)]) -> Viewer:
    """A POST that changes something: admin role and a valid CSRF token."""
    if not who.can_act:
        raise PageError(403, "This key is read-only: it can look at everything and change nothing")
    return who


Look = Annotated[Viewer, Depends(viewer)]
Post = Annotated[Viewer, Depends(poster)]
Act = Annotated[Viewer, Depends(actor)]
T = TypeVar("T")
#: A page's view of the process's services, narrowed to the parts it declares: ``s:
#: Svc[control.Controls]`` (``waqtor.runtime.parts``). FastAPI injects the whole ``Services``;
#: mypy holds the page to what ``T`` declares.
Svc = Annotated[T, Depends(services)]
