"""Failed logins and wrong API keys, counted per client address in Redis (so the limit holds
across every ``serve`` process behind one load balancer).

An address that fails ``limit`` times within ``window_s`` is refused (429 with Retry-After) until
the window it started ends, *whatever key it then sends*: a correct guess must look the same as
a wrong one, or the limit would tell a guesser when it has won. Other addresses are never
affected, so a correct key from anywhere else keeps working. An IPv6 client counts by its /64
(one host usually holds a whole /64).
"""

from __future__ import annotations

import ipaddress

from redis.asyncio import Redis

from waqtor.store.keys import Keys
from waqtor.store.scripts import Scripts


def bucket(address: str | None) -> str:
    """The counter's name for a client address: an IPv4 address as is, an IPv6 one by its /64,
    anything else (a Unix socket, a name a proxy passed on) as text, shortened."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "name:" + address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class FailedAttempts:
    def __init__(
        self, redis: Redis, keys: Keys, scripts: Scripts, *, limit: int, window_s: int
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = scripts
        self.limit = limit
        self.window_ms = window_s * 1000

    async def blocked_for_s(self, address: str | None) -> int:
        """Seconds until ``address`` may try again; 0 when it may now. 0 when the limit is off."""
        if self.limit <= 0:
            return 0
        key = self.keys.auth_failures(bucket(address))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.pttl(key)
            count, ttl_ms = await pipe.execute()
        if count is None or int(count) < self.limit:
            return 0
        return max(1, -(-int(ttl_ms) // 1000)) if int(ttl_ms) > 0 else 1

    async def failed(self, address: str | None) -> int:
        """Count one failure; returns the seconds the address must now wait (0: it may go on
        trying)."""
        if self.limit <= 0:
            return 0
        key = self.keys.auth_failures(bucket(address))
        count, ttl_ms = await self.scripts["auth_fail"](keys=[key], args=[self.window_ms])
        if int(count) < self.limit:
            return 0
        return max(1, -(-int(ttl_ms) // 1000))
