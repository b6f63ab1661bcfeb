"""WhatsApp Cloud API webhooks in: delivery statuses and opt-out replies.

Meta POSTs ``{"object": "whatsapp_business_account", "entry": [{"changes": [{"field":
"messages", "value": {...}}]}]}``, signed with the app secret in ``X-Hub-Signature-256``.
``value.statuses`` (sent, delivered, read, failed) go to the recipient ledger
(``store.delivery``); ``value.messages`` that say STOP (or another opt-out keyword) put the
sender on the suppression list of the account whose phone-number id received it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any

from waqtor import hygiene
from waqtor.breaker import BAN_SIGNALS, Breaker
from waqtor.domain.phones import PhoneError, mask, normalise
from waqtor.domain.status import RecipientStatus
from waqtor.services import Services
from waqtor.store import delivery
from waqtor.store.delivery import StatusEvent

log = logging.getLogger("waqtor.webhooks")

SIGNATURE_HEADER = "X-Hub-Signature-256"
_MARKS = re.compile("[\u064b-\u065f\u0670\u0640]")  # Arabic harakat, dagger alef, tatweel
_ALEF = str.maketrans(  # alef with hamza/madda/wasla -> bare alef; final ya and ta marbuta
    {
        "\u0623": "\u0627",
        "\u0625": "\u0627",
        "\u0622": "\u0627",
        "\u0671": "\u0627",
        "\u0649": "\u064a",
        "\u0629": "\u0647",
    }
)
_EDGES = " \t\r\n.!?,;:()[]\"'؟،؛…-_*~"


def signature_ok(app_secret: str, body: bytes, header: str | None) -> bool:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>``, compared in
    constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().lower().encode())


def keyword_form(text: str) -> str:
    """``  Stop! `` -> ``stop``; ``إلغاء`` and ``الغاء`` -> one form (alef and hamza spellings,
    harakat and tatweel ignored)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = _MARKS.sub("", folded).translate(_ALEF)
    return " ".join(folded.strip(_EDGES).split())


def opt_out_keywords(raw: str) -> frozenset[str]:
    return frozenset(keyword_form(k) for k in raw.split(",") if keyword_form(k))


@dataclass(frozen=True)
class Inbound:
    phone_number_id: str
    sender: str  # wa_id: digits
    text: str


def _ms(timestamp: Any, default: int) -> int:
    try:
        return int(float(timestamp) * 1000)
    except (TypeError, ValueError):
        return default


def _text_of(message: dict[str, Any]) -> str:
    kind = message.get("type")
    if kind == "text":
        return str((message.get("text") or {}).get("body") or "")
    if kind == "button":
        button = message.get("button") or {}
        return str(button.get("text") or button.get("payload") or "")
    if kind == "interactive":
        inter = message.get("interactive") or {}
        reply = inter.get("button_reply") or inter.get("list_reply") or {}
        return str(reply.get("title") or reply.get("id") or "")
    return ""


def parse(payload: Any, now_ms: int) -> tuple[list[StatusEvent], list[Inbound]]:
    """The statuses and inbound messages in a webhook body (anything else is skipped)."""
    statuses: list[StatusEvent] = []
    inbound: list[Inbound] = []
    if not isinstance(payload, dict):
        return statuses, inbound
    for entry in payload.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        for change in entry.get("changes") or []:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                continue
            number_id = str((value.get("metadata") or {}).get("phone_number_id") or "")
            for st in value.get("statuses") or []:
                if not isinstance(st, dict) or not st.get("id") or not st.get("status"):
                    continue
                code, reason = "", ""
                errors = st.get("errors")
                if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                    err = errors[0]
                    code = str(err.get("code", ""))
                    details = (err.get("error_data") or {}).get("details")
                    parts = (err.get("title") or err.get("message"), details)
                    reason = "; ".join(str(p) for p in parts if p)
                statuses.append(
                    StatusEvent(
                        message_id=str(st["id"]),
                        status=str(st["status"]),
                        at_ms=_ms(st.get("timestamp"), now_ms),
                        opaque=st.get("biz_opaque_callback_data"),
                        recipient=str(st.get("recipient_id") or "") or None,
                        error_code=code,
                        error=reason,
                    )
                )
            for msg in value.get("messages") or []:
                if isinstance(msg, dict) and msg.get("from"):
                    inbound.append(Inbound(number_id, str(msg["from"]), _text_of(msg)))
    return statuses, inbound


async def handle(s: Services, payload: Any) -> dict[str, Any]:
    """Apply a verified webhook body. Returns what happened, by outcome."""
    now = s.clock.now_ms()
    statuses, inbound = parse(payload, now)
    outcomes: Counter[str] = Counter()
    breaker: Breaker | None = None
    for event in statuses:
        applied = await delivery.apply(s, event, now)
        outcomes[applied.outcome] += 1
        if (
            applied.outcome == "applied"
            and applied.status is RecipientStatus.FAILED
            and event.error_code in BAN_SIGNALS
            and applied.account
        ):
            # A spam or policy block reported later, by webhook, is a ban signal all the same.
            breaker = breaker or Breaker(s)
            await breaker.record(applied.account, True, event.error_code)
    opted_out = await _opt_outs(s, inbound) if inbound else 0
    await s.redis.hincrby(s.keys.webhook_stats, "received", 1)
    return {"statuses": dict(outcomes), "optOuts": opted_out}


async def _opt_outs(s: Services, inbound: list[Inbound]) -> int:
    keywords = opt_out_keywords(s.settings.opt_out_keywords)
    wanted = [m for m in inbound if keyword_form(m.text) in keywords]
    if not wanted:
        return 0
    by_number = {a.phoneNumberId: a.name for a in await s.accounts.all() if a.phoneNumberId}
    added = 0
    for msg in wanted:
        account = by_number.get(msg.phone_number_id)
        if account is None:
            log.warning("opt-out to unknown phone-number id %s ignored", msg.phone_number_id)
            continue
        try:
            phone = normalise(msg.sender if msg.sender.startswith("+") else "+" + msg.sender)
        except PhoneError:
            continue
        added += await hygiene.add(s, account, [phone])
        log.info("%s opted out of account %s", mask(phone), account)
    return added


async def stats(s: Services) -> dict[str, int]:
    raw = await s.redis.hgetall(s.keys.webhook_stats)
    return {str(k): int(v) for k, v in raw.items()}
