"""Webhooks in from WhatsApp Web gateways: acks, replies (opt-outs), session changes.

**WAHA** POSTs ``{"event", "session", "payload", ...}`` signed with its HMAC key:
``X-Webhook-Hmac: hex(HMAC-SHA512(key, raw body))`` (``X-Webhook-Hmac-Algorithm: sha512``).
- ``message.ack``: ``payload {"id", "from", "to", "fromMe", "ack", "ackName"}``; ack -1 ERROR,
  1 SERVER, 2 DEVICE, 3 READ, 4 PLAYED -> failed, sent, delivered, read, read;
- ``message``: an inbound message ``{"from": "<digits>@c.us", "fromMe": false, "body"}``;
- ``session.status``: ``{"name", "status"}``.

**Evolution API** POSTs ``{"event", "instance", "data", "apikey", ...}``; the ``apikey`` in the
body must be the key configured for the gateway.
- ``messages.update``: ``data {"keyId", "remoteJid", "fromMe", "status": SERVER_ACK |
  DELIVERY_ACK | READ | PLAYED | ERROR, "messageStubParameters"?}`` (``["463"]`` on a
  reach-out timelock: a ban signal);
- ``messages.upsert``: ``data {"key": {"remoteJid", "fromMe", "id"}, "message":
  {"conversation" | "extendedTextMessage": {"text"}}}``;
- ``connection.update``: ``data {"instance", "state": open | connecting | close,
  "statusReason"}`` (401: logged out).

Statuses go through the Cloud API's idempotent, order-tolerant rules (``sending.delivery``):
a status never moves back, a repeat changes nothing, failed only follows sent. An ack whose
message id was never recorded (the worker died, or timed out, after the request left) settles
the account's latest attempt to that number, noted before its request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from waqtor.campaigns import hygiene, webhooks
from waqtor.campaigns.webhooks import keyword_form, opt_out_keywords
from waqtor.domain.accounts import Account
from waqtor.domain.phones import PhoneError, mask, normalise
from waqtor.domain.status import RecipientStatus
from waqtor.providers import evolution, waha
from waqtor.providers.base import SessionState
from waqtor.providers.cloud_api import opaque_data
from waqtor.providers.gateway import describe
from waqtor.runtime.parts import (
    HasAccounts,
    HasGateways,
)
from waqtor.sending import delivery, human
from waqtor.sending.breaker import BAN_SIGNALS, Breaker
from waqtor.sending.delivery import StatusEvent


class GatewayWebhooks(webhooks.CloudWebhooks, HasGateways, Protocol):
    """What handling a gateway's webhook reads and writes."""


log = logging.getLogger("waqtor.campaigns.gateway_webhooks")

HMAC_HEADER = "X-Webhook-Hmac"
HMAC_ALGORITHM_HEADER = "X-Webhook-Hmac-Algorithm"
WAHA_ACKS = {-1: "failed", 1: "sent", 2: "delivered", 3: "read", 4: "read"}
EVOLUTION_STATUSES = {
    "SERVER_ACK": "sent",
    "DELIVERY_ACK": "delivered",
    "READ": "read",
    "PLAYED": "read",
    "ERROR": "failed",
}
_MAX_ID = 512


class Malformed(Exception):
    """Not a webhook of this gateway at all (a 400)."""


def waha_signature_ok(key: str, body: bytes, signature: str | None, algorithm: str | None) -> bool:
    """WAHA's ``X-Webhook-Hmac``: hex HMAC-SHA512 of the raw body, compared in constant time."""
    if not signature or (algorithm and algorithm.strip().lower() != "sha512"):
        return False
    expected = hmac.new(key.encode(), body, hashlib.sha512).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())


def evolution_key_ok(key: str, payload: Any) -> bool:
    """Evolution's ``apikey`` field of the body, compared in constant time."""
    given = payload.get("apikey") if isinstance(payload, dict) else None
    if not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(given.encode(), key.encode())


def phone_of(jid: Any) -> str | None:
    """``9665...@c.us`` / ``@s.whatsapp.net`` -> ``+9665...``; groups, lists, LIDs: None."""
    if not isinstance(jid, str) or len(jid) > 128:
        return None
    user, _, server = jid.partition("@")
    user = user.split(":")[0]
    if server not in ("c.us", "s.whatsapp.net") or not user.isdigit():
        return None
    try:
        return normalise("+" + user)
    except PhoneError:
        return None


@dataclass
class Events:
    statuses: list[tuple[StatusEvent, str]] = field(default_factory=list)  # (event, phone)
    inbound: list[tuple[str, str]] = field(default_factory=list)  # (phone, text)
    session: str | None = None  # the gateway's state word
    logged_out: bool = False
    ignored: int = 0


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("_serialized")
    return value if isinstance(value, str) and 0 < len(value) <= _MAX_ID else None


def parse_waha(payload: Any, now_ms: int) -> tuple[str, Events]:
    """``(session name, events)`` of one WAHA webhook."""
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        raise Malformed("body: a WAHA webhook is a JSON object with an event")
    session = payload.get("session")
    if not isinstance(session, str) or not session:
        raise Malformed("session: missing")
    body = payload.get("payload")
    body = body if isinstance(body, dict) else {}
    out = Events()
    event = payload["event"]
    if event == "message.ack":
        ack = body.get("ack")
        status = WAHA_ACKS.get(ack) if isinstance(ack, int) else None
        mid, phone = _id(body.get("id")), phone_of(body.get("to"))
        if status and mid and phone and body.get("fromMe") is True:
            code = "ack_error" if status == "failed" else ""
            out.statuses.append(
                (StatusEvent(mid, status, now_ms, error_code=code, error=code), phone)
            )
        else:
            out.ignored += 1
    elif event == "message":
        phone = phone_of(body.get("from"))
        text = body.get("body")
        if phone and body.get("fromMe") is not True:
            out.inbound.append((phone, text if isinstance(text, str) else ""))
        else:
            out.ignored += 1
    elif event == "session.status":
        status = body.get("status")
        if isinstance(status, str) and status:
            out.session = status[:32]
    else:
        out.ignored += 1
    return session, out


def _text(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    found = message.get("conversation")
    if not isinstance(found, str):
        extended = message.get("extendedTextMessage")
        found = extended.get("text") if isinstance(extended, dict) else None
    return found if isinstance(found, str) and len(found) <= 4096 else ""


def parse_evolution(payload: Any, now_ms: int) -> tuple[str, Events]:
    """``(instance name, events)`` of one Evolution API webhook."""
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        raise Malformed("body: an Evolution webhook is a JSON object with an event")
    instance = payload.get("instance")
    if not isinstance(instance, str) or not instance:
        raise Malformed("instance: missing")
    event = payload["event"].lower().replace("_", ".")
    data = payload.get("data")
    items = data if isinstance(data, list) else [data]
    out = Events()
    for item in items:
        if not isinstance(item, dict):
            out.ignored += 1
            continue
        if event == "messages.update":
            status = EVOLUTION_STATUSES.get(str(item.get("status")))
            mid, phone = _id(item.get("keyId")), phone_of(item.get("remoteJid"))
            if not (status and mid and phone and item.get("fromMe") is True):
                out.ignored += 1
                continue
            code = ""
            if status == "failed":
                params = item.get("messageStubParameters")
                first = params[0] if isinstance(params, list) and params else None
                code = str(first)[:32] if isinstance(first, (str, int)) else "error"
            out.statuses.append((StatusEvent(mid, status, now_ms, error_code=code), phone))
        elif event == "messages.upsert":
            key = item.get("key")
            key = key if isinstance(key, dict) else {}
            phone = phone_of(key.get("remoteJid"))
            if phone and key.get("fromMe") is not True:
                out.inbound.append((phone, _text(item.get("message"))))
            else:
                out.ignored += 1
        elif event == "connection.update":
            state = item.get("state")
            if isinstance(state, str) and state:
                out.session = state[:32]
                out.logged_out = item.get("statusReason") in (401, "401")
        else:
            out.ignored += 1
    return instance, out


async def accounts_of(s: HasAccounts, provider: str, gateway: str, session: str) -> list[Account]:
    return [
        a
        for a in await s.accounts.all()
        # Gateway names are case-blind, as their GATEWAY_<NAME>_* variables are.
        if a.provider == provider
        and (a.gateway or "").lower() == gateway.lower()
        and a.session == session
    ]


async def handle(
    s: GatewayWebhooks, provider: str, gateway: str, session: str, events: Events
) -> dict[str, Any]:
    """Apply one verified gateway webhook to every account on that gateway session."""
    accounts = await accounts_of(s, provider, gateway, session)
    result: dict[str, Any] = {"accounts": [a.name for a in accounts], "ignored": events.ignored}
    if not accounts:
        log.warning("%s webhook for %s/%s: no account uses it", provider, gateway, session)
        return result
    now = s.clock.now_ms()
    breaker = Breaker(s)
    outcomes: Counter[str] = Counter()
    for event, phone in events.statuses:
        applied = await delivery.apply(s, event, now)
        if applied.outcome == "unmatched":
            for account in accounts:
                last = await s.gateways.last_send(account.name, phone)
                if last is not None:
                    settled = StatusEvent(
                        event.message_id,
                        event.status,
                        event.at_ms,
                        opaque=opaque_data(*last),
                        recipient=phone,
                        error_code=event.error_code,
                        error=event.error,
                    )
                    applied = await delivery.apply(s, settled, now)
                    break
        outcomes[applied.outcome] += 1
        if (
            applied.outcome == "applied"
            and applied.status is RecipientStatus.FAILED
            and event.error_code in BAN_SIGNALS
            and applied.account
        ):
            await breaker.record(applied.account, True, event.error_code)
    result["statuses"] = dict(outcomes)
    result["optOuts"], result["replies"] = await _inbound(s, accounts, events.inbound)
    if events.session is not None:
        result["session"] = await _session(s, breaker, provider, gateway, session, accounts, events)
    return result


async def _inbound(
    s: GatewayWebhooks, accounts: list[Account], inbound: list[tuple[str, str]]
) -> tuple[int, int]:
    keywords = opt_out_keywords(s.settings.opt_out_keywords)
    opted = replies = 0
    for phone, text in inbound:
        for account in accounts:
            last = await s.gateways.last_send(account.name, phone)
            if last is not None and await s.gateways.count_reply(account.name, last[0], phone):
                replies += 1
            if keyword_form(text) in keywords:
                opted += await hygiene.add(s, account.name, [phone])
                log.info("%s opted out of account %s", mask(phone), account.name)
    return opted, replies


async def _session(
    s: GatewayWebhooks,
    breaker: Breaker,
    provider: str,
    gateway: str,
    session: str,
    accounts: list[Account],
    events: Events,
) -> str:
    state = events.session or ""
    if provider == waha.NAME:
        working, operator = state == waha.WORKING, waha.OPERATOR_STATES
    else:
        working, operator = state == evolution.OPEN, evolution.OPERATOR_STATES
        if events.logged_out:
            state = "LOGGED_OUT"
    needs = state in operator
    detail = (
        f"WhatsApp session {session!r} on gateway {gateway} is {state}"
        if working
        else describe(gateway, session, state, needs)
    )
    seen = SessionState(state, working, detail, needs_operator=needs)
    for account in accounts:
        # Only a drop mid-campaign pauses the account; an idle one just records the state.
        busy = await s.pacer.backlog(account.name) > 0
        await human.observe(s, breaker, account.name, seen, pause=busy)
    return state
