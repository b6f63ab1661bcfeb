"""Delivery statuses from the WhatsApp Cloud API, applied to the recipient ledger.

A status webhook names a provider message id and carries back our
``biz_opaque_callback_data`` (``wq1:<campaign>:<attempt>``). Two indexes lead from those to
the recipient:

- **attempt id -> index**, per campaign, written by the claim script itself, so *before* the
  provider call: any webhook about that attempt finds it, even if the worker died before it
  recorded anything. Dropped once the outcome is definite, so only in-flight and unknown sends
  stay in it (30-day TTL as a backstop).
- **message id -> campaign:index**, one hash per day of sending (31-day TTL), written by the
  script that records the outcome, in the same step: there is no moment at which a recorded
  message id is not indexed.

About 100 bytes per sent message, for a month; nothing per recipient that was never sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from waqtor.domain.status import RecipientStatus
from waqtor.providers.cloud_api import parse_opaque
from waqtor.runtime.parts import HasAccounts, HasJobIndex, HasWebhookIndex
from waqtor.sending import callbacks
from waqtor.store.batches import DAY_MS, MESSAGE_INDEX_TTL_MS


class Applies(HasAccounts, HasJobIndex, HasWebhookIndex, Protocol):
    """What applying a provider's status event reads and writes."""


LOOKBACK_DAYS = 31

#: Cloud API status -> ledger status.
STATUSES: dict[str, RecipientStatus] = {
    "sent": RecipientStatus.SENT,
    "delivered": RecipientStatus.DELIVERED,
    "read": RecipientStatus.READ,
    "failed": RecipientStatus.FAILED,
}


@dataclass(frozen=True)
class StatusEvent:
    message_id: str
    status: str  # sent | delivered | read | failed (others are ignored)
    at_ms: int
    opaque: str | None = None
    recipient: str | None = None
    error_code: str = ""
    error: str = ""


@dataclass(frozen=True)
class Applied:
    """``outcome``: applied, duplicate, stale, other, missing, unmatched or ignored."""

    outcome: str
    campaign_id: str | None = None
    index: int = -1
    account: str | None = None
    previous: RecipientStatus | None = None
    status: RecipientStatus | None = None


# ---------------- finding the recipient ----------------
async def locate(
    s: HasWebhookIndex, event: StatusEvent, now_ms: int
) -> tuple[str, int, str] | None:
    """``(campaign id, index, attempt id or '')`` of the event's recipient, or None."""
    today = now_ms // DAY_MS
    theirs = parse_opaque(event.opaque)
    days = range(today, today - LOOKBACK_DAYS - 1, -1)
    by_day, by_attempt = await s.webhook_index.lookup(event.message_id, days, theirs)
    attempt = theirs[1] if theirs is not None else ""
    for loc in by_day:
        if loc:
            cid, _, idx = str(loc).rpartition(":")
            return cid, int(idx), attempt
    if theirs is not None and by_attempt is not None:
        return theirs[0], int(by_attempt), attempt
    return None


def account_of(meta: list[str | None], index: int) -> str:
    """The account that sends recipient ``index``: ``accounts[index % k]`` when the campaign
    is spread over several, else its one account."""
    account, spread = meta[0], meta[1]
    if spread:
        names = json.loads(spread)
        if isinstance(names, list) and names:
            return str(names[index % len(names)])
    return account or "default"


# ---------------- applying a status ----------------
async def apply(s: Applies, event: StatusEvent, now_ms: int) -> Applied:
    new = STATUSES.get(event.status)
    if new is None:
        return Applied("ignored")
    loc = await locate(s, event, now_ms)
    if loc is None:
        await s.webhook_index.count("unmatched")
        return Applied("unmatched")
    cid, idx, attempt = loc
    account = account_of(await s.webhook_index.accounts_of(cid), idx)
    url = await callbacks.url_for(s, cid, account) or ""
    outcome, prev, _ = await s.webhook_index.apply(
        cid,
        account,
        message_day=now_ms // DAY_MS,
        args=[
            idx,
            event.message_id,
            new.code,
            event.at_ms,
            now_ms,
            attempt,
            event.error_code,
            event.error[:500],
            url,
            callbacks.new_id(now_ms),
            account,
            cid,
            MESSAGE_INDEX_TTL_MS,
        ],
    )
    return Applied(
        outcome,
        cid,
        idx,
        account,
        RecipientStatus.from_code(prev) if prev else None,
        new,
    )
