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


async def require_key(request: Request) -> None:
    given = request.headers.get(HEADER)
    if not given:
        raise ApiError(401, "Missing API key: send it in the X-API-Key header")
    if not key_matches(given, request.app.state.api_keys):
        raise ApiError(403, "Invalid API key")
