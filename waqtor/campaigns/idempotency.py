"""``Idempotency-Key`` for send-bulk: the same key within 24 h returns the same response,
and the request behind it runs once, however many copies arrive at the same time.

Stored responses belong to the API key that made them: the Redis key is derived from the
caller's API key and the idempotency key together, so another caller reusing the same
idempotency key starts afresh and never sees the first caller's response. A key reused by the
same caller for a *different* request (another digest of the parsed request: canonical JSON
with sorted keys, or the raw bytes of a CSV) is refused with :class:`Mismatch` (a 422, as
Stripe does), never answered with the other request's response.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from waqtor.store.idempotency import IdempotencyStore

TTL_MS = 24 * 3600 * 1000
#: How long a copy waits for the first request by default (``IDEMPOTENCY_WAIT_MS``).
WAIT_S = 120.0
_PENDING = "pending:"


class InProgress(Exception):
    """Another request with the same key has not finished within the wait."""


class Mismatch(Exception):
    """The key was used before for a different request."""


def json_digest(value: Any) -> str:
    """SHA-256 of ``value`` as canonical JSON: keys sorted, no spaces, UTF-8."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _key(caller: str, idem_key: str) -> str:
    # An HMAC under the caller's API key: one caller's idempotency keys cannot name another's
    # stored responses, and Redis never holds the API key itself.
    return hmac.new(caller.encode(), idem_key.encode(), hashlib.sha256).hexdigest()


async def once(
    store: IdempotencyStore,
    caller: str,
    idem_key: str,
    digest: str,
    run: Callable[[], Awaitable[tuple[int, dict[str, Any]]]],
    wait_s: float = WAIT_S,
) -> tuple[int, dict[str, Any], bool]:
    """Run ``run`` once per (caller, key); returns (status, body, replayed). Raises Mismatch
    when the key was used for a request with another ``digest``, InProgress when a copy still
    runs after ``wait_s``."""
    key = _key(caller, idem_key)
    token = f"{_PENDING}{secrets.token_hex(8)}:{digest}"
    if await store.claim(key, token, TTL_MS):
        try:
            status, body = await run()
        except BaseException:
            # Nothing was acknowledged: let the client try again with the same key.
            await store.release(key, token)
            raise
        if status >= 500:
            await store.forget(key)
        else:
            await store.answer(key, json.dumps([status, body, digest]))
        return status, body, False
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        found = await store.get(key)
        if found is None:  # the first request failed; this one goes ahead itself
            return await once(store, caller, idem_key, digest, run, wait_s)
        raw = str(found)
        if raw.startswith(_PENDING):
            if raw.split(":", 2)[2] != digest:
                raise Mismatch()
        else:
            stored = json.loads(raw)
            if len(stored) < 3 or stored[2] != digest:
                raise Mismatch()
            return int(stored[0]), stored[1], True
        if asyncio.get_running_loop().time() > deadline:
            raise InProgress()
        await asyncio.sleep(0.05)
