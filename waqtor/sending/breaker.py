"""The ban-signal breaker: an account that draws throttling or spam signals rests, and one that
keeps drawing them (or whose failures spike) is paused until an operator resumes it."""

from __future__ import annotations

from collections import deque
from itertools import repeat
from typing import Protocol

from waqtor.domain.accounts import Account
from waqtor.domain.eta import clock_text
from waqtor.runtime.parts import HasAccounts, HasClock, HasPacer, HasSettings


class Trips(HasSettings, HasClock, HasPacer, HasAccounts, Protocol):
    """What the breaker reads and writes."""


#: Provider codes that mean "slow down or be banned" (WhatsApp Cloud API; the simulator
#: raises the same codes).
BAN_SIGNALS = frozenset(
    {
        "131056",
        "131048",
        "368",
        # WhatsApp Web gateways: the reach-out timelock for cold contacts, temporary bans and
        # WhatsApp's own rate-overlimit (``providers.gateway``).
        "463",
        "temporary_ban",
        "rate_overlimit",
    }
)
#: Codes that only say the provider's throughput was exceeded (the Cloud API's 130429, an
#: HTTP 429): the send path slows down (``waqtor.sending.flow``) and sends the recipient again after
#: the pause, without using one of its attempts. Never a ban signal, however many arrive.
THROTTLE_SIGNALS = frozenset({"130429", "http_429", "sim_429"})
MAX_COOL_MS = 3_600_000


class Breaker:
    def __init__(self, services: Trips) -> None:
        self.s = services
        self._outcomes: dict[str, deque[bool]] = {}

    async def record(self, account: str, failed: bool, code: str | None = None) -> str | None:
        """Note one outcome; returns why the account was paused, if this paused it."""
        st = self.s.settings
        window = self._outcomes.setdefault(account, deque(maxlen=st.breaker_window))
        window.append(failed)
        if code in BAN_SIGNALS:
            strikes = await self.s.pacer.strike(
                account, self.s.clock.now_ms(), st.breaker_cooldown_ms, MAX_COOL_MS
            )
            cool = await self.s.accounts.cooling_until(account)
            await self.s.accounts.log_breaker(
                account,
                self.s.clock.now_ms(),
                "ban signal",
                f"{code}: strike {strikes}, resting until {clock_text(cool)}",
            )
            if strikes >= st.breaker_strikes:
                return await self.pause(
                    account, f"breaker: {strikes} ban signals ({code}) within an hour"
                )
            return None
        if len(window) == window.maxlen:
            ratio = sum(window) / len(window)
            if ratio > st.breaker_failure_ratio:
                window.clear()
                return await self.pause(
                    account,
                    f"breaker: {ratio:.0%} of the last {st.breaker_window} sends failed",
                )
        return None

    def record_ok(self, account: str, n: int) -> None:
        """Note ``n`` successes: they only lower the failure share, so nothing to check."""
        if n:
            window = self._outcomes.setdefault(
                account, deque(maxlen=self.s.settings.breaker_window)
            )
            window.extend(repeat(False, n))

    async def pause(self, name: str, reason: str) -> str:
        store = self.s.accounts
        account = await store.get(name, fresh=True) or store.default()
        if not account.paused:
            await store.put(account.model_copy(update={"paused": True, "pausedReason": reason}))
            await store.log_breaker(name, self.s.clock.now_ms(), "paused", reason)
        return reason

    async def resume(self, account: Account, reduced_for_ms: int) -> Account:
        """Manual resume, at a reduced rate for a while."""
        now = self.s.clock.now_ms()
        await self.s.pacer.forgive(account.name)
        self._outcomes.pop(account.name, None)
        detail = "at half caps and double delay for a while" if reduced_for_ms else "by an operator"
        await self.s.accounts.log_breaker(account.name, now, "resumed", detail)
        return await self.s.accounts.put(
            account.model_copy(
                update={
                    "paused": False,
                    "pausedReason": None,
                    "reducedUntilMs": now + reduced_for_ms if reduced_for_ms else None,
                }
            )
        )
