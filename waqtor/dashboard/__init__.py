"""The monitoring dashboard at ``/admin/queues``: server-rendered pages, live over SSE.

Jinja2 templates and vendored htmx (no build step, no CDN); a login with an API key sets a
signed session cookie; every POST carries a CSRF token; read-only keys change nothing.
May import web, campaigns and everything below; never the API (``waqtor.cli.app`` mounts both).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from waqtor.config import Settings
from waqtor.dashboard import (
    live,
    routes_accounts,
    routes_actions,
    routes_auth,
    routes_campaign,
    routes_compose,
    routes_pages,
    routes_web,
)
from waqtor.dashboard.errors import session_gate
from waqtor.dashboard.overview import Overview
from waqtor.dashboard.render import Renderer
from waqtor.dashboard.session import SessionCodec, load_secret

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI, settings: Settings) -> None:
    app.state.dashboard_codec = SessionCodec(load_secret(settings), settings.session_max_age_s)
    app.state.dashboard_renderer = Renderer(settings.timezone)
    app.state.dashboard_hub = live.Hub()
    app.state.dashboard_overview = Overview()
    # api.gate asks this before it lets a dashboard change's body be read.
    app.state.dashboard_session_check = session_gate
    app.mount("/admin/static", StaticFiles(directory=STATIC), name="dashboard-static")
    app.include_router(routes_auth.router)
    app.include_router(routes_compose.router)  # before /admin/queues/jobs/{id}: fixed paths
    app.include_router(routes_actions.router)
    app.include_router(routes_accounts.router)
    app.include_router(routes_pages.router)
    app.include_router(routes_campaign.router)
    app.include_router(routes_web.router)
    live.watch_server_exit()
