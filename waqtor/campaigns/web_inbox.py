"""What a WhatsApp Web session's news does, as for the gateway providers' webhooks: receipts
settle the ledger (delivered, read, with status callbacks), also for a send whose outcome was
never recorded (by the account's latest attempt to that number, noted before the request);
replies are counted for the campaign that last messaged the number; opt-out replies suppress
their sender for that account; a logout, ban or replaced session pauses the account through
the breaker with the reason for the alert."""

from __future__ import annotations

import logging
from typing import Protocol

from waqtor.campaigns import gateway_webhooks, hygiene
from waqtor.campaigns.webhooks import keyword_form, opt_out_keywords
from waqtor.domain.phones import PhoneError, mask, normalise
from waqtor.providers.cloud_api import opaque_data
from waqtor.providers.web.adapter import Inbound, Receipt
from waqtor.providers.web.session import Hooks
from waqtor.runtime.parts import (
    HasWeb,
)
from waqtor.sending import delivery
from waqtor.sending.breaker import Breaker
from waqtor.sending.delivery import StatusEvent
from waqtor.store import web_sessions
from waqtor.store.web_sessions import WebState


class Inbox(gateway_webhooks.GatewayWebhooks, HasWeb, Protocol):
    """What the built-in WhatsApp Web inbox reads and writes."""


log = logging.getLogger("waqtor.campaigns.web_inbox")


def _e164(digits: str) -> str | None:
    try:
        return normalise("+" + digits.lstrip("+"))
    except PhoneError:
        return None


def install(s: Inbox) -> None:
    """Give ``s.web`` its hooks and let it hold sessions (a worker process)."""
    breaker = Breaker(s)
    keywords = opt_out_keywords(s.settings.opt_out_keywords)

    async def receipt(account: str, event: Receipt) -> None:
        now = s.clock.now_ms()
        phone = _e164(event.phone)
        for message_id in event.message_ids:
            status = StatusEvent(message_id, event.kind, now, recipient=phone)
            applied = await delivery.apply(s, status, now)
            if applied.outcome == "unmatched" and phone:
                last = await s.gateways.last_send(account, phone)
                if last is not None:
                    settled = StatusEvent(
                        message_id, event.kind, now, opaque=opaque_data(*last), recipient=phone
                    )
                    applied = await delivery.apply(s, settled, now)
            log.debug("receipt %s %s: %s", event.kind, message_id, applied.outcome)

    async def inbound(account: str, event: Inbound) -> None:
        phone = _e164(event.phone)
        if phone is None:
            return
        last = await s.gateways.last_send(account, phone)
        if last is not None:
            await s.gateways.count_reply(account, last[0], phone)
        if keyword_form(event.text) in keywords:
            await hygiene.add(s, account, [phone])
            log.info("%s opted out of account %s", mask(phone), account)

    async def signal(account: str, reason: str) -> None:
        await breaker.pause(account, reason)
        log.error("ALERT account %s paused: %s", account, reason)

    async def state(account: str, seen: WebState) -> None:
        working = seen.state == web_sessions.CONNECTED
        detail = seen.detail or f"WhatsApp Web session {seen.state}"
        await s.gateways.record_session(account, seen.state, working, detail, s.clock.now_ms())

    s.web.hooks = Hooks(receipt, inbound, signal, state)
    s.web.start()
