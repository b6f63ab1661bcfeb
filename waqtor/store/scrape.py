"""What ``/metrics`` reads from Redis at scrape time, besides the queue figures
(``queue_stats``): per account (its recipients by status too), the callback outbox, webhook
counters and worker heartbeats, all in one pipelined round trip."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from waqtor.domain.status import RecipientStatus
from waqtor.store.keys import Keys

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_PER = 6  # replies per account in the pipeline


@dataclass(frozen=True)
class AccountFigures:
    cooling_until_ms: int
    backlog: int
    sent_last_hour: int
    sent_last_day: int
    strikes: int
    #: Recipients by status (its name) on the account, over every stored campaign.
    messages: dict[str, int]


@dataclass(frozen=True)
class ScrapeFigures:
    accounts: dict[str, AccountFigures]
    callbacks_pending: int
    callbacks_failed: int
    callbacks_recently_delivered: int
    #: Status-webhook counters (received, applied, duplicate, ...).
    webhooks: dict[str, int]
    #: Each worker's last heartbeat time (ms).
    heartbeats_ms: list[int]


def _int(raw: Any) -> int:
    try:
        return int(raw or 0)
    except (TypeError, ValueError):
        return 0


def account_statuses(raw: dict[Any, Any]) -> dict[str, int]:
    """Recipients by status name from an account's ``Keys.account_messages`` hash: a one-code
    field is a net change of that status, a two-code field ``<from><to>`` moved that many from
    one to the other. Statuses at zero are left out; a negative figure (recipients staged
    before these counts existed, then moved) reads as zero."""
    by_code: dict[str, int] = {}
    for name, value in raw.items():
        field = name.decode() if isinstance(name, bytes) else str(name)
        n = _int(value)
        if len(field) == 1:
            by_code[field] = by_code.get(field, 0) + n
        elif len(field) == 2:
            by_code[field[0]] = by_code.get(field[0], 0) - n
            by_code[field[1]] = by_code.get(field[1], 0) + n
    out: dict[str, int] = {}
    for code, n in by_code.items():
        try:
            status = RecipientStatus.from_code(code)
        except KeyError:
            continue
        if n > 0:
            out[status.value] = n
    return out


class ScrapeReader:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def read(self, accounts: list[str], now_ms: int) -> ScrapeFigures:
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in accounts:
                pipe.get(k.cool_until_ms(name))
                pipe.get(k.backlog(name))
                pipe.zcount(k.sent_window(name), now_ms - HOUR_MS, "+inf")
                pipe.zcount(k.sent_window(name), now_ms - DAY_MS, "+inf")
                pipe.get(k.strikes(name))
                pipe.hgetall(k.account_messages(name))
            pipe.zcard(k.callback_due)
            pipe.zcard(k.callback_failed)
            pipe.llen(k.callback_delivered)
            pipe.hgetall(k.webhook_stats)
            pipe.hgetall(k.workers)
            raw = await pipe.execute()
        per = {}
        for i, name in enumerate(accounts):
            cool, backlog, hour, day, strikes, messages = raw[i * _PER : i * _PER + _PER]
            per[name] = AccountFigures(
                cooling_until_ms=_int(cool),
                backlog=_int(backlog),
                sent_last_hour=_int(hour),
                sent_last_day=_int(day),
                strikes=_int(strikes),
                messages=account_statuses(messages),
            )
        due, failed, delivered, hooks, beats = raw[len(accounts) * _PER :]
        heartbeats = []
        for value in beats.values():
            try:
                heartbeats.append(_int(json.loads(value).get("ts")))
            except (ValueError, AttributeError):
                continue
        return ScrapeFigures(
            accounts=per,
            callbacks_pending=_int(due),
            callbacks_failed=_int(failed),
            callbacks_recently_delivered=_int(delivered),
            webhooks={str(name): _int(n) for name, n in hooks.items()},
            heartbeats_ms=heartbeats,
        )
