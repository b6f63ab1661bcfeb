"""``X-API-Key`` checking: header only, constant time, never logged."""

from __future__ import annotations

import hmac

from fastapi import Request

from waqtor.api.errors import ApiError

HEADER = "X-API-Key"


def key_matches(candidate: str, keys: list[str]) -> bool:
    """Compare against every key, without stopping at the first match (no timing signal)."""
    given = candidate.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def role_of(given: str, full: list[str], readonly: list[str]) -> str | None:
    """``admin``, ``readonly`` or None. Every key is compared, whatever matches first."""
    is_admin = key_matches(given, full)
    is_reader = key_matches(given, readonly)
    if is_admin:
        return "admin"
    return "readonly" if is_reader else None


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
