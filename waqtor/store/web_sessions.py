"""WhatsApp Web sessions in Redis: who holds each account's one live connection (a lease the
holder renews), the session's state for the dashboard, the number-check cache, and the relay
that carries a send from any process to the holder.

The relay is a list per account. A requester pushes a request and waits for its answer; the
holder pops requests one at a time (atomic), sends, and pushes the answer. A requester that gives
up removes its request with ``LREM``: 1 means the holder never took it (nothing was sent, the
recipient may be tried again), 0 means the holder has it (the outcome is unknown). So a send is
never done twice, whoever dies when.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from waqtor.store.keys import Keys

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
#: How long a reply waits for its requester, and an unanswered request list lives.
REPLY_TTL_MS = 60_000

#: Session states every page and log uses. ``logged_out`` and ``banned`` wait for an operator.
PAIRING = "pairing"
CONNECTING = "connecting"
CONNECTED = "connected"
LOGGED_OUT = "logged_out"
BANNED = "banned"
REPLACED = "replaced"
STOPPED = "stopped"
UNPAIRED = "unpaired"


@dataclass(frozen=True)
class WebState:
    state: str = UNPAIRED
    detail: str = ""
    qr: str = ""
    pair_code: str = ""
    until_ms: int = 0  # a temporary ban's end
    holder: str = ""
    updated_ms: int = 0
    me: str = ""  # the linked number, once connected

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "detail": self.detail,
            "qr": self.qr,
            "pairCode": self.pair_code,
            "untilMs": self.until_ms,
            "holder": self.holder,
            "updatedMs": self.updated_ms,
            "me": self.me,
        }


class WebSessions:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    # --- the lease: one live connection per account, across processes and hosts ---
    async def acquire(self, account: str, holder: str, ttl_ms: int) -> bool:
        return bool(await self.redis.set(self.keys.web_lease(account), holder, nx=True, px=ttl_ms))

    async def renew(self, account: str, holder: str, ttl_ms: int) -> bool:
        return bool(await self._renew(keys=[self.keys.web_lease(account)], args=[holder, ttl_ms]))

    async def release(self, account: str, holder: str) -> bool:
        return bool(await self._release(keys=[self.keys.web_lease(account)], args=[holder]))

    async def holder(self, account: str) -> str | None:
        raw = await self.redis.get(self.keys.web_lease(account))
        return raw.decode() if isinstance(raw, bytes) else raw

    # --- state, for the dashboard and health ---
    async def set_state(self, account: str, state: WebState) -> None:
        mapping = {
            "state": state.state,
            "detail": state.detail,
            "qr": state.qr,
            "pair_code": state.pair_code,
            "until_ms": state.until_ms,
            "holder": state.holder,
            "updated_ms": state.updated_ms,
            "me": state.me,
        }
        await self.redis.hset(self.keys.web_state(account), mapping=mapping)  # type: ignore[arg-type]

    async def state(self, account: str) -> WebState:
        raw = await self.redis.hgetall(self.keys.web_state(account))
        if not raw:
            return WebState()
        got = {_text(k): _text(v) for k, v in raw.items()}
        return WebState(
            state=got.get("state", UNPAIRED),
            detail=got.get("detail", ""),
            qr=got.get("qr", ""),
            pair_code=got.get("pair_code", ""),
            until_ms=int(got.get("until_ms") or 0),
            holder=got.get("holder", ""),
            updated_ms=int(got.get("updated_ms") or 0),
            me=got.get("me", ""),
        )

    async def forget(self, account: str) -> None:
        """An account removed: its state, cache and pending pair request go."""
        await self.redis.delete(
            self.keys.web_state(account),
            self.keys.web_numbers(account),
            self.keys.web_pair_request(account),
        )

    # --- pairing requests from the dashboard, carried out by the holder ---
    async def request_pairing(self, account: str, how: str, ttl_ms: int = 300_000) -> None:
        await self.redis.set(self.keys.web_pair_request(account), how, px=ttl_ms)

    async def pairing_requested(self, account: str) -> bool:
        return bool(await self.redis.exists(self.keys.web_pair_request(account)))

    async def take_pairing(self, account: str) -> str | None:
        raw = await self.redis.getdel(self.keys.web_pair_request(account))
        return raw.decode() if isinstance(raw, bytes) else raw

    # --- number check cache ---
    async def cached_numbers(
        self, account: str, phones: list[str], since_ms: int
    ) -> dict[str, bool]:
        if not phones:
            return {}
        raw = await self.redis.hmget(self.keys.web_numbers(account), phones)
        out: dict[str, bool] = {}
        for phone, value in zip(phones, raw, strict=True):
            if value is None:
                continue
            flag, _, at = _text(value).partition(":")
            if int(at or 0) >= since_ms:
                out[phone] = flag == "1"
        return out

    async def cache_numbers(self, account: str, found: dict[str, bool], now_ms: int) -> None:
        if found:
            mapping = {p: f"{int(ok)}:{now_ms}" for p, ok in found.items()}
            await self.redis.hset(self.keys.web_numbers(account), mapping=mapping)  # type: ignore[arg-type]

    # --- the relay to the holder ---
    async def push_request(self, account: str, request: dict[str, Any]) -> str:
        raw = json.dumps(request, separators=(",", ":"))
        key = self.keys.web_requests(account)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(key, raw)
            pipe.pexpire(key, REPLY_TTL_MS)
            await pipe.execute()
        return raw

    async def withdraw_request(self, account: str, raw: str) -> bool:
        """True: the holder never took it (so it will never be sent)."""
        return bool(await self.redis.lrem(self.keys.web_requests(account), 1, raw))

    async def take_request(self, account: str, timeout_s: float) -> dict[str, Any] | None:
        got = await self.redis.brpop([self.keys.web_requests(account)], timeout=timeout_s)
        if not got:
            return None
        value: dict[str, Any] = json.loads(got[1])
        return value

    async def reply(self, request_id: str, answer: dict[str, Any]) -> None:
        key = self.keys.web_reply(request_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(key, json.dumps(answer, separators=(",", ":")))
            pipe.pexpire(key, REPLY_TTL_MS)
            await pipe.execute()

    async def wait_reply(self, request_id: str, timeout_s: float) -> dict[str, Any] | None:
        key = self.keys.web_reply(request_id)
        got = await self.redis.blpop([key], timeout=timeout_s)
        if not got:
            return None
        await self.redis.delete(key)
        value: dict[str, Any] = json.loads(got[1])
        return value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
