"""``Idempotency-Key`` for send-bulk: the same key within 24 h returns the same response,
and the request behind it runs once, however many copies arrive at the same time."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from waqtor.services import Services

TTL_MS = 24 * 3600 * 1000
WAIT_S = 120.0
_PENDING = "pending:"


class InProgress(Exception):
    """Another request with the same key has not finished within the wait."""


def _key(s: Services, idem_key: str) -> str:
    return s.keys.idempotency(hashlib.sha256(idem_key.encode()).hexdigest())


async def once(
    s: Services,
    idem_key: str,
    run: Callable[[], Awaitable[tuple[int, dict[str, Any]]]],
) -> tuple[int, dict[str, Any], bool]:
    """Run ``run`` once per key; returns (status, body, replayed)."""
    key = _key(s, idem_key)
    token = _PENDING + secrets.token_hex(8)
    if await s.redis.set(key, token, nx=True, px=TTL_MS):
        try:
            status, body = await run()
        except BaseException:
            # Nothing was acknowledged: let the client try again with the same key.
            await s.redis.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end",
                1,
                key,
                token,
            )
            raise
        if status >= 500:
            await s.redis.delete(key)
        else:
            await s.redis.set(key, json.dumps([status, body]), xx=True, keepttl=True)
        return status, body, False
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        found = await s.redis.get(key)
        if found is None:  # the first request failed; this one goes ahead itself
            return await once(s, idem_key, run)
        raw = str(found)
        if not raw.startswith(_PENDING):
            status, body = json.loads(raw)
            return int(status), body, True
        if asyncio.get_running_loop().time() > deadline:
            raise InProgress()
        await asyncio.sleep(0.05)
