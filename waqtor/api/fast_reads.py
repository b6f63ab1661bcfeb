"""The two polled reads, ``GET /api/queue/stats`` and ``GET /api/queue/jobs``, answered before
FastAPI's routing, dependencies and encoding.

Dashboards poll these; with 50 clients, FastAPI's per-request work (route matching over every
route, dependency solving, ``jsonable_encoder``, a JSON encoding per request) cost more than the
shared Redis read itself. This middleware answers them with the same auth (``auth.authorise``:
the same header, constant-time compare, 401/403 bodies, read-only keys allowed), the same bodies
(``LiveStats`` and ``LiveJobs``, which the FastAPI routes serve too) and the same 503 and 500
bodies. It only takes requests whose meaning is plain: a GET on exactly those paths and, for
jobs, no query or exactly ``limit=<1..1000>``. Anything else (HEAD, other methods, other
parameters, a limit FastAPI would reject) goes on to FastAPI, which answers as it always has.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from starlette.datastructures import State
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from waqtor.api.auth import HEADER, authorise
from waqtor.api.errors import INTERNAL, REDIS_DOWN, ApiError, error_body, redis_down
from waqtor.api.live_jobs import DEFAULT_LIMIT, MAX_LIMIT, LiveJobs
from waqtor.api.live_stats import LiveStats

log = logging.getLogger("waqtor.api")

STATS = "/api/queue/stats"
JOBS = "/api/queue/jobs"
_HEADER = HEADER.lower().encode("latin-1")
_PLAIN_LIMIT = re.compile(rb"limit=([1-9][0-9]{0,3})")


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


def plain_limit(query: bytes) -> int | None:
    """The jobs limit of a query FastAPI would read the same way, or None to let it decide."""
    if not query:
        return DEFAULT_LIMIT
    match = _PLAIN_LIMIT.fullmatch(query)
    if match is None:
        return None
    limit = int(match.group(1))
    return limit if limit <= MAX_LIMIT else None


class FastReads:
    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    def _read(self, scope: Scope) -> Callable[[], Awaitable[bytes]] | None:
        """What to answer with, or None to hand the request on to FastAPI."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        path = _route_path(scope)
        if path == STATS:
            # None until the lifespan has run: the FastAPI route answers (or fails) as before.
            stats: LiveStats | None = getattr(self.state, "live_stats", None)
            if stats is not None:
                return stats.encoded
        elif path == JOBS:
            jobs: LiveJobs | None = getattr(self.state, "live_jobs", None)
            limit = plain_limit(scope["query_string"])
            if jobs is not None and limit is not None:
                return lambda: jobs.encoded(limit)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        read = self._read(scope)
        if read is None:
            await self.app(scope, receive, send)
            return
        response = await self._answer(scope, read)
        await response(scope, receive, send)

    async def _answer(self, scope: Scope, read: Callable[[], Awaitable[bytes]]) -> Response:
        state = self.state
        try:
            authorise(_api_key(scope), "GET", state.api_keys, state.readonly_keys)
            body = await read()
        except ApiError as exc:
            return JSONResponse(error_body(exc.error, **exc.extra), status_code=exc.status)
        except REDIS_DOWN as exc:
            return JSONResponse(error_body(redis_down(state.redis_url, exc)), status_code=503)
        except Exception:
            log.exception("unhandled error on GET %s", scope["path"])
            return JSONResponse(error_body(INTERNAL), status_code=500)
        return Response(body, media_type="application/json")
