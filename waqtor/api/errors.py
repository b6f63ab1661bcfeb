"""Every error leaves as ``{"success": false, "error": ...}``; none leaves as a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from waqtor.config import redis_label
from waqtor.store.errors import REDIS_DOWN
from waqtor.web.limits import BodyTooLarge

log = logging.getLogger("waqtor.api")

__all__ = ["REDIS_DOWN", "ApiError", "error_body", "install", "redis_down"]


class ApiError(Exception):
    def __init__(self, status: int, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.extra = extra


INTERNAL = "internal error; see the server log"


def error_body(error: str, **extra: Any) -> dict[str, Any]:
    return {"success": False, "error": error, **extra}


def redis_down(url: str, exc: BaseException) -> str:
    return f"Redis unavailable at {redis_label(url)}: {exc}"


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    order = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    return sorted(methods, key=lambda m: order.index(m) if m in order else len(order))


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.error, **exc.extra), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "Not found"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route that matched the path only.
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(error_body(message), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            field = _field(loc)
            kind = str(err.get("type", ""))
            msg = str(err.get("msg", "invalid"))
            if kind == "json_invalid":
                msg = "body is not valid JSON"
                field = "body"
            details.append({"field": field, "message": msg})
        first = details[0] if details else {"field": "body", "message": "invalid request"}
        text = f"{first['field']}: {first['message']}"
        return JSONResponse(error_body(text, details=details), status_code=400)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse(error_body(str(exc)), status_code=413)

    async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
        url = getattr(request.app.state, "redis_url", "")
        return JSONResponse(error_body(redis_down(url, exc)), status_code=503)

    for kind in REDIS_DOWN:
        app.add_exception_handler(kind, _redis_down)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(INTERNAL), status_code=500)
