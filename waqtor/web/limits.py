"""Request body limits, enforced while the body streams in: nothing is buffered past a limit.

A declared ``Content-Length`` over the limit is refused (413) before a byte is read. A body
without one (chunked) is counted as the app reads it; the read that passes the limit raises
:class:`BodyTooLarge`, which becomes a 413 (the API's JSON, the dashboard's page, or a plain
JSON answer here when nothing else caught it).
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised mid-read when a body grows past its limit. An HTTPException (413), so that code
    reading a body on its own (FastAPI's body parsing, a form) lets it through as it is."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"body: request body is larger than {max_bytes} bytes")
        self.max_bytes = max_bytes

    def __str__(self) -> str:
        return str(self.detail)


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def limited(receive: Receive, max_bytes: int) -> Receive:
    """``receive`` that raises BodyTooLarge once more than ``max_bytes`` have come in."""
    seen = 0

    async def read() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise BodyTooLarge(max_bytes)
        return message

    return read


async def too_large(send: Send, max_bytes: int) -> None:
    body = json.dumps({"success": False, "error": str(BodyTooLarge(max_bytes))}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def call_limited(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, max_bytes: int
) -> None:
    """Run ``app`` with its body held to ``max_bytes``."""
    length = declared_length(scope)
    if length is not None and length > max_bytes:
        await too_large(send, max_bytes)
        return
    started = False

    async def tracked(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, limited(receive, max_bytes), tracked)
    except BodyTooLarge:
        if started:
            raise
        await too_large(send, max_bytes)
