"""Who may send a body, decided from the request line and headers before a byte of it is read.

- ``/api/*``: the ``X-API-Key`` header is checked first (401 missing, 403 wrong or read-only on
  a change, 429 with ``Retry-After`` for an address past the failed-attempt limit); only then
  is the body read, up to MAX_BODY_BYTES.
- Dashboard changes (``/admin/*`` other than GET, HEAD and the login form): a live session is
  required first (otherwise the login redirect), then up to MAX_BODY_BYTES.
- Everything else authenticates from its body (the signed WhatsApp webhook, the login form)
  or needs none (``/health``, ``/docs``): at most PREAUTH_MAX_BODY_BYTES, counted as it
  streams.

A 58 MB body without a key used to be read and parsed before its 401; now it is refused
without being read, and no body is ever held in memory past its limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from waqtor.api.errors import error_body
from waqtor.web.guard import Guard, client_address
from waqtor.web.keys import HEADER, SAFE_METHODS, role_of
from waqtor.web.limits import call_limited

_HEADER = HEADER.lower().encode("latin-1")
#: A dashboard POST that needs no session: the login form authenticates from its body.
LOGIN = "/admin/login"
#: Installed by the dashboard: None when the request's session is live, else the answer.
SessionCheck = Callable[[Request], Awaitable[Response | None]]


def _json(status: int, error: str, headers: dict[str, str] | None = None) -> Response:
    # The very bytes the routes' own error handler would send.
    return JSONResponse(error_body(error), status_code=status, headers=headers)


def too_many(wait_s: int) -> Response:
    return _json(
        429,
        f"Too many failed attempts from your address: try again in {wait_s} s",
        {"Retry-After": str(wait_s)},
    )


class Gate:
    def __init__(self, app: ASGIApp, state: State, max_body: int, preauth_max_body: int) -> None:
        self.app = app
        self.state = state
        self.max_body = max_body
        self.preauth_max_body = preauth_max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root + "/"):
            path = path[len(root) :]
        method: str = scope["method"]
        refused: Response | None = None
        limit = self.preauth_max_body
        if path == "/api" or path.startswith("/api/"):
            refused = await self._api_key(scope, method)
            limit = self.max_body
        elif path.startswith("/admin/") and method not in SAFE_METHODS and path != LOGIN:
            check: SessionCheck | None = getattr(self.state, "dashboard_session_check", None)
            if check is not None:
                refused = await check(Request(scope))
            limit = self.max_body
        if refused is not None:
            refused.headers["Connection"] = "close"  # the unread body is not worth draining
            await refused(scope, receive, send)
            return
        await call_limited(self.app, scope, receive, send, limit)

    async def _api_key(self, scope: Scope, method: str) -> Response | None:
        guard: Guard | None = getattr(self.state, "guard", None)
        address = client_address(scope)
        if guard is not None:
            wait = await guard.retry_after(address)
            if wait:
                return too_many(wait)
        given = _header(scope)
        if not given:
            return _json(401, "Missing API key: send it in the X-API-Key header")
        state: Any = self.state
        role = role_of(given, state.api_keys, state.readonly_keys)
        if role is None:
            if guard is not None:
                wait = await guard.failed(address)
                if wait:
                    return too_many(wait)
            return _json(403, "Invalid API key")
        if role == "readonly" and method not in SAFE_METHODS:
            return _json(403, "This API key is read-only")
        return None


def _header(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _HEADER:
            text: str = value.decode("latin-1")
            return text
    return None
