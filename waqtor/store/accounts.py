"""Sender accounts in Redis, read through a short per-process cache (the send path reads the
account before every message).

A process that uses many accounts (500 paced accounts send one message a second each) refreshes
the ones it uses together: one HGETALL when the first of them goes stale, re-validating only
those whose stored JSON changed, instead of one HGET a message. Either way no account read is older
than ``CACHE_S``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import date

from redis.asyncio import Redis

from waqtor.domain.accounts import Account
from waqtor.store.keys import Keys

DEFAULT = "default"
#: Breaker events kept per account.
BREAKER_LOG = 50
CACHE_S = 1.0
#: With at least this many accounts in the cache, a stale one refreshes all of them at once...
BULK_MIN = 16
#: ...unless the hash holds more than this many (then one HGET each, as with few accounts).
BULK_MAX = 5000
#: Accounts read back from Redis were checked when they were written; one stored under older,
#: looser rules still loads (so it can be fixed), and the provider refuses to use it.
STORED = {"stored": True}


class AccountStore:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        default_tier: str | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.default_tier = default_tier
        #: The day a new account's warm-up starts: the injected clock's (``domain.clock.day_of``).
        self.today = today
        self._cache: dict[str, tuple[float, Account | None]] = {}
        #: The stored JSON each cached account was validated from (bulk refreshes reuse it).
        self._raw: dict[str, str] = {}
        self._stored = 0  # accounts in the hash at the last bulk refresh
        self._refreshing: asyncio.Future[None] | None = None

    def default(self) -> Account:
        """The account that exists with no setup: no caps unless DEFAULT_ACCOUNT_TIER says so."""
        return Account(name=DEFAULT, tier=self.default_tier, warmup=False)  # type: ignore[arg-type]

    async def get(self, name: str, *, fresh: bool = False) -> Account | None:
        hit = self._cache.get(name)
        if hit and not fresh and time.monotonic() - hit[0] < CACHE_S:
            return hit[1]
        if not fresh and len(self._cache) >= BULK_MIN and self._stored <= BULK_MAX:
            await self._refresh_all()
            hit = self._cache.get(name)
            if hit and time.monotonic() - hit[0] < CACHE_S:
                return hit[1]
        raw = await self.redis.hget(self.keys.accounts, name)
        return self._keep(name, None if raw is None else str(raw), time.monotonic())

    def _keep(self, name: str, raw: str | None, at: float) -> Account | None:
        hit = self._cache.get(name)
        if raw is not None and hit is not None and self._raw.get(name) == raw:
            account = hit[1]  # unchanged: no second validation
        else:
            account = Account.model_validate_json(raw, context=STORED) if raw else None
        if account is None and name == DEFAULT:
            account = self.default()
        self._cache[name] = (at, account)
        if raw is None:
            self._raw.pop(name, None)
        else:
            self._raw[name] = raw
        return account

    async def _refresh_all(self) -> None:
        """Every account at once; concurrent callers share the one read."""
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._read_all())
        refreshing = self._refreshing
        try:
            await asyncio.shield(refreshing)
        finally:
            if refreshing.done() and self._refreshing is refreshing:
                self._refreshing = None

    async def _read_all(self) -> None:
        """Refresh the accounts this process uses (those in the cache), from one HGETALL."""
        at = time.monotonic()
        stored: dict[str, str] = await self.redis.hgetall(self.keys.accounts)  # type: ignore[assignment]
        self._stored = len(stored)
        for name in list(self._cache):
            self._keep(name, stored.get(name), at)

    async def all(self) -> list[Account]:
        raw = await self.redis.hgetall(self.keys.accounts)
        accounts = {name: Account.model_validate_json(v, context=STORED) for name, v in raw.items()}
        accounts.setdefault(DEFAULT, self.default())
        return [accounts[n] for n in sorted(accounts)]

    async def put(self, account: Account) -> Account:
        if account.startDate is None:
            account = account.model_copy(update={"startDate": self.today()})
        await self.redis.hset(self.keys.accounts, account.name, account.model_dump_json())
        self._cache.pop(account.name, None)
        self._raw.pop(account.name, None)
        return account

    async def delete(self, name: str) -> bool:
        self._cache.pop(name, None)
        self._raw.pop(name, None)
        return bool(await self.redis.hdel(self.keys.accounts, name))

    async def exists(self, name: str) -> bool:
        return name == DEFAULT or bool(await self.redis.hexists(self.keys.accounts, name))

    async def cooling_until(self, name: str) -> int:
        raw = await self.redis.get(self.keys.cool_until_ms(name))
        return int(raw) if raw else 0

    async def sends_in_window(self, name: str, now_ms: int) -> tuple[int, int]:
        """Sends in the last hour and the last 24 h."""
        key = self.keys.sent_window(name)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(key, now_ms - 3_600_000, "+inf")
            pipe.zcount(key, now_ms - 86_400_000, "+inf")
            hour, day = await pipe.execute()
        return int(hour), int(day)

    async def log_breaker(self, name: str, at_ms: int, event: str, detail: str) -> None:
        """Note a breaker event (ban signal, pause, resume) in the account's history."""
        entry = json.dumps({"at": at_ms, "event": event, "detail": detail[:500]})
        key = self.keys.breaker_log(name)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(key, entry)
            pipe.ltrim(key, 0, BREAKER_LOG - 1)
            await pipe.execute()

    async def breaker_history(self, name: str) -> list[dict[str, object]]:
        raw = await self.redis.lrange(self.keys.breaker_log(name), 0, BREAKER_LOG - 1)
        out: list[dict[str, object]] = []
        for item in raw:
            try:
                found = json.loads(item)
            except ValueError:
                continue
            if isinstance(found, dict):
                out.append(found)
        return out
