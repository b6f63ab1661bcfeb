"""WhatsApp Cloud API webhooks in: delivery statuses and opt-out replies.

Meta POSTs ``{"object": "whatsapp_business_account", "entry": [{"changes": [{"field":
"messages", "value": {...}}]}]}``, signed with the app secret in ``X-Hub-Signature-256``.
``value.statuses`` (sent, delivered, read, failed) go to the recipient ledger
(``store.delivery``); ``value.messages`` that say STOP (or another opt-out keyword) put the
sender on the suppression list of the account whose phone-number id received it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from waqtor.campaigns import hygiene
from waqtor.domain.phones import PhoneError, mask, normalise
from waqtor.domain.status import RecipientStatus
from waqtor.runtime.parts import (
    HasAccounts,
    HasClock,
    HasJobIndex,
    HasPacer,
    HasSettings,
    HasSuppressions,
    HasWebhookIndex,
)
from waqtor.sending import delivery
from waqtor.sending.breaker import BAN_SIGNALS, Breaker
from waqtor.sending.delivery import StatusEvent


class CloudWebhooks(
    HasSettings,
    HasClock,
    HasPacer,
    HasAccounts,
    HasSuppressions,
    HasJobIndex,
    HasWebhookIndex,
    Protocol,
):
    """What handling a Cloud API webhook reads and writes."""


log = logging.getLogger("waqtor.campaigns.webhooks")

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


#: Sane bounds for a status's unix time (s): 2001 to 2286. Anything else is "now".
_MIN_TS_S, _MAX_TS_S = 1_000_000_000, 10_000_000_000
#: Statuses of different messages applied at once (the same message's stay in order).
APPLY_CONCURRENCY = 16


class Malformed(Exception):
    """The body is not a webhook delivery at all (a 400): nothing of it is applied."""


def _ms(timestamp: Any, default: int) -> int:
    """Meta's unix seconds (a string or a number) as ms; anything odd (``"1e400"``, NaN, a
    list) is ``default``."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, (str, int, float)):
        return default
    if isinstance(timestamp, str) and len(timestamp) > 32:
        return default
    try:
        seconds = float(timestamp)
    except (TypeError, ValueError, OverflowError):
        return default
    if not _MIN_TS_S <= seconds <= _MAX_TS_S:  # also false for NaN and infinities
        return default
    return int(seconds * 1000)


def _str(value: Any, limit: int) -> str | None:
    """``value`` if it is a short string (or a plain number, which Meta sends for codes)."""
    if isinstance(value, str):
        return value if len(value) <= limit else None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**18:
        return str(value)
    return None


def _text_of(message: dict[str, Any]) -> str:
    kind = message.get("type")
    found: Any = None
    if kind == "text":
        body = message.get("text")
        found = body.get("body") if isinstance(body, dict) else None
    elif kind == "button":
        button = message.get("button")
        if isinstance(button, dict):
            found = button.get("text") or button.get("payload")
    elif kind == "interactive":
        inter = message.get("interactive")
        if isinstance(inter, dict):
            reply = inter.get("button_reply") or inter.get("list_reply")
            if isinstance(reply, dict):
                found = reply.get("title") or reply.get("id")
    return found if isinstance(found, str) and len(found) <= 4096 else ""


def _status(st: Any, now_ms: int) -> StatusEvent | None:
    """One status object, or None when it is malformed (wrong types, missing fields)."""
    if not isinstance(st, dict):
        return None
    message_id, status = _str(st.get("id"), 512), _str(st.get("status"), 32)
    if not message_id or not status:
        return None
    code, reason = "", ""
    errors = st.get("errors")
    if errors is not None:
        if not isinstance(errors, list):
            return None
        if errors and isinstance(errors[0], dict):
            err = errors[0]
            code = _str(err.get("code", ""), 32) or ""
            data = err.get("error_data")
            details = data.get("details") if isinstance(data, dict) else None
            parts = (_str(err.get("title"), 1000) or _str(err.get("message"), 1000), details)
            reason = "; ".join(p for p in parts if isinstance(p, str) and p)[:1000]
    opaque = st.get("biz_opaque_callback_data")
    return StatusEvent(
        message_id=message_id,
        status=status,
        at_ms=_ms(st.get("timestamp"), now_ms),
        opaque=opaque if isinstance(opaque, str) and len(opaque) <= 512 else None,
        recipient=_str(st.get("recipient_id"), 64) or None,
        error_code=code,
        error=reason,
    )


def _list(value: Any) -> list[Any] | None:
    """A list field (absent: empty); None when it holds anything else."""
    if value is None:
        return []
    return value if isinstance(value, list) else None


@dataclass
class Delivery:
    statuses: list[StatusEvent]
    inbound: list[Inbound]
    invalid: int = 0  # malformed items left out


def parse(payload: Any, now_ms: int) -> Delivery:
    """The statuses and inbound messages of a webhook body. Raises Malformed when it is not a
    delivery at all; a malformed item inside one is counted in ``invalid`` and left out, and
    the rest is applied."""
    if not isinstance(payload, dict):
        raise Malformed("body: a webhook delivery is a JSON object")
    entries = _list(payload.get("entry"))
    if entries is None:
        raise Malformed("entry: must be a list")
    out = Delivery([], [])
    for entry in entries:
        changes = _list(entry.get("changes")) if isinstance(entry, dict) else None
        if changes is None:
            out.invalid += 1
            continue
        for change in changes:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                out.invalid += 1
                continue
            metadata = value.get("metadata")
            raw_id = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
            number_id = _str(raw_id, 64) or ""
            statuses, messages = _list(value.get("statuses")), _list(value.get("messages"))
            if statuses is None or messages is None:
                out.invalid += 1
                continue
            for st in statuses:
                event = _status(st, now_ms)
                if event is None:
                    out.invalid += 1
                else:
                    out.statuses.append(event)
            for msg in messages:
                sender = _str(msg.get("from"), 64) if isinstance(msg, dict) else None
                if not sender:
                    out.invalid += 1
                    continue
                out.inbound.append(Inbound(number_id, sender, _text_of(msg)))
    return out


async def handle(s: CloudWebhooks, payload: Any) -> dict[str, Any]:
    """Apply a verified webhook body. Returns what happened, by outcome. Raises Malformed."""
    now = s.clock.now_ms()
    delivery_ = parse(payload, now)
    outcomes: Counter[str] = Counter()
    breaker = Breaker(s)
    # One message's statuses in their order; different messages side by side, a few at once,
    # so a large delivery takes a bounded time.
    by_message: dict[str, list[StatusEvent]] = {}
    for event in delivery_.statuses:
        by_message.setdefault(event.message_id, []).append(event)
    gate = asyncio.Semaphore(APPLY_CONCURRENCY)

    async def apply_all(events: list[StatusEvent]) -> None:
        async with gate:
            for event in events:
                applied = await delivery.apply(s, event, now)
                outcomes[applied.outcome] += 1
                if (
                    applied.outcome == "applied"
                    and applied.status is RecipientStatus.FAILED
                    and event.error_code in BAN_SIGNALS
                    and applied.account
                ):
                    # A spam or policy block reported later, by webhook, is a ban signal.
                    await breaker.record(applied.account, True, event.error_code)

    await asyncio.gather(*(apply_all(events) for events in by_message.values()))
    opted_out, bad_senders = await _opt_outs(s, delivery_.inbound) if delivery_.inbound else (0, 0)
    await s.webhook_index.count("received")
    return {
        "statuses": dict(outcomes),
        "optOuts": opted_out,
        "invalid": delivery_.invalid + bad_senders,
    }


async def _opt_outs(s: CloudWebhooks, inbound: list[Inbound]) -> tuple[int, int]:
    """Opt-out replies put their senders on the suppression list; returns (added, senders that
    are not a phone number). One bad ``from`` never stops the others."""
    keywords = opt_out_keywords(s.settings.opt_out_keywords)
    wanted = [m for m in inbound if keyword_form(m.text) in keywords]
    if not wanted:
        return 0, 0
    by_number = {a.phoneNumberId: a.name for a in await s.accounts.all() if a.phoneNumberId}
    added = bad = 0
    for msg in wanted:
        account = by_number.get(msg.phone_number_id)
        if account is None:
            log.warning("opt-out to unknown phone-number id %s ignored", msg.phone_number_id)
            continue
        sender = msg.sender.strip()
        try:
            phone = normalise(sender if sender.startswith("+") else "+" + sender)
        except PhoneError as exc:
            bad += 1
            log.warning("opt-out from a sender that is not a phone number ignored: %s", exc.reason)
            continue
        added += await hygiene.add(s, account, [phone])
        log.info("%s opted out of account %s", mask(phone), account)
    return added, bad


async def stats(s: HasWebhookIndex) -> dict[str, int]:
    return await s.webhook_index.stats()
