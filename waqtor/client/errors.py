"""What the client raises: the server's ``error`` text and HTTP status, never the API key."""

from __future__ import annotations

from typing import Any


class WaqtorError(Exception):
    """Base of every error the client raises."""


class TransportError(WaqtorError):
    """The service could not be reached (after the retries)."""


class ApiError(WaqtorError):
    """The service answered with an error: ``status`` and its ``error`` text."""

    def __init__(self, status: int, error: str, body: Any = None) -> None:
        super().__init__(f"{status}: {error}")
        self.status = status
        self.error = error
        #: The whole JSON body (``details`` for a 400 names each field; ``invalid`` ...).
        self.body = body

    @property
    def details(self) -> list[dict[str, Any]]:
        found = self.body.get("details") if isinstance(self.body, dict) else None
        return list(found) if isinstance(found, list) else []


class BadRequest(ApiError):
    """400, 413, 415 or 422: the request is wrong; ``error`` names the field."""


class AuthError(ApiError):
    """401 (no key), 403 (wrong key, or a read-only key on a change) or 429 (too many wrong
    keys from this address)."""


class NotFound(ApiError):
    """404."""


class Conflict(ApiError):
    """409: not possible in the campaign's current state (e.g. pausing a finished one)."""


class Unavailable(ApiError):
    """503 after the retries: Redis (or the provider) is down; ``error`` says which."""


def from_status(status: int, error: str, body: Any) -> ApiError:
    kind: type[ApiError] = ApiError
    if status in (401, 403, 429):
        kind = AuthError
    elif status == 404:
        kind = NotFound
    elif status == 409:
        kind = Conflict
    elif status == 503:
        kind = Unavailable
    elif 400 <= status < 500:
        kind = BadRequest
    return kind(status, error, body)
