"""WAHA (devlikeapro/waha): WhatsApp Web over REST, engines WEBJS, NOWEB and GOWS.

- session: ``GET /api/sessions/{session}`` -> ``{"name", "status": WORKING | SCAN_QR_CODE |
  STARTING | STOPPED | FAILED, ...}``;
- number check: ``GET /api/contacts/check-exists?phone=<digits>&session=`` ->
  ``{"numberExists": bool, "chatId"}``;
- typing: ``POST /api/startTyping`` / ``/api/stopTyping`` ``{"session", "chatId"}``;
- text: ``POST /api/sendText`` ``{"session", "chatId": "<digits>@c.us", "text"}``; media by
  URL: ``/api/sendImage`` / ``/api/sendFile`` ``{"session", "chatId", "file": {"url",
  "mimetype"?, "filename"?}, "caption"}`` (WAHA Plus). The answer is the sent message, whose
  ``id`` (``true_<chat>_<id>``) the ``message.ack`` webhooks name.

Errors: 422 ``{"error": "Session status is not as expected...", "status": "SCAN_QR_CODE"}``
when the session is not working; 404 for an unknown session; 401 for a wrong key; 500
``{"exception": {"message": ...}}`` for everything WhatsApp refused, including "server
returned error 463" (the reach-out timelock), which is a ban signal, not a transient error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from waqtor.config import Settings
from waqtor.domain.accounts import Account
from waqtor.providers.base import (
    OutgoingMessage,
    PermanentError,
    ProviderError,
    SessionState,
)
from waqtor.providers.gateway import GatewayProvider, digits, gateway_of

NAME = "waha"
WORKING = "WORKING"
#: States that do not clear by themselves: an operator must act (and then resume the account).
OPERATOR_STATES = frozenset({"STOPPED", "FAILED", "NOT_FOUND", "UNAUTHORIZED"})


def chat_id(phone: str) -> str:
    return f"{digits(phone)}@c.us"


def message_id(body: Any) -> str | None:
    """The serialized id of a sent message: WEBJS answers ``{"id": {"_serialized": ...}}``,
    NOWEB/GOWS ``{"id": "true_...@c.us_..."}`` or a Baileys ``{"key": {...}}``."""
    if not isinstance(body, dict):
        return None
    found = body.get("id")
    if isinstance(found, dict):
        found = found.get("_serialized")
    if isinstance(found, str) and found:
        return found
    key = body.get("key")
    if isinstance(key, dict) and key.get("id") and key.get("remoteJid"):
        me = "true" if key.get("fromMe", True) else "false"
        return f"{me}_{key['remoteJid']}_{key['id']}"
    return None


class WahaProvider(GatewayProvider):
    name = NAME
    key_header = "X-Api-Key"
    working_state = WORKING
    operator_states = OPERATOR_STATES

    async def read_session(self) -> SessionState:
        status, body = await self.request("GET", f"/api/sessions/{self._quoted()}")
        found = None
        if status == 200 and isinstance(body, dict):
            found = str(body.get("status") or "UNKNOWN")
        me = body.get("me") if isinstance(body, dict) else None
        who = me.get("id") if isinstance(me, dict) else None
        working = f"WhatsApp session {self.session_name!r} on gateway {self.gateway.name} " + (
            f"is WORKING as {who}" if who else "is WORKING"
        )
        return self.session_state(status, found, working)

    def _quoted(self) -> str:
        return quote(self.session_name, safe="")

    async def check_numbers(self, phones: Sequence[str]) -> dict[str, bool]:
        out: dict[str, bool] = {}
        for phone in phones:
            status, body = await self.request(
                "GET",
                "/api/contacts/check-exists",
                params={"phone": digits(phone), "session": self.session_name},
            )
            if status != 200 or not isinstance(body, dict):
                raise self.classify(status, body)
            out[phone] = body.get("numberExists") is True
        return out

    async def send_presence(self, account: str, phone: str, typing_ms: int) -> None:
        chat = {"session": self.session_name, "chatId": chat_id(phone)}
        status, body = await self.request("POST", "/api/startTyping", json=chat)
        if status >= 300:
            raise self.classify(status, body)
        try:
            await asyncio.sleep(typing_ms / 1000.0)
        finally:
            # Best effort: WhatsApp clears "typing..." by itself, and the message follows.
            try:
                await self.request("POST", "/api/stopTyping", json=chat)
            except ProviderError:
                pass

    def payload(self, message: OutgoingMessage) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"session": self.session_name, "chatId": chat_id(message.phone)}
        media = message.media
        if media is not None:
            file: dict[str, Any] = {"url": media["link"]}
            if media.get("filename"):
                file["filename"] = media["filename"]
            if media.get("mimetype"):
                file["mimetype"] = media["mimetype"]
            body["file"] = file
            if media.get("caption"):
                body["caption"] = media["caption"]
            return ("/api/sendImage" if media["type"] == "image" else "/api/sendFile"), body
        body["text"] = message.text
        body["linkPreview"] = False
        return "/api/sendText", body

    def sent_id(self, answer: Any) -> str | None:
        return message_id(answer)

    def own_error(self, status: int, body: Any, text: str) -> ProviderError | None:
        if status == 422 and isinstance(body, dict) and isinstance(body.get("status"), str):
            self.forget_session()
            return self.down(body["status"])
        if status == 404 and "session" in text.lower():
            self.forget_session()
            return self.down("NOT_FOUND")
        if status in (401, 403):
            return self.down("UNAUTHORIZED")
        return None

    def server_error(self, status: int, text: str) -> ProviderError:
        if "logged out" in text.lower() or "not logged" in text.lower():
            self.forget_session()
            return self.down("LOGGED_OUT")
        return super().server_error(status, text)

    def refused(self, status: int, text: str) -> ProviderError:
        if status == 413:
            return PermanentError("too_large", text)
        return super().refused(status, text)


def factory(settings: Settings) -> Callable[[Account], WahaProvider]:
    def build(account: Account) -> WahaProvider:
        return WahaProvider(settings, gateway_of(account), account.session or "default")

    return build
