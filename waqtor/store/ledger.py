"""The per-recipient ledger: what the job engine can't know.

Each transition is one Lua script, so a crash between two Redis calls can never leave a
recipient half-moved. ``sending`` is written before the provider call and the outcome right
after: a worker killed in between leaves an ``unknown`` recipient, never a duplicate.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from waqtor.domain.recipients import Recipient
from waqtor.domain.status import RecipientStatus
from waqtor.domain.steps import StepKind
from waqtor.store.keys import Keys
from waqtor.store.replicas import Acked, ReplicaGuard
from waqtor.store.scripts import Scripts

log = logging.getLogger("waqtor.store.ledger")

DAY_MS = 86_400_000
#: A claim the replicas did not acknowledge is put back; its lane tries again this much later.
UNACKED_RETRY_MS = 2_000
UNACKED = "replica_ack"

_PUSH_BATCH = 5000
#: ``prestage``: recipients per command, and how long an unclaimed list lives (ms).
_PRESTAGE_BATCH = 1000
_PRESTAGE_TTL_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Claim:
    """What ``claim_next`` answered: ``kind`` is ``CLAIMED`` or why nothing was claimed."""

    kind: StepKind
    index: int = -1
    attempt: int = 0
    recipient: Recipient | None = None
    due_ms: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Claimant:
    """Who claims recipients of a campaign's lane, and within which limits: what every claim
    of that lane carries (``Ledger.claim_next``, ``batches.claim``). ``token`` holds the job's
    lock; a claimed recipient is leased to ``worker_id`` for ``lease_ms``; ``hourly_cap`` and
    ``daily_cap`` are the account's (None: none); ``attempt_index_ttl_ms`` > 0 also indexes
    each attempt for status webhooks."""

    token: str
    worker_id: str
    lease_ms: int
    account: str
    hourly_cap: int | None = None
    daily_cap: int | None = None
    lane: int = 0
    lanes: int = 1
    attempt_index_ttl_ms: int = 0


@dataclass(frozen=True, slots=True)
class LostSend:
    index: int
    attempt_id: str
    lease_end_ms: int


def pack(recipient: Recipient) -> bytes:
    """``["<E.164>",{vars}(,"own message")]``: compact JSON, as UTF-8."""
    if recipient.message is None:
        return orjson.dumps((recipient.phone, recipient.variables))
    return orjson.dumps((recipient.phone, recipient.variables, recipient.message))


def unpack(raw: str | bytes) -> Recipient:
    row = orjson.loads(raw)
    return Recipient(row[0], row[1], row[2] if len(row) > 2 else None)


def accounts_of(meta: dict[str, str]) -> list[str]:
    """The campaign's sender accounts, one per lane."""
    if "accounts" in meta:
        found: list[str] = json.loads(meta["accounts"])
        return found
    return [meta.get("account", "default")]


def _counts_from_meta(meta: dict[str, str]) -> dict[str, int]:
    out = {status.value: 0 for status in RecipientStatus}
    for status in RecipientStatus:
        out[status.value] = int(meta.get("n:" + status.code, 0) or 0)
    return out


#: Claim answers that carry a time (ms): when to come back.
_TIMED = frozenset({StepKind.WAIT, StepKind.SETTLE, StepKind.EARLY, StepKind.COOLING})


def answer(kind: StepKind, res: list[Any]) -> Claim:
    """A claim script's answer other than ``claimed``, with its time and reason."""
    if kind in _TIMED:
        return Claim(kind, due_ms=int(float(res[1])))
    if kind is StepKind.CAPPED:
        return Claim(kind, due_ms=int(float(res[1])), reason=str(res[2]))
    return Claim(kind)


class Ledger:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        scripts: Scripts,
        bull_key: Callable[[str], str],
        guard: ReplicaGuard | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = scripts
        #: Names bullmq's keys (``Engine.key``): the claim scripts check a job's lock token.
        self.bull_key = bull_key
        #: WAITs for replicas after claims and outcomes (``store.replicas``); none by default.
        self.guard = guard or ReplicaGuard(redis, 0, 0)

    def claim_keys(
        self, cid: str, lane: int, account: str, lock_job: str | None = None
    ) -> list[str]:
        """KEYS of claim.lua and claim_batch.lua; ``lock_job``: the job whose lock the claimer
        must hold (default the campaign's own)."""
        return self.keys.claim_keys(
            cid, lane, account, self.bull_key(f"{lock_job or cid}:lock"), self.bull_key("meta")
        )

    # ---- writing a new campaign ----
    async def prestage(self, cid: str, recipients: Sequence[Recipient]) -> None:
        """Write a large campaign's recipient list ahead of ``stage``, a batch per command.

        One MULTI of 100,000 recipients costs about half a second of packing on the event loop
        in one piece; batch by batch, each step is a few ms. Until ``stage(prestaged=True)``
        persists it in the campaign's MULTI the list expires, and nothing reads it (the
        campaign id is new and no meta or job names it), so a crash in between leaves nothing
        behind for long."""
        key = self.keys.recipients(cid)
        for start in range(0, len(recipients), _PRESTAGE_BATCH):
            batch = recipients[start : start + _PRESTAGE_BATCH]
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.rpush(key, *[pack(r) for r in batch])
                pipe.pexpire(key, _PRESTAGE_TTL_MS)
                await pipe.execute()

    # ---- inside the caller's MULTI ----
    def stage(
        self,
        pipe: Pipeline,
        cid: str,
        *,
        accounts: list[str],
        template: str,
        recipients: Sequence[Recipient],
        mode: str,
        created_ms: int,
        extra: dict[str, str] | None = None,
        prestaged: bool = False,
        lease_ms: int | None = None,
    ) -> None:
        """Recipient ``i`` is sent by ``accounts[i % len(accounts)]`` (its lane).
        ``prestaged``: ``prestage`` wrote the recipient list already; it is kept now.
        ``lease_ms``: an instant send's lease (``Keys.instant_lease``), taken for that long."""
        k = self.keys
        n = len(recipients)
        lanes = len(accounts)
        fields: dict[Any, Any] = {
            "id": cid,
            "account": accounts[0],
            "accounts": json.dumps(list(accounts)),
            "template": template,
            "total": n,
            "cursor": 0,
            "mode": mode,
            "created_ms": created_ms,
            "n:P": n,
        }
        fields.update(extra or {})
        pipe.hset(k.meta(cid), mapping=fields)
        if prestaged:
            pipe.persist(k.recipients(cid))
        else:
            for start in range(0, n, _PUSH_BATCH):
                batch = recipients[start : start + _PUSH_BATCH]
                pipe.rpush(k.recipients(cid), *[pack(r) for r in batch])
        pipe.set(k.status(cid), RecipientStatus.PENDING.code * n)
        pipe.hincrby(k.message_counts, RecipientStatus.PENDING.code, n)
        for lane, account in enumerate(accounts):
            pipe.incrby(k.backlog(account), len(range(lane, n, lanes)))
            pipe.hincrby(
                k.account_messages(account),
                RecipientStatus.PENDING.code,
                len(range(lane, n, lanes)),
            )
        pipe.zadd(k.campaigns, {cid: created_ms})
        if mode == "queue":
            pipe.zadd(k.jobs, {cid: created_ms})
        if lease_ms is not None:
            pipe.set(k.instant_lease(cid), "1", px=lease_ms)

    # ---- transitions ----
    async def claim_next(
        self,
        cid: str,
        who: Claimant,
        *,
        attempt_id: str,
        now_ms: int,
        min_gap_ms: int,
        reserve_gap_ms: int = -1,
    ) -> Claim:
        """The lane's next recipient at least ``min_gap_ms`` after the account's last claim.
        ``reserve_gap_ms`` >= 0: reserve the account's next slot in the same script, as
        ``Pacer.reserve`` would with that gap; ``EARLY`` if another sender holds it (the
        slot after it is reserved for the caller)."""
        done = await self.guard.run(
            self.scripts["claim"],
            self.claim_keys(cid, who.lane, who.account),
            [
                who.token,
                attempt_id,
                now_ms,
                who.worker_id,
                who.lease_ms,
                min_gap_ms,
                -1 if who.hourly_cap is None else who.hourly_cap,
                -1 if who.daily_cap is None else who.daily_cap,
                who.lane,
                who.lanes,
                who.attempt_index_ttl_ms,
                reserve_gap_ms,
            ],
        )
        res = done.reply
        kind = StepKind.parse(res[0])
        if kind is StepKind.CLAIMED:
            if not done.ok:
                return await self.unclaim(
                    cid, who.account, who.lane, [(int(res[1]), attempt_id)], now_ms, done
                )
            return Claim(kind, int(res[1]), int(res[2]), unpack(str(res[3])))
        return answer(kind, res)

    async def unclaim(
        self,
        cid: str,
        account: str,
        lane: int,
        attempts: list[tuple[int, str]],
        now_ms: int,
        acked: Acked,
    ) -> Claim:
        """Claims the replicas did not acknowledge: nothing is sent. Each goes back to be
        claimed again (a retry that costs no attempt), and the lane waits a little. If even this
        write is lost with the primary, the new one shows either ``pending`` (the claim never
        reached it) or ``sending``, which recovery settles with the provider: never a send."""
        due = now_ms + UNACKED_RETRY_MS
        reason = f"claim acknowledged by {acked.acks} of {acked.wanted} Redis replica(s)"
        log.warning("campaign %s: %d claim(s) not sent: %s", cid, len(attempts), reason)
        rows = [
            [i, RecipientStatus.RETRY.code, "", UNACKED, reason, due, "", 1, att]
            for i, att in attempts
        ]
        await self.scripts["finish_batch"](
            keys=self.keys.finish_keys(cid, lane, account, now_ms // DAY_MS),
            args=[now_ms, 0, "", orjson.dumps(rows), "", cid, account, 0],
        )
        return Claim(StepKind.WAIT, due_ms=due, reason=reason)

    async def recover(
        self, cid: str, accounts: list[str], token: str, now_ms: int
    ) -> list[LostSend]:
        """Mark sends a dead worker left in flight as unknown. Returns them for settling."""
        k = self.keys
        res = await self.scripts["recover"](
            keys=[
                k.meta(cid),
                k.status(cid),
                k.detail(cid),
                k.inflight(cid),
                k.message_counts,
                self.bull_key(f"{cid}:lock"),
                k.unsettled(cid),
                *(k.backlog(a) for a in accounts),
            ],
            args=[token, now_ms],
        )
        if res == -1:
            return []
        return [
            LostSend(int(res[i]), str(res[i + 1]), int(float(res[i + 2])))
            for i in range(0, len(res), 3)
        ]

    async def close_open(
        self,
        cid: str,
        accounts: list[str],
        status: RecipientStatus,
        *,
        now_ms: int,
        error_code: str = "",
        reason: str = "",
    ) -> int:
        k = self.keys
        res = await self.scripts["close_open"](
            keys=[
                k.meta(cid),
                k.status(cid),
                k.detail(cid),
                k.message_counts,
                *(k.retry(cid, lane) for lane in range(len(accounts))),
                *(k.backlog(a) for a in accounts),
            ],
            args=[status.code, now_ms, error_code, reason, len(accounts)],
        )
        return int(res)

    async def delete(self, cid: str) -> bool:
        k = self.keys
        accounts = accounts_of(await self.meta(cid))
        own = k.campaign_keys(cid, len(accounts))
        res = await self.scripts["delete"](
            keys=[
                k.meta(cid),
                k.message_counts,
                k.campaigns,
                k.jobs,
                k.canceled_jobs,
                k.foreign_jobs,
                k.reconcile_missing,
                *own,
                *(k.backlog(a) for a in accounts),
            ],
            args=[cid, len(own)],
        )
        return bool(res)

    async def retry_failed(
        self, cid: str, accounts: list[str], codes: Sequence[str], now_ms: int
    ) -> int:
        k = self.keys
        res = await self.scripts["retry_failed"](
            keys=[
                k.meta(cid),
                k.status(cid),
                k.detail(cid),
                k.message_counts,
                *(k.retry(cid, lane) for lane in range(len(accounts))),
                *(k.backlog(a) for a in accounts),
            ],
            args=[now_ms, len(accounts), *codes],
        )
        return int(res)

    async def resolve(
        self,
        cid: str,
        accounts: list[str],
        index: int,
        action: str,
        now_ms: int,
        message_id: str = "",
    ) -> bool:
        k = self.keys
        lane = index % len(accounts)
        res = await self.scripts["resolve"](
            keys=[
                k.meta(cid),
                k.status(cid),
                k.detail(cid),
                k.retry(cid, lane),
                k.message_counts,
                k.backlog(accounts[lane]),
                k.unsettled(cid),
            ],
            args=[index, action, now_ms, message_id],
        )
        return bool(res)

    async def set_flag(self, cid: str, name: str, value: str) -> bool:
        """Set a campaign flag (paused, canceled) if the campaign exists."""
        key = self.keys.meta(cid)
        if not await self.redis.exists(key):
            return False
        await self.redis.hset(key, name, value)
        return True

    # ---- reading ----
    async def meta(self, cid: str) -> dict[str, str]:
        result: dict[str, str] = await self.redis.hgetall(self.keys.meta(cid))  # type: ignore[assignment]
        return result

    async def counts(self, cid: str) -> dict[str, int]:
        return _counts_from_meta(await self.meta(cid))

    async def unsettled(self, cid: str) -> list[tuple[int, str, int, int]]:
        """Unknown recipients awaiting a provider lookup: (index, attempt id, lease end ms,
        attempts so far)."""
        k = self.keys
        rows = await self.redis.zrange(k.unsettled(cid), 0, -1, withscores=True)
        if not rows:
            return []
        raw = await self.redis.hmget(k.detail(cid), [r[0] for r in rows])
        out: list[tuple[int, str, int, int]] = []
        for row, detail in zip(rows, raw, strict=True):
            rec = json.loads(detail) if detail else {}
            out.append((int(row[0]), str(rec.get("id", "")), int(row[1]), int(rec.get("a", 0))))
        return out

    async def drop_unsettled(self, cid: str, index: int) -> None:
        await self.redis.zrem(self.keys.unsettled(cid), index)

    async def recipient_details(
        self, cid: str, start: int, stop: int
    ) -> list[tuple[dict[str, Any], Recipient, dict[str, Any]]]:
        """Recipients ``start..stop`` (inclusive): (summary row, recipient, raw detail)."""
        if stop < start:
            return []
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lrange(k.recipients(cid), start, stop)
            pipe.getrange(k.status(cid), start, stop)
            pipe.hmget(k.detail(cid), list(range(start, stop + 1)))
            packed, codes, details = await pipe.execute()
        out: list[tuple[dict[str, Any], Recipient, dict[str, Any]]] = []
        for offset, raw in enumerate(packed):
            rec = unpack(raw)
            detail = json.loads(details[offset]) if details[offset] else {}
            row = {
                "index": start + offset,
                "phone": rec.phone,
                "status": RecipientStatus.from_code(codes[offset]).value,
                "attempts": detail.get("a", 0),
                "messageId": detail.get("m"),
                "errorCode": detail.get("e"),
                "error": detail.get("r"),
                # Who claimed it last: a worker id (host:pid:...) or "api" (instant sends).
                "worker": detail.get("w"),
            }
            out.append((row, rec, detail))
        return out

    async def status_codes(self, cid: str) -> str:
        """The status string: one ``RecipientStatus.code`` per recipient, in request order."""
        return str(await self.redis.get(self.keys.status(cid)) or "")

    async def details(self, cid: str, indexes: list[int]) -> list[str | None]:
        """The raw detail (JSON) of each recipient index, None where there is none."""
        if not indexes:
            return []
        found: list[str | None] = await self.redis.hmget(self.keys.detail(cid), indexes)  # type: ignore[assignment]
        return found

    async def find_phone(self, cid: str, digits: str, limit: int) -> tuple[int, list[int]]:
        """(recipients in the campaign, indexes whose phone contains ``digits``), scanned in
        Redis."""
        size, hits = await self.scripts["find_phone"](
            keys=[self.keys.recipients(cid)], args=[digits, limit]
        )
        return int(size), [int(i) for i in hits]

    async def rows_at(self, cid: str, indexes: list[int]) -> list[dict[str, Any]]:
        """The rows of these recipients, in one pipeline."""
        if not indexes:
            return []
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in indexes:
                pipe.lindex(k.recipients(cid), i)
                pipe.getrange(k.status(cid), i, i)
            pipe.hmget(k.detail(cid), indexes)
            replies = await pipe.execute()
        details = replies[-1]
        rows: list[dict[str, Any]] = []
        for n, i in enumerate(indexes):
            packed, code = replies[2 * n], replies[2 * n + 1]
            if not packed or not code:
                continue
            rec = unpack(packed)
            detail = json.loads(details[n]) if details[n] else {}
            rows.append(
                {
                    "index": i,
                    "phone": rec.phone,
                    "status": RecipientStatus.from_code(code).value,
                    "attempts": detail.get("a", 0),
                    "messageId": detail.get("m"),
                    "errorCode": detail.get("e"),
                    "error": detail.get("r"),
                    # Who claimed it last: a worker id (host:pid:...) or "api" (instant sends).
                    "worker": detail.get("w"),
                }
            )
        return rows

    async def recipient_rows(self, cid: str, start: int, stop: int) -> list[dict[str, Any]]:
        """Recipients ``start..stop`` (inclusive) with their status and outcome."""
        return [row for row, _, _ in await self.recipient_details(cid, start, stop)]

    async def global_counts(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.keys.message_counts)
        return {status.value: max(0, int(raw.get(status.code, 0))) for status in RecipientStatus}
