"""Dashboard routes answer errors with HTML, never a stack trace; logged-out users go to login."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from waqtor.config import redis_label
from waqtor.dashboard import banner, render
from waqtor.dashboard.auth import LoginRequired, PageError, resolve
from waqtor.store.errors import REDIS_DOWN
from waqtor.web.limits import BodyTooLarge

log = logging.getLogger("waqtor.dashboard")

LOGIN = "/admin/login"


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def safe_next(path: str) -> str:
    """Only a path inside the dashboard: never another host (``//evil``) or scheme."""
    if path.startswith("/admin/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/admin/queues"


def to_login(request: Request) -> Response:
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = LOGIN
    if request.method == "GET" and wanted.startswith("/admin/queues"):
        target += "?next=" + quote(safe_next(wanted), safe="/")
    if is_htmx(request) or request.headers.get("accept", "").startswith("text/event-stream"):
        return Response(status_code=401, headers={"HX-Redirect": target, **render.HEADERS})
    return RedirectResponse(target, status_code=303)


def error_page(request: Request, status: int, message: str) -> Response:
    if is_htmx(request):
        response = render.page(request, "_alert.html", {"message": message}, status=status)
        response.headers["HX-Retarget"] = "#alerts"
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    return render.page(request, "error.html", {"status": status, "message": message}, status=status)


async def session_gate(request: Request) -> Response | None:
    """For ``api.gate``, before a dashboard change's body is read: None when the session is
    live, else the login redirect (or a 503 page when Redis cannot say)."""
    try:
        if await resolve(request) is not None:
            return None
    except REDIS_DOWN as exc:
        log.warning("dashboard: Redis unavailable: %s", exc)
        url = getattr(request.app.state, "redis_url", "")
        return error_page(
            request, 503, f"Redis is unavailable at {redis_label(url)}: try again shortly"
        )
    return to_login(request)


class DashboardRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            services = getattr(request.app.state, "services", None)
            request.state.simulation = await banner.simulation(services)
            try:
                return await handler(request)
            except LoginRequired:
                return to_login(request)
            except BodyTooLarge as exc:
                return error_page(request, 413, f"The upload is too large: {exc}")
            except PageError as exc:
                return error_page(request, exc.status, exc.message)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
                return error_page(request, 400, f"{field}: {first.get('msg', 'invalid')}")
            except HTTPException as exc:
                return error_page(request, exc.status_code, str(exc.detail))
            except REDIS_DOWN as exc:
                url = getattr(request.app.state, "redis_url", "")
                log.warning("dashboard: Redis unavailable: %s", exc)
                return error_page(
                    request, 503, f"Redis is unavailable at {redis_label(url)}: try again shortly"
                )
            except Exception:
                log.exception("dashboard error on %s %s", request.method, request.url.path)
                return error_page(request, 500, "Something went wrong; the server log has details")

        return guarded
