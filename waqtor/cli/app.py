"""The whole ASGI app ``serve`` runs: the API with the dashboard mounted on it. Composed here,
above both, because the API and the dashboard never import each other."""

from __future__ import annotations

from fastapi import FastAPI

from waqtor import dashboard
from waqtor.api import app as api_app
from waqtor.config import Settings
from waqtor.domain.clock import Clock


def create_app(
    settings: Settings,
    redis_url: str,
    api_keys: list[str],
    *,
    run_worker: bool = True,
    readonly_keys: list[str] | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    return api_app.create_app(
        settings,
        redis_url,
        api_keys,
        run_worker=run_worker,
        readonly_keys=readonly_keys,
        clock=clock,
        parts=[dashboard.install],
    )
