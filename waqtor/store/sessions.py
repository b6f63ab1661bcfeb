"""Dashboard sessions on the server side: a signed cookie alone cannot be taken back, so each
login also writes a record here, and a session counts only while its record lives.

Logout deletes the record (a copied cookie, CSRF token and all, stops working at once); "log
out everywhere" moves the key's generation on, which ends every session of that key.
"""

from __future__ import annotations

import secrets

from redis.asyncio import Redis

from waqtor.store.keys import Keys
from waqtor.store.scripts import Scripts


class SessionStore:
    def __init__(self, redis: Redis, keys: Keys, scripts: Scripts) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = scripts

    async def start(self, fingerprint: str, lifetime_s: int) -> str:
        """A new session's id (random, 128 bits)."""
        sid = secrets.token_hex(16)
        await self.scripts["session_start"](
            keys=[self.keys.session(sid), self.keys.session_generation(fingerprint)],
            args=[fingerprint, lifetime_s * 1000],
        )
        return sid

    async def alive(self, sid: str, fingerprint: str) -> bool:
        if not sid or not fingerprint:
            return False
        record, gen = await self.redis.mget(
            [self.keys.session(sid), self.keys.session_generation(fingerprint)]
        )
        return record is not None and str(record) == f"{fingerprint}:{gen or 0!s}"

    async def end(self, sid: str) -> None:
        if sid:
            await self.redis.delete(self.keys.session(sid))

    async def end_all(self, fingerprint: str, sid: str) -> None:
        """Every session of this key, this one included."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(self.keys.session_generation(fingerprint))
            pipe.delete(self.keys.session(sid))
            await pipe.execute()
