"""The API's ASGI app: routes, error shapes, body limit, and (in ``serve``) a worker. The
dashboard mounts itself through ``parts`` (``waqtor.cli.app``): the API never imports it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from waqtor import __version__
from waqtor.api import (
    errors,
    metrics,
    openapi,
    routes_accounts,
    routes_callbacks,
    routes_events,
    routes_gateway_webhooks,
    routes_jobs,
    routes_messages,
    routes_queue,
    routes_simulator,
    routes_web,
    routes_webhooks,
)
from waqtor.api.auth import require_key
from waqtor.api.fast_reads import FastReads
from waqtor.api.gate import Gate
from waqtor.api.live_jobs import LiveJobs
from waqtor.api.live_stats import LiveStats
from waqtor.campaigns import web_inbox
from waqtor.config import Settings
from waqtor.domain.clock import Clock
from waqtor.runtime import exiting, shutdown
from waqtor.runtime.services import CLOSE_S, build
from waqtor.sending.sender import Sender
from waqtor.sending.worker import STOP_TIMEOUT_S, CampaignWorker
from waqtor.web.guard import Guard

log = logging.getLogger("waqtor.api")

#: The serve worker's stop bounds each of its steps; this bounds the whole (s).
WORKER_STOP_BOUND_S = STOP_TIMEOUT_S + 15

#: Mounts more of the service on the app (the dashboard): called after the API's routes.
Part = Callable[[FastAPI, Settings], None]


def create_app(
    settings: Settings,
    redis_url: str,
    api_keys: list[str],
    *,
    run_worker: bool = True,
    readonly_keys: list[str] | None = None,
    clock: Clock | None = None,
    parts: Sequence[Part] = (),
) -> FastAPI:
    if not api_keys:
        raise ValueError("at least one API key is required")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build(settings, redis_url, clock=clock)
        app.state.services = services
        app.state.sender = Sender(services, "api")
        app.state.live_stats = LiveStats(services.store.queue_stats(), services.clock)
        app.state.live_jobs = LiveJobs(services)
        app.state.guard = Guard(
            services.store.failed_attempts(
                limit=settings.auth_fail_limit, window_s=settings.auth_fail_window_s
            )
        )
        worker: CampaignWorker | None = None
        if run_worker:
            worker = CampaignWorker(
                build(settings, redis_url, patient=True, clock=clock), name="serve"
            )
            web_inbox.install(worker.s)  # the serve worker may hold WhatsApp Web sessions
            await worker.start()
        app.state.worker = worker
        try:
            yield
        finally:
            # Every step is bounded inside; the outer bounds are a last resort against a hang.
            if worker is not None:
                await shutdown.step("serve worker stop", worker.stop(), WORKER_STOP_BOUND_S)
                await shutdown.step("serve worker close", worker.close(), CLOSE_S + 1)
            app.state.live_stats = app.state.live_jobs = app.state.guard = None
            await shutdown.step("API services close", services.close(), CLOSE_S + 1)

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
    openapi.install(app)
    auth: list[Any] = [Depends(require_key)]
    app.include_router(routes_messages.router, dependencies=auth)
    app.include_router(routes_queue.router, dependencies=auth)
    app.include_router(routes_jobs.router, dependencies=auth)
    app.include_router(routes_events.router, dependencies=auth)
    app.include_router(routes_accounts.router, dependencies=auth)
    app.include_router(routes_web.router, dependencies=auth)
    app.include_router(routes_simulator.router, dependencies=auth)
    app.include_router(routes_callbacks.router, dependencies=auth)
    # Prometheus sends a bearer token (METRICS_TOKEN) or an API key: checked in the route.
    app.state.metrics_tokens = settings.metrics_tokens()
    app.include_router(metrics.router)
    # Meta cannot send an X-API-Key: the webhook checks Meta's signature instead.
    app.include_router(routes_webhooks.router)
    app.include_router(routes_gateway_webhooks.router)
    for install in parts:
        install(app, settings)
    exiting.watch_server_exit()

    @app.get("/health", tags=["health"])
    async def liveness() -> dict[str, Any]:
        return {"success": True, "status": "ok", "version": __version__}

    # Outermost last. FastReads answers the polled reads; the gate checks keys and sessions
    # before any body is read and holds every body to its limit as it streams.
    app.add_middleware(FastReads, state=app.state)
    app.add_middleware(
        Gate,
        state=app.state,
        max_body=settings.max_body_bytes,
        preauth_max_body=settings.preauth_max_body_bytes,
    )
    origins = settings.cors_list()
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type", "Idempotency-Key"],
        )
    proxies = settings.proxies()
    if proxies:
        # Only then is X-Forwarded-For believed, and only from these peers (never by default).
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)
    return app
