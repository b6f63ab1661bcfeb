"""Redis clients built from settings."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

POOL_SIZE = 64


def client_options(url: str) -> dict[str, Any]:
    """Options for redis-py (and for bullmq, which takes the same dict).

    ``socket_timeout=None``: redis-py's default read timeout equals bullmq's blocking wait, so an
    idle worker would keep silently reconnecting and pick new jobs up late.
    """
    parts = urlsplit(url)
    opts: dict[str, Any] = {"socket_timeout": None, "socket_connect_timeout": 2.0}
    if parts.scheme == "unix":
        opts["unix_socket_path"] = parts.path
    else:
        opts["host"] = parts.hostname or "localhost"
        opts["port"] = parts.port or 6379
        db = parts.path.lstrip("/")
        opts["db"] = int(db) if db else 0
        if parts.password:
            opts["password"] = parts.password
        if parts.username:
            opts["username"] = parts.username
        if parts.scheme == "rediss":
            opts["ssl"] = True
    return opts


def connect(url: str, *, patient: bool = False, client_name: str | None = None) -> Redis:
    """A pooled client.

    The API's client retries briefly, then lets errors surface as 503s. A worker's client is
    ``patient``: it rides out a Redis restart (about a minute of retries) instead of abandoning
    a campaign halfway. ``client_name`` names every connection (``CLIENT SETNAME``), again
    after each reconnect.
    """
    retry = (
        Retry(ExponentialBackoff(cap=2.0, base=0.1), 40)
        if patient
        else Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)
    )
    opts = client_options(url)
    if client_name:
        opts["client_name"] = client_name
    kind: type[Connection] | type[UnixDomainSocketConnection] = Connection
    if "unix_socket_path" in opts:
        opts["path"] = opts.pop("unix_socket_path")
        kind = UnixDomainSocketConnection
    elif opts.pop("ssl", False):
        kind = SSLConnection
    # Blocking: a burst of requests waits for a free connection instead of failing.
    pool = BlockingConnectionPool(
        max_connections=POOL_SIZE,
        timeout=10,
        connection_class=kind,
        decode_responses=True,
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=10,
        **opts,
    )
    return Redis(connection_pool=pool)
