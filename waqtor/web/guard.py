"""The failed-attempt limit as requests meet it: is this client address refused right now?

The counts live in Redis (``store.auth_failures``), shared by every process. Each process
remembers what it last learned about an address for ``FRESH_S``, so a request with a good key
costs no Redis round trip; every failure goes to Redis and updates that memory at once. In one
process (``waqtor serve``) the memory is therefore exact; with several behind a load balancer,
a block counted by another process is seen within ``FRESH_S``.

When Redis cannot be reached the limit lets requests through (keys are still checked): the
API answers 503 for most of them anyway.
"""

from __future__ import annotations

import logging
import math
import time

from starlette.types import Scope

from waqtor.store.auth_failures import FailedAttempts, bucket
from waqtor.store.errors import REDIS_DOWN

log = logging.getLogger("waqtor.api")

FRESH_S = 1.0
_MAX_REMEMBERED = 10_000


class Guard:
    def __init__(self, attempts: FailedAttempts) -> None:
        self.attempts = attempts
        #: bucket -> (remembered until, refused until), monotonic seconds
        self._known: dict[str, tuple[float, float]] = {}

    @property
    def enabled(self) -> bool:
        return self.attempts.limit > 0

    def _remember(self, address: str | None, wait_s: float) -> None:
        if len(self._known) >= _MAX_REMEMBERED:
            self._known.clear()
        now = time.monotonic()
        self._known[bucket(address)] = (now + FRESH_S, now + wait_s)

    async def retry_after(self, address: str | None) -> int:
        """Seconds until ``address`` may try again (0: now)."""
        if not self.enabled:
            return 0
        now = time.monotonic()
        known = self._known.get(bucket(address))
        if known is not None and now < known[0]:
            return math.ceil(known[1] - now) if known[1] > now else 0
        try:
            wait = await self.attempts.blocked_for_s(address)
        except REDIS_DOWN as exc:
            log.warning("failed-attempt limit not checked (Redis unavailable: %s)", exc)
            return 0
        self._remember(address, wait)
        return wait

    async def failed(self, address: str | None) -> int:
        """Count one failure of ``address``; returns the seconds it must now wait (0: none)."""
        if not self.enabled:
            return 0
        try:
            wait = await self.attempts.failed(address)
        except REDIS_DOWN as exc:
            log.warning("failed attempt not counted (Redis unavailable: %s)", exc)
            return 0
        self._remember(address, wait)
        if wait:
            log.warning("client %s refused for %d s after failed attempts", bucket(address), wait)
        return wait


def client_address(scope: Scope) -> str | None:
    """The client's address: the TCP peer, or what a trusted proxy said (``TRUSTED_PROXIES``
    puts uvicorn's proxy-headers middleware in front, which rewrites ``client``)."""
    client = scope.get("client")
    return str(client[0]) if client else None
