"""API keys and their roles: header only, constant time, never logged."""

from __future__ import annotations

import hmac

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
