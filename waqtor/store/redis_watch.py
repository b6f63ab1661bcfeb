"""A worker's own view of Redis: said at once when it goes away and when it is back.

The worker's clients are patient (they retry for about a minute so a campaign survives a Redis
restart), so they stay silent while they retry. This watch pings on a separate, impatient
connection twice a second and logs the change of state, and the worker's shutdown reads
``up`` to know it must not wait on Redis.

The same connection carries the worker's name as Node's BullMQ spells it
(``Engine.node_client_name``), so Bull Board sees the worker as long as it is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.asyncio import Redis

from waqtor.config import redis_label
from waqtor.store.connection import connect

log = logging.getLogger("waqtor.sending.worker")  # the worker owns the watch

#: How often the watch pings (s); an outage is logged within about this long.
EVERY_S = 0.5
#: A ping that takes longer than this counts as Redis being away (s).
PING_TIMEOUT_S = 1.5


class RedisWatch:
    def __init__(self, url: str, client_name: str) -> None:
        self.url = url
        self.up = True
        self._client: Redis = connect(url, client_name=client_name)
        self._task: asyncio.Task[None] | None = None
        self._down_since = 0.0
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while not self._closed:
            await self.check()
            await asyncio.sleep(EVERY_S)

    async def check(self) -> bool:
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the ping's answer
            # when a cancel lands as the ping completes, and this loop then outlived close().
            async with asyncio.timeout(PING_TIMEOUT_S):
                await self._client.ping()
        except Exception as exc:
            if self.up:
                self.up = False
                self._down_since = time.monotonic()
                log.error(
                    "Redis at %s is unreachable (%s): nothing is sent until it is back",
                    redis_label(self.url),
                    exc or type(exc).__name__,
                )
            return False
        if not self.up:
            self.up = True
            log.warning(
                "Redis at %s is back after %.1f s: carrying on",
                redis_label(self.url),
                time.monotonic() - self._down_since,
            )
        return True

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=PING_TIMEOUT_S + 0.5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._client.aclose(), 0.5)
