"""Questions about the Redis server itself: is it there, and may it evict our keys."""

from __future__ import annotations

from pathlib import Path

import redis
from redis.asyncio import Redis
from redis.exceptions import RedisClusterException

from waqtor.store.connection import connect


def ping_socket(socket: Path) -> bool:
    """Whether a redis-server answers on this unix socket (blocking, one second at most)."""
    try:
        client = redis.Redis(unix_socket_path=str(socket), socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


async def eviction_policy(client: Redis) -> str:
    """The server's ``maxmemory-policy`` (one round trip; raises when Redis is away)."""
    info = await client.config_get("maxmemory-policy")
    return str(info.get("maxmemory-policy", "unknown"))


async def probe(url: str) -> tuple[str | None, str]:
    """``(None, policy)`` if Redis at ``url`` answers, else ``(the error, "")``."""
    client = connect(url)
    try:
        await client.ping()
        return None, await eviction_policy(client)
    except (redis.RedisError, RedisClusterException, OSError) as exc:
        return str(exc), ""
    finally:
        await client.aclose()
