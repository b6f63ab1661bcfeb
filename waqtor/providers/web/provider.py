"""The ``web`` provider: sends from an ordinary WhatsApp number linked to waqtor itself, through
the process holding the account's session (``hub``). Text only. The send path treats it like
the gateway providers (``Capabilities.web_session``): the session is checked before each
message, numbers are checked once, new contacts are capped, and "typing..." is shown by the
holder, inside the gap, right before the text (``typing_in_send``)."""

from __future__ import annotations

from collections.abc import Sequence

from waqtor.config import Settings
from waqtor.domain.accounts import Account
from waqtor.providers.base import (
    AmbiguousError,
    BanSignalError,
    Capabilities,
    Health,
    OutgoingMessage,
    PermanentError,
    Provider,
    RateLimitedError,
    SendResult,
    SessionDownError,
    SessionState,
    TransientError,
)
from waqtor.providers.registry import Factory
from waqtor.providers.web.hub import NAME as NAME
from waqtor.providers.web.hub import OPERATOR_STATES, WebHub
from waqtor.store import web_sessions as ws

#: WhatsApp's rate-overlimit (429) asks for a pause; this long unless it says otherwise.
RATE_LIMIT_PAUSE_S = 60.0


class WebProvider(Provider):
    name = NAME

    def __init__(self, account: str, hub: WebHub, settings: Settings) -> None:
        self.account = account
        self.hub = hub
        self.timeout_s = max(1.0, settings.provider_timeout_ms / 1000 * 0.8)
        self.capabilities = Capabilities(
            min_gap_ms=settings.web_min_gap_ms,
            number_check=True,
            typing_in_send=True,
            web_session=True,
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
            "typing": message.typing_ms,
            "attempt": message.attempt_id,
        }
        timeout = self.timeout_s + message.typing_ms / 1000
        answer = await self.hub.request(message.account, request, timeout)
        if "id" in answer:
            return SendResult(str(answer["id"]))
        raise await self._error(answer)

    async def check_numbers(self, phones: Sequence[str]) -> dict[str, bool]:
        answer = await self.hub.request(
            self.account, {"kind": "check", "phones": list(phones)}, self.timeout_s
        )
        if "numbers" in answer:
            return {str(k): bool(v) for k, v in answer["numbers"].items()}
        raise await self._error(answer)

    async def session(self, *, fresh: bool = False) -> SessionState:
        """The session as its holder last wrote it; working only while a process holds it."""
        state = await self.hub.store.state(self.account)
        holder = await self.hub.store.holder(self.account)
        working = state.state == ws.CONNECTED and bool(holder)
        needs = state.state in OPERATOR_STATES or state.state == ws.UNPAIRED
        if working:
            detail = f"WhatsApp Web session of {self.account} is connected"
        elif state.state == ws.UNPAIRED:
            detail = f"WhatsApp Web account {self.account} is not paired: link it by QR code"
        elif state.state == ws.STOPPED:
            detail = state.detail or f"WhatsApp Web account {self.account} is stopped"
        elif not holder and state.state not in OPERATOR_STATES:
            detail = f"no running worker holds WhatsApp Web account {self.account}"
        else:
            detail = state.detail or f"WhatsApp Web session of {self.account} is {state.state}"
        return SessionState(state.state, working, detail, needs_operator=needs)

    async def health(self) -> Health:
        seen = await self.session()
        return Health(seen.working, seen.detail)

    async def close(self) -> None:
        return None

    async def _error(self, answer: dict[str, object]) -> Exception:
        code = str(answer.get("error") or "web_error")
        reason = str(answer.get("reason") or code)
        kind = answer.get("kind")
        if kind == "permanent":
            return PermanentError(code, reason)
        if kind == "ban_signal":
            return BanSignalError(code, reason)
        if kind == "rate_limited":
            return RateLimitedError(code, reason, RATE_LIMIT_PAUSE_S)
        if kind == "unavailable":
            seen = await self.session()
            return SessionDownError(
                code, reason, state=seen.state, needs_operator=seen.needs_operator
            )
        if kind in ("ambiguous", "expired"):
            return AmbiguousError(code, reason)
        return TransientError(code, reason)


def factory(settings: Settings, hub: WebHub) -> Factory:
    def build(account: Account) -> Provider:
        return WebProvider(account.name, hub, settings)

    return build
