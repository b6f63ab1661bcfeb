"""Sender accounts in Redis, read through a short per-process cache (the send path reads the
account before every message)."""

from __future__ import annotations

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

    def default(self) -> Account:
        """The account that exists with no setup: no caps unless DEFAULT_ACCOUNT_TIER says so."""
        return Account(name=DEFAULT, tier=self.default_tier, warmup=False)  # type: ignore[arg-type]

    async def get(self, name: str, *, fresh: bool = False) -> Account | None:
        hit = self._cache.get(name)
        if hit and not fresh and time.monotonic() - hit[0] < CACHE_S:
            return hit[1]
        raw = await self.redis.hget(self.keys.accounts, name)
        account = Account.model_validate_json(raw, context=STORED) if raw else None
        if account is None and name == DEFAULT:
            account = self.default()
        self._cache[name] = (time.monotonic(), account)
        return account

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
        return account

    async def delete(self, name: str) -> bool:
        self._cache.pop(name, None)
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
