"""What WhatsApp Web gateway accounts keep in Redis: the session as last seen, which numbers
are on WhatsApp, the account's contacts and new contacts per 24 h, the latest campaign and
attempt per number (72 h), and replies per campaign."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from waqtor.store.keys import Keys
from waqtor.store.scripts import Scripts

DAY_MS = 86_400_000
#: A reply is counted for the latest campaign that messaged the number within this long.
LAST_SEND_TTL_MS = 72 * 3_600_000


@dataclass(frozen=True)
class SessionSeen:
    state: str
    working: bool
    detail: str
    at_ms: int
    since_ms: int


@dataclass(frozen=True)
class ContactGate:
    """``kind``: known (messaged before), new (counted now) or capped (until ``reopens_ms``)."""

    kind: str
    reopens_ms: int = 0


class GatewayStore:
    def __init__(self, redis: Redis, keys: Keys, scripts: Scripts) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = scripts

    # ---- session ----
    async def record_session(
        self, account: str, state: str, working: bool, detail: str, now_ms: int
    ) -> tuple[str, bool | None]:
        """Store the state; returns the previous ``(state, working)`` (``('', None)``: none)."""
        prev_state, prev_working = await self.scripts["gw_session"](
            keys=[self.keys.gw_session(account)],
            args=[state, "1" if working else "0", detail[:500], now_ms],
        )
        working_before = None if prev_working in ("", b"") else str(prev_working) == "1"
        return str(prev_state), working_before

    async def session(self, account: str) -> SessionSeen | None:
        raw = await self.redis.hgetall(self.keys.gw_session(account))
        if not raw:
            return None
        return SessionSeen(
            state=str(raw.get("state", "")),
            working=raw.get("working") == "1",
            detail=str(raw.get("detail", "")),
            at_ms=int(raw.get("at_ms") or 0),
            since_ms=int(raw.get("since_ms") or 0),
        )

    # ---- number check cache ----
    async def known_numbers(self, phones: Sequence[str]) -> dict[str, bool]:
        """The cached answers among ``phones`` (a number not cached is left out)."""
        if not phones:
            return {}
        found = await self.redis.mget([self.keys.number_check(p) for p in phones])
        return {p: v == "1" for p, v in zip(phones, found, strict=True) if v is not None}

    async def remember_numbers(self, answers: dict[str, bool], ttl_s: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for phone, exists in answers.items():
                pipe.set(self.keys.number_check(phone), "1" if exists else "0", ex=ttl_s)
            await pipe.execute()

    # ---- contacts ----
    async def contact_gate(
        self, account: str, phone: str, now_ms: int, cap: int | None
    ) -> ContactGate:
        kind, reopens = await self.scripts["gw_contact"](
            keys=[self.keys.gw_contacted(account), self.keys.gw_new_contacts(account)],
            args=[phone, now_ms, -1 if cap is None else cap, DAY_MS],
        )
        return ContactGate(str(kind), int(reopens))

    async def new_contacts_today(self, account: str, now_ms: int) -> int:
        return int(
            await self.redis.zcount(self.keys.gw_new_contacts(account), now_ms - DAY_MS, "+inf")
        )

    # ---- the latest message per number ----
    async def note_send(self, account: str, phone: str, cid: str, attempt_id: str) -> None:
        """Before the request: which campaign and attempt the next message to ``phone`` is."""
        await self.redis.set(
            self.keys.gw_last_send(account, phone), f"{cid}:{attempt_id}", px=LAST_SEND_TTL_MS
        )

    async def last_send(self, account: str, phone: str) -> tuple[str, str] | None:
        raw = await self.redis.get(self.keys.gw_last_send(account, phone))
        if not raw:
            return None
        cid, _, attempt = str(raw).partition(":")
        return (cid, attempt) if cid and attempt else None

    # ---- replies ----
    async def count_reply(self, account: str, cid: str, phone: str) -> bool:
        """Counts ``phone``'s reply for the campaign (and the account) once; True the first
        time for the campaign."""
        key = self.keys.replies(cid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, phone)
            pipe.pexpire(key, 31 * DAY_MS)
            pipe.sadd(self.keys.gw_repliers(account), phone)
            added, _, _ = await pipe.execute()
        return bool(added)

    async def reply_rate(self, account: str) -> tuple[int, int]:
        """``(numbers that replied, numbers messaged)`` of a gateway account."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.scard(self.keys.gw_repliers(account))
            pipe.scard(self.keys.gw_contacted(account))
            repliers, contacts = await pipe.execute()
        return int(repliers), int(contacts)

    async def replies(self, cid: str) -> int:
        return int(await self.redis.scard(self.keys.replies(cid)))
