"""A typed Python client for waqtor's HTTP API (httpx), blocking or asyncio.

    from waqtor.client import Client

    with Client("http://127.0.0.1:8080", key) as waqtor:
        sent = waqtor.send("list.csv", "Hi {name}", account="shop-1")
        job = waqtor.wait(sent.jobId, on_progress=lambda j: print(j.recipients.sent))
        print(job.recipients)

Stands apart from the service: it imports nothing of the server, so it can be copied or
vendored alone (it needs httpx, httpx-sse and pydantic).
"""

from waqtor.client import models
from waqtor.client.aio import AsyncClient
from waqtor.client.errors import (
    ApiError,
    AuthError,
    BadRequest,
    Conflict,
    NotFound,
    TransportError,
    Unavailable,
    WaqtorError,
)
from waqtor.client.sync import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "AuthError",
    "BadRequest",
    "Client",
    "Conflict",
    "NotFound",
    "TransportError",
    "Unavailable",
    "WaqtorError",
    "models",
]
