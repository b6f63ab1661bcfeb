"""``GET /api/queue/stats`` answered before FastAPI's routing, dependencies and encoding.

Dashboards poll this route; with 50 clients, FastAPI's per-request work (route matching over
every route, dependency solving, ``jsonable_encoder``, a JSON encoding per request) cost more
than the Redis read itself. This middleware answers that one GET with the same auth
(``auth.authorise``: the same header, constant-time compare, 401/403 bodies, read-only keys
allowed), the same body (``LiveStats``, which the FastAPI route serves too), and the same 503 and
500 bodies. Anything else, including HEAD and other methods on the same path, goes on to FastAPI.
"""

from __future__ import annotations

import logging

from starlette.datastructures import State
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from waqtor.api.auth import HEADER, authorise
from waqtor.api.errors import INTERNAL, REDIS_DOWN, ApiError, error_body, redis_down
from waqtor.api.live_stats import LiveStats

log = logging.getLogger("waqtor.api")

PATH = "/api/queue/stats"
_HEADER = HEADER.lower().encode("latin-1")


def _route_path(scope: Scope) -> str:
    """The path without the app's mount point, as Starlette's router matches it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return path


def _api_key(scope: Scope) -> str | None:
    # The first X-API-Key header, as ``request.headers.get`` would return it.
    for name, value in scope["headers"]:
        if name == _HEADER:
            text: str = value.decode("latin-1")
            return text
    return None


class StatsFastPath:
    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        live: LiveStats | None = getattr(self.state, "live_stats", None)
        if (
            live is None  # lifespan not run: the FastAPI route answers (or fails) as before
            or scope["type"] != "http"
            or scope["method"] != "GET"
            or _route_path(scope) != PATH
        ):
            await self.app(scope, receive, send)
            return
        response = await self._answer(scope, live)
        await response(scope, receive, send)

    async def _answer(self, scope: Scope, live: LiveStats) -> Response:
        state = self.state
        try:
            authorise(_api_key(scope), "GET", state.api_keys, state.readonly_keys)
            snapshot = await live.get()
        except ApiError as exc:
            return JSONResponse(error_body(exc.error, **exc.extra), status_code=exc.status)
        except REDIS_DOWN as exc:
            return JSONResponse(error_body(redis_down(state.redis_url, exc)), status_code=503)
        except Exception:
            log.exception("unhandled error on GET %s", PATH)
            return JSONResponse(error_body(INTERNAL), status_code=500)
        return Response(snapshot.encoded, media_type="application/json")
