"""Jinja2 rendering: the environment, the filters, and the headers every page carries."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from waqtor import __version__
from waqtor.dashboard.auth import Viewer, codec
from waqtor.dashboard.banner import Simulation
from waqtor.domain.eta import humanise
from waqtor.domain.phones import mask

#: No inline script or style anywhere: htmx is configured not to inject its own styles.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except Exception:
        return UTC


class Renderer:
    def __init__(self, timezone: str) -> None:
        self.zone = _zone(timezone)
        self.env = Environment(
            loader=PackageLoader("waqtor.dashboard", "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            when=self.when,
            clock=self.clock,
            hhmm=self.hhmm,
            iso=self.iso,
            ago=ago,
            num=num,
            mask=mask,
        )
        self.env.filters["duration"] = humanise
        self.env.globals.update(version=__version__, static=static_url)

    def _dt(self, ms: int | float | None) -> datetime | None:
        return datetime.fromtimestamp(ms / 1000, self.zone) if ms else None

    def when(self, ms: int | float | None) -> str:
        dt = self._dt(ms)
        return dt.strftime("%Y-%m-%d %H:%M:%S") if dt else "—"

    def clock(self, ms: int | float | None) -> str:
        dt = self._dt(ms)
        return dt.strftime("%H:%M:%S") if dt else "—"

    def hhmm(self, ms: int | float | None) -> str:
        dt = self._dt(ms)
        return dt.strftime("%H:%M") if dt else "—"

    def iso(self, ms: int | float | None) -> str:
        dt = self._dt(ms)
        return dt.isoformat(timespec="seconds") if dt else ""

    def fragment(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)


def ago(ms: int | float | None) -> str:
    if not ms:
        return "never"
    seconds = max(0.0, time.time() - ms / 1000)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def num(value: int | float | None) -> str:
    return "—" if value is None else f"{value:,}"


def static_url(name: str) -> str:
    return f"/admin/static/{name}?v={__version__}"


def renderer(request: Request) -> Renderer:
    found: Renderer = request.app.state.dashboard_renderer
    return found


def page(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    viewer: Viewer | None = None,
) -> HTMLResponse:
    """A full page (or a fragment: any template works) with the common context and headers."""
    who = viewer or getattr(request.state, "viewer", None)
    simulation = getattr(request.state, "simulation", None) or Simulation("all")
    flash = (who.session.flash, who.session.flash_kind) if who and who.session.flash else None
    html = renderer(request).fragment(
        name,
        request=request,
        viewer=who,
        simulation=simulation,
        flash=flash,
        **context,
    )
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    if who is not None and flash is not None:
        codec(request).write(response, request, replace(who.session, flash=""))
    return response
