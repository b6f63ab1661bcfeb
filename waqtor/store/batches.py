"""Claiming and recording recipients in batches: one script call for many recipients.

The per-recipient record is the one ``Ledger.claim_next`` / ``Ledger.finish`` keep (status
byte, detail with its own attempt id, in-flight entry), so recovery, settling, reports and
webhooks see no difference. Only the number of round trips changes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from waqtor.domain.recipients import Recipient
from waqtor.domain.status import RecipientStatus
from waqtor.domain.steps import StepKind
from waqtor.store.ledger import DAY_MS as DAY_MS  # re-exported: sending.delivery reads it
from waqtor.store.ledger import Claim, Claimant, Ledger, answer

log = logging.getLogger("waqtor.store.batches")


# Not frozen: a frozen dataclass's __init__ costs about 3x (one object.__setattr__ a field),
# and one is built per recipient on the send path and at submission.
@dataclass(slots=True)
class Claimed:
    index: int
    attempt: int  # 1 for the first attempt
    attempt_id: str
    recipient: Recipient


@dataclass(slots=True)
class Outcome:
    index: int
    attempt_id: str
    status: RecipientStatus
    message_id: str = ""
    error_code: str = ""
    reason: str = ""
    due_ms: int = 0  # retry due, or when an unknown's send lease ends
    text_hash: str = ""
    deferral: bool = False


#: How long the indexes that lead status webhooks to recipients live (ms).
ATTEMPT_INDEX_TTL_MS = 30 * DAY_MS
MESSAGE_INDEX_TTL_MS = 31 * DAY_MS


def attempt_id(prefix: str, index: int) -> str:
    """Written the same way by claim_batch.lua."""
    return f"{prefix}.{index}"


async def claim(
    ledger: Ledger,
    cid: str,
    who: Claimant,
    *,
    prefix: str,
    now_ms: int,
    size: int,
    lock_job: str | None = None,
) -> list[Claimed] | Claim:
    """Up to ``size`` recipients of the lane, or why none was claimed (a ``Claim`` whose kind
    is ``EMPTY`` when the lane has nothing left to claim right now). ``who.token`` must hold
    the lock of job ``lock_job`` (default: the campaign's own job; a helper job's otherwise)."""
    done = await ledger.guard.run(
        ledger.scripts["claim_batch"],
        ledger.claim_keys(cid, who.lane, who.account, lock_job),
        [
            who.token,
            prefix,
            now_ms,
            who.worker_id,
            who.lease_ms,
            -1 if who.hourly_cap is None else who.hourly_cap,
            -1 if who.daily_cap is None else who.daily_cap,
            who.lane,
            who.lanes,
            size,
            who.attempt_index_ttl_ms,
        ],
    )
    res = done.reply
    kind = StepKind.parse(res[0])
    if kind is StepKind.CLAIMED:
        # Every packed recipient (a JSON array each) decoded by one orjson call, and
        # attempt_id(prefix, index) inlined: this runs once per recipient.
        rows = orjson.loads("[" + ",".join(res[3::3]) + "]")
        out = [
            Claimed(
                index,
                int(tries),
                f"{prefix}.{index}",
                Recipient(row[0], row[1], row[2] if len(row) > 2 else None),
            )
            for index, tries, row in zip(map(int, res[1::3]), res[2::3], rows, strict=True)
        ]
        if not done.ok:
            return await ledger.unclaim(
                cid, who.account, who.lane, [(c.index, c.attempt_id) for c in out], now_ms, done
            )
        return out
    return answer(kind, res)


async def finish(
    ledger: Ledger,
    cid: str,
    account: str,
    outcomes: Sequence[Outcome],
    **kw: Any,
) -> list[bool]:
    """``finish_counted`` without the count."""
    return (await finish_counted(ledger, cid, account, outcomes, **kw))[0]


async def finish_counted(
    ledger: Ledger,
    cid: str,
    account: str,
    outcomes: Sequence[Outcome],
    *,
    prefix: str,
    now_ms: int,
    sent_at_ms: int = 0,
    lane: int = 0,
    callback_url: str | None = None,
    callback_ids: Sequence[str] = (),
    phones: Mapping[int, str] | None = None,
    index_ttl_ms: int = 0,
) -> tuple[list[bool], int]:
    """Record every outcome of the batch claimed with ``prefix`` (``""``: each outcome's own
    ``attempt_id``); one flag per outcome, false when it was stale. With ``callback_url``, each
    recorded change queues its status callback in the same script, under ``callback_ids`` (one
    per outcome; ``phones`` gives each recipient's number, else it is read from the ledger).
    ``index_ttl_ms`` > 0 (providers that settle by webhook): each sent message id is indexed
    for status webhooks, and definite outcomes leave the attempt index, in the same script.
    Also returns how many of the campaign's recipients are still open (pending, retry,
    sending; -1 with no outcomes): its progress, without another round trip."""
    if not outcomes:
        return [], -1
    k = ledger.keys
    rows = [
        [
            o.index,
            o.status.code,
            o.message_id,
            o.error_code,
            o.reason,
            o.due_ms,
            o.text_hash,
            1 if o.deferral else 0,
            "" if prefix else o.attempt_id,
        ]
        for o in outcomes
    ]
    if callback_url:
        for row, o, cb_id in zip(rows, outcomes, callback_ids, strict=True):
            row += [cb_id, (phones or {}).get(o.index, "")]
    args: list[bytes | str | int] = [
        now_ms,
        sent_at_ms,
        prefix,
        orjson.dumps(rows),
        callback_url or "",
        cid,
        account,
        index_ttl_ms,
    ]
    done = await ledger.guard.run(
        ledger.scripts["finish_batch"],
        k.finish_keys(cid, lane, account, now_ms // DAY_MS),
        args,
    )
    if not done.ok:
        # Recorded on the primary only. No duplicate can come of it (a lost outcome leaves the
        # recipient sending, which recovery settles with the provider), and the next claim
        # waits for the replicas again before anything more is sent.
        log.warning(
            "campaign %s: %d outcome(s) recorded but acknowledged by %d of %d replica(s)",
            cid,
            len(outcomes),
            done.acks,
            done.wanted,
        )
    res = done.reply
    return [bool(int(flag)) for flag in res[:-1]], int(res[-1])
