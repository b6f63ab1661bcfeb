"""What a WhatsApp Web session's news does: receipts settle the ledger (delivered, read, with
status callbacks), opt-out replies suppress their sender for that account, and a logout, ban or
replaced session pauses the account through the breaker with the reason for the alert."""

from __future__ import annotations

import logging

from waqtor.campaigns import hygiene
from waqtor.campaigns.webhooks import keyword_form, opt_out_keywords
from waqtor.domain.phones import PhoneError, mask, normalise
from waqtor.providers.web.adapter import Inbound, Receipt
from waqtor.providers.web.session import Hooks
from waqtor.runtime.services import Services
from waqtor.sending import delivery
from waqtor.sending.breaker import Breaker
from waqtor.sending.delivery import StatusEvent

log = logging.getLogger("waqtor.campaigns.web_inbox")


def install(s: Services) -> None:
    """Give ``s.web`` its hooks and let it hold sessions (a worker process)."""
    breaker = Breaker(s)
    keywords = opt_out_keywords(s.settings.opt_out_keywords)

    async def receipt(account: str, event: Receipt) -> None:
        now = s.clock.now_ms()
        for message_id in event.message_ids:
            applied = await delivery.apply(s, StatusEvent(message_id, event.kind, now), now)
            log.debug("receipt %s %s: %s", event.kind, message_id, applied.outcome)

    async def inbound(account: str, event: Inbound) -> None:
        if keyword_form(event.text) not in keywords:
            return
        try:
            phone = normalise("+" + event.phone.lstrip("+"))
        except PhoneError:
            return
        await hygiene.add(s, account, [phone])
        log.info("%s opted out of account %s", mask(phone), account)

    async def signal(account: str, reason: str) -> None:
        await breaker.pause(account, reason)

    s.web.hooks = Hooks(receipt, inbound, signal)
    s.web.start()
