"""``X-API-Key`` checking: header only, constant time, never logged."""

from __future__ import annotations

from fastapi import Request

from waqtor.api.errors import ApiError
from waqtor.web.keys import HEADER, SAFE_METHODS, role_of

__all__ = ["HEADER", "authorise", "require_key"]


def authorise(given: str | None, method: str, full: list[str], readonly: list[str]) -> str:
    """The caller's role, or ApiError 401 (no key) or 403 (wrong key, or a read-only key on a
    method that changes something). Shared by the dependency and the stats fast path."""
    if not given:
        raise ApiError(401, "Missing API key: send it in the X-API-Key header")
    role = role_of(given, full, readonly)
    if role is None:
        raise ApiError(403, "Invalid API key")
    if role == "readonly" and method not in SAFE_METHODS:
        raise ApiError(403, "This API key is read-only")
    return role


async def require_key(request: Request) -> None:
    state = request.app.state
    request.state.role = authorise(
        request.headers.get(HEADER), request.method, state.api_keys, state.readonly_keys
    )
