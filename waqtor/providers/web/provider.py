"""The ``web`` provider: sends from an ordinary WhatsApp number linked to waqtor itself, through
the process holding the account's session (``hub``). Text only; human pacing; a number check
before each new number; "typing..." inside the gap."""

from __future__ import annotations

from collections.abc import Sequence

from waqtor.config import Settings
from waqtor.domain.accounts import Account
from waqtor.providers.base import (
    AmbiguousError,
    Capabilities,
    Health,
    OutgoingMessage,
    PermanentError,
    Provider,
    RateLimitedError,
    SendResult,
    TransientError,
    UnavailableError,
)
from waqtor.providers.registry import Factory
from waqtor.providers.web.hub import NAME as NAME
from waqtor.providers.web.hub import WebHub
from waqtor.store import web_sessions as ws

#: "typing..." per character of text, and its bounds (ms): a person types, then sends.
TYPING_MS_PER_CHAR = 40
TYPING_MIN_MS = 800
TYPING_MAX_MS = 4_000
#: A 463 (reach-out timelock for cold contacts) rests the account this long before a retry.
REST_AFTER_463_S = 3_600.0


def typing_ms(text: str, gap_ms: int) -> int:
    """How long to show "typing..." before ``text``: grows with its length, and stays within
    half the gap, so it is counted inside the account's pacing, never added on top."""
    wanted = min(TYPING_MAX_MS, max(TYPING_MIN_MS, len(text) * TYPING_MS_PER_CHAR))
    return max(0, min(wanted, gap_ms // 2))


class WebProvider(Provider):
    name = NAME

    def __init__(self, account: str, hub: WebHub, settings: Settings) -> None:
        self.account = account
        self.hub = hub
        self.timeout_s = max(1.0, settings.provider_timeout_ms / 1000 * 0.8)
        self.capabilities = Capabilities(
            min_gap_ms=settings.web_min_gap_ms,
            number_check=True,
            presence=True,
            # Receipts find the message by the id recorded with the outcome.
            settles_by_webhook=True,
        )

    async def send(self, message: OutgoingMessage) -> SendResult:
        if message.template is not None or message.media is not None:
            raise PermanentError(
                "web_text_only", "WhatsApp Web accounts send text only (no templates or media)"
            )
        request = {
            "kind": "send",
            "phone": message.phone,
            "text": message.text,
            "typing": typing_ms(message.text, self.capabilities.min_gap_ms),
            "attempt": message.attempt_id,
        }
        answer = await self.hub.request(message.account, request, self.timeout_s)
        if "id" in answer:
            return SendResult(str(answer["id"]))
        raise error_of(answer)

    async def check_numbers(self, phones: Sequence[str]) -> dict[str, bool]:
        answer = await self.hub.request(
            self.account, {"kind": "check", "phones": list(phones)}, self.timeout_s
        )
        if "numbers" in answer:
            return {str(k): bool(v) for k, v in answer["numbers"].items()}
        raise error_of(answer)

    async def send_presence(self, account: str, phone: str, typing_ms: int) -> None:
        # Shown by the holder inside ``send``, on the same connection, right before the text.
        return None

    async def health(self) -> Health:
        state = await self.hub.store.state(self.account)
        holder = await self.hub.store.holder(self.account)
        ok = state.state == ws.CONNECTED and bool(holder)
        detail = f"WhatsApp Web session {state.state}"
        if state.detail:
            detail += f": {state.detail}"
        return Health(ok, detail)

    async def close(self) -> None:
        return None


def error_of(answer: dict[str, object]) -> Exception:
    code = str(answer.get("error") or "web_error")
    reason = str(answer.get("reason") or code)
    kind = answer.get("kind")
    if kind == "permanent":
        return PermanentError(code, reason)
    if kind == "rate_limited":
        return RateLimitedError(code, reason, REST_AFTER_463_S)
    if kind == "unavailable":
        return UnavailableError(code, reason)
    if kind in ("ambiguous", "expired"):
        return AmbiguousError(code, reason)
    return TransientError(code, reason)


def factory(settings: Settings, hub: WebHub) -> Factory:
    def build(account: Account) -> Provider:
        return WebProvider(account.name, hub, settings)

    return build
