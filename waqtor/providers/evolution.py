"""Evolution API (EvolutionAPI/evolution-api): WhatsApp Web through Baileys, over REST.

- session: ``GET /instance/connectionState/{instance}`` -> ``{"instance": {"instanceName",
  "state": "open" | "connecting" | "close"}}``;
- number check: ``POST /chat/whatsappNumbers/{instance}`` ``{"numbers": [...]}`` ->
  ``[{"jid", "exists", "number"}]``;
- text: ``POST /message/sendText/{instance}`` ``{"number": "<digits>", "text", "delay"}``;
  media by URL: ``POST /message/sendMedia/{instance}`` ``{"number", "mediatype", "media":
  <url>, "caption", "fileName"?, "delay"}``. ``delay`` (ms) shows "typing..." for that long
  before the message goes out, so typing is part of the request. The answer is the sent
  message, ``{"key": {"remoteJid", "fromMe", "id"}, "status": "PENDING", ...}``; its
  ``key.id`` is what ``messages.update`` webhooks name (``keyId``).

The key goes in the ``apikey`` header. Errors are ``{"status", "error", "response":
{"message": ...}}``: 400 with ``[{"exists": false, ...}]`` for a number not on WhatsApp, 401
for a wrong key, 404 for an unknown instance, 500 "Connection Closed" when the instance is not
connected. A 463 arrives later, as a ``messages.update`` with status ``ERROR``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from waqtor.config import Settings
from waqtor.domain.accounts import Account
from waqtor.providers.base import OutgoingMessage, PermanentError, ProviderError, SessionState
from waqtor.providers.gateway import GatewayProvider, digits, gateway_of
from waqtor.providers.registry import UnknownProvider

NAME = "evolution"
OPEN = "open"
OPERATOR_STATES = frozenset({"close", "NOT_FOUND", "UNAUTHORIZED", "LOGGED_OUT"})


def message_id(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    key = body.get("key")
    if isinstance(key, dict) and isinstance(key.get("id"), str) and key["id"]:
        return str(key["id"])
    return None


def _not_on_whatsapp(body: Any) -> bool:
    response = body.get("response") if isinstance(body, dict) else None
    found = response.get("message") if isinstance(response, dict) else None
    return isinstance(found, list) and any(
        isinstance(item, dict) and item.get("exists") is False for item in found
    )


class EvolutionProvider(GatewayProvider):
    name = NAME
    key_header = "apikey"
    working_state = OPEN
    operator_states = OPERATOR_STATES

    typing_in_request = True

    def _path(self, prefix: str) -> str:
        return f"{prefix}/{quote(self.session_name, safe='')}"

    async def read_session(self) -> SessionState:
        status, body = await self.request("GET", self._path("/instance/connectionState"))
        instance = body.get("instance") if isinstance(body, dict) else None
        found = None
        if status == 200 and isinstance(instance, dict):
            found = str(instance.get("state") or "unknown")
        working = f"WhatsApp instance {self.session_name!r} on gateway {self.gateway.name} is open"
        return self.session_state(status, found, working)

    async def check_numbers(self, phones: Sequence[str]) -> dict[str, bool]:
        wanted = {digits(p): p for p in phones}
        status, body = await self.request(
            "POST", self._path("/chat/whatsappNumbers"), json={"numbers": list(wanted)}
        )
        if status not in (200, 201) or not isinstance(body, list):
            raise self.classify(status, body)
        out = {p: False for p in phones}
        for item in body:
            if not isinstance(item, dict):
                continue
            number = str(item.get("number") or "").lstrip("+")
            if number in wanted:
                out[wanted[number]] = item.get("exists") is True
        return out

    def payload(self, message: OutgoingMessage) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"number": digits(message.phone)}
        if message.typing_ms > 0:
            body["delay"] = message.typing_ms
        media = message.media
        if media is not None:
            body["mediatype"] = "image" if media["type"] == "image" else "document"
            body["media"] = media["link"]
            body["caption"] = media.get("caption") or ""
            if media.get("filename"):
                body["fileName"] = media["filename"]
            if media.get("mimetype"):
                body["mimetype"] = media["mimetype"]
            return self._path("/message/sendMedia"), body
        body["text"] = message.text
        body["linkPreview"] = False
        return self._path("/message/sendText"), body

    def sent_id(self, answer: Any) -> str | None:
        return message_id(answer)

    def own_error(self, status: int, body: Any, text: str) -> ProviderError | None:
        if status == 400 and _not_on_whatsapp(body):
            return PermanentError("not_on_whatsapp", "the number is not on WhatsApp")
        if status == 404:
            self.forget_session()
            return self.down("NOT_FOUND")
        if status in (401, 403):
            return self.down("UNAUTHORIZED")
        lowered = text.lower()
        if "connection closed" in lowered or "not connected" in lowered:
            self.forget_session()
            return self.down("connecting")
        return None


def factory(settings: Settings) -> Callable[[Account], EvolutionProvider]:
    def build(account: Account) -> EvolutionProvider:
        if not account.session:
            raise UnknownProvider(
                f"account {account.name}: provider evolution needs session (instance)"
            )
        return EvolutionProvider(settings, gateway_of(account), account.session)

    return build
