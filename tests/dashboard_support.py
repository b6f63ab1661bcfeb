"""Helpers for the dashboard tests: a logged-in HTTP client for the in-process app."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.conftest import KEY, App

READ_KEY = "read-only-key-0123456789abcdef"
_CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
_CSRF_HEADER = re.compile(r'"X-CSRF-Token": "([^"]+)"')


def csrf_in(html: str) -> str:
    found = _CSRF_HEADER.search(html) or _CSRF_FIELD.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


class Browser:
    """An HTTP client with its own cookie jar, as one browser would be."""

    def __init__(self, app: App) -> None:
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app.app), base_url="http://waqtor", timeout=30
        )
        self.csrf = ""

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def login(self, key: str = KEY) -> httpx.Response:
        form = await self.client.get("/admin/login")
        resp = await self.client.post(
            "/admin/login", data={"csrf": csrf_in(form.text), "key": key, "next": "/admin/queues"}
        )
        if resp.status_code == 303:
            page = await self.client.get("/admin/queues")
            self.csrf = csrf_in(page.text)
        return resp

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.get(path, **kw)

    async def post(
        self, path: str, data: dict[str, Any] | None = None, **kw: Any
    ) -> httpx.Response:
        """A form POST carrying the session's CSRF token (pass ``csrf=None`` to leave it out)."""
        body = {"csrf": self.csrf, **(data or {})}
        if body["csrf"] is None:
            del body["csrf"]
        return await self.client.post(path, data=body, **kw)


def text_of(html: str) -> str:
    """The page's visible-ish text: tags dropped, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()
