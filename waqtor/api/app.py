"""The ASGI app: API routes, error shapes, body limit, and (in ``serve``) a worker."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from waqtor import __version__, dashboard
from waqtor.api import (
    errors,
    routes_accounts,
    routes_callbacks,
    routes_jobs,
    routes_messages,
    routes_queue,
    routes_simulator,
    routes_webhooks,
)
from waqtor.api.auth import require_key
from waqtor.api.fast_reads import FastReads
from waqtor.api.limits import BodyLimit
from waqtor.api.live_jobs import LiveJobs
from waqtor.api.live_stats import LiveStats
from waqtor.clock import Clock
from waqtor.config import Settings
from waqtor.sender import Sender
from waqtor.services import build
from waqtor.store.queue_stats import QueueStatsReader
from waqtor.worker import CampaignWorker

log = logging.getLogger("waqtor.api")


def create_app(
    settings: Settings,
    redis_url: str,
    api_keys: list[str],
    *,
    run_worker: bool = True,
    readonly_keys: list[str] | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    if not api_keys:
        raise ValueError("at least one API key is required")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build(settings, redis_url, clock=clock)
        app.state.services = services
        app.state.sender = Sender(services, "api")
        app.state.live_stats = LiveStats(
            QueueStatsReader(services.redis, services.keys), services.clock
        )
        app.state.live_jobs = LiveJobs(services)
        worker: CampaignWorker | None = None
        if run_worker:
            worker = CampaignWorker(
                build(settings, redis_url, patient=True, clock=clock), name="serve"
            )
            await worker.start()
        app.state.worker = worker
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
                await worker.close()
            app.state.live_stats = app.state.live_jobs = None
            await services.close()

    app = FastAPI(
        title="waqtor",
        version=__version__,
        summary="Bulk WhatsApp sending on a Redis-backed queue, paced per sender account.",
        lifespan=lifespan,
    )
    app.state.redis_url = redis_url
    app.state.api_keys = list(api_keys)
    app.state.readonly_keys = (
        list(readonly_keys) if readonly_keys is not None else settings.readonly_keys()
    )
    errors.install(app)
    auth: list[Any] = [Depends(require_key)]
    app.include_router(routes_messages.router, dependencies=auth)
    app.include_router(routes_queue.router, dependencies=auth)
    app.include_router(routes_jobs.router, dependencies=auth)
    app.include_router(routes_accounts.router, dependencies=auth)
    app.include_router(routes_simulator.router, dependencies=auth)
    app.include_router(routes_callbacks.router, dependencies=auth)
    # Meta cannot send an X-API-Key: the webhook checks Meta's signature instead.
    app.include_router(routes_webhooks.router)
    dashboard.install(app, settings)

    @app.get("/health", tags=["health"])
    async def liveness() -> dict[str, Any]:
        return {"success": True, "status": "ok", "version": __version__}

    # Innermost of our middlewares, so CORS and the body limit still wrap it.
    app.add_middleware(FastReads, state=app.state)
    origins = settings.cors_list()
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type", "Idempotency-Key"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
