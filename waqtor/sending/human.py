"""The send path's extra steps for an ordinary WhatsApp number behind a WhatsApp Web gateway
(``Capabilities.web_session``): session state, number check, the new-contact cap and typing.

- The session is checked before each claim (cached for GATEWAY_SESSION_CHECK_MS). Not working:
  the account waits with the gateway's reason, failing no recipient. A session that *was*
  working and is now stopped, failed or logged out pauses the account through the breaker
  (a ban signal), with an alert; an operator resumes it.
- A number is checked once (cached GATEWAY_NUMBER_CHECK_TTL_S): one not on WhatsApp fails with
  ``not_on_whatsapp`` and is never sent (sending to such numbers is a ban signal itself).
- A number the account never messaged is a new contact, counted against a daily cap per tier.
- "typing..." is shown for a time that grows with the text, inside the pacing gap (the next
  slot is reserved a full gap after this one whatever the typing took).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from waqtor.config import Settings
from waqtor.domain.accounts import Account, new_contact_cap
from waqtor.domain.phones import mask
from waqtor.providers.base import Provider, SessionDownError, SessionState
from waqtor.runtime.parts import HasClock, HasGateways, HasSettings
from waqtor.sending.breaker import Breaker


class Sessions(HasClock, HasGateways, Protocol):
    """What watching a WhatsApp Web session reads and writes."""


class Gates(HasSettings, HasClock, HasGateways, Protocol):
    """What the number check and the new-contact cap read and write."""


log = logging.getLogger("waqtor.sending.human")

#: The share of the gap typing may take at most: the rest stays a pause between messages.
TYPING_SHARE_OF_GAP = 0.5


def typing_ms(settings: Settings, text: str, gap_ms: int) -> int:
    """How long "typing..." shows before ``text``: grows with its length, capped, and never
    more than half the gap (it is counted inside the gap, not added to it)."""
    wanted = settings.gateway_typing_min_ms + settings.gateway_typing_ms_per_char * len(text)
    return max(0, min(wanted, settings.gateway_typing_max_ms, int(gap_ms * TYPING_SHARE_OF_GAP)))


def default_jitter(account: Account, settings: Settings, min_gap_ms: int) -> float:
    """The gap is a random 1x..2x the delay on human-paced accounts unless the account says."""
    if account.jitter is not None:
        return account.jitter
    return 1.0 if min_gap_ms > 0 else settings.message_jitter


async def observe(
    s: Sessions, breaker: Breaker, account: str, state: SessionState, *, pause: bool = True
) -> str | None:
    """Record a session state seen by the send path or a webhook. None: it works; else why the
    account waits. A working session that stopped, failed or logged out pauses the account
    (when ``pause``: mid-campaign)."""
    now = s.clock.now_ms()
    _, was_working = await s.gateways.record_session(
        account, state.state, state.working, state.detail, now
    )
    if state.working:
        return None
    if pause and state.needs_operator and was_working:
        reason = f"breaker: {state.detail}"
        await breaker.pause(account, reason)
        # The alert: the account shows paused (API alerts, health, dashboard) and this line.
        log.error("ALERT account %s paused: %s", account, state.detail)
        return reason
    return state.detail


async def session_wait(
    s: Sessions, breaker: Breaker, provider: Provider, account: str
) -> str | None:
    """None when the account's session works, else the reason it waits."""
    if not provider.capabilities.web_session:
        return None
    return await observe(s, breaker, account, await provider.session())


async def session_down(
    s: Sessions, breaker: Breaker, provider: Provider, account: str, exc: SessionDownError
) -> str:
    """A request found the session down: ask the gateway for its state (an error only hints
    at it: Evolution's "Connection Closed" may be a reconnect or a logout) and act on that."""
    state = await provider.session(fresh=True)
    if state.working:  # back already: the recipient goes again after the recheck
        return exc.reason
    return await observe(s, breaker, account, state) or exc.reason


@dataclass(frozen=True)
class Gate:
    """Why a recipient is not sent now: ``not_on_whatsapp`` (fails) or ``new_contacts`` (the
    account waits until ``reopens_ms``)."""

    code: str
    reason: str
    reopens_ms: int = 0


async def gate(s: Gates, provider: Provider, account: Account, phone: str) -> Gate | None:
    """The number check and the new-contact cap; None: send. Raises ProviderError when the
    gateway could not answer the check (nothing was sent)."""
    cached = await s.gateways.known_numbers([phone])
    if phone in cached:
        exists = cached[phone]
    else:
        answers = await provider.check_numbers([phone])
        await s.gateways.remember_numbers(answers, s.settings.gateway_number_check_ttl_s)
        exists = answers.get(phone, False)
    if not exists:
        log.info("%s is not on WhatsApp: not sent", mask(phone))
        return Gate("not_on_whatsapp", "the number is not on WhatsApp (gateway number check)")
    now = s.clock.now_ms()
    cap = new_contact_cap(account, now)
    found = await s.gateways.contact_gate(account.name, phone, now, cap)
    if found.kind == "capped":
        return Gate(
            "new_contacts",
            f"daily cap of {cap} new contacts reached on account {account.name}",
            found.reopens_ms,
        )
    return None
