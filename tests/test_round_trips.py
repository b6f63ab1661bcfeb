"""Fewer round trips: the slot reserved inside the claim, accounts refreshed together, the
simulator's attempts written once per call, no suppression lookups without a list. Real Redis,
the store's own scripts."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from tests.conftest import make_settings
from waqtor.domain.accounts import Account
from waqtor.domain.recipients import Recipient
from waqtor.domain.steps import StepKind
from waqtor.providers.simulator import FENCED
from waqtor.runtime.services import Services, build
from waqtor.store import accounts as account_store
from waqtor.store.ledger import Claimant


async def _campaign(redis_url: str, tmp_path: Path, cid: str, n: int) -> Services:
    s = build(make_settings(redis_url, tmp_path), redis_url)
    async with s.store.redis.pipeline(transaction=True) as pipe:
        s.ledger.stage(
            pipe,
            cid,
            accounts=["default"],
            template="Hi {name}",
            recipients=[Recipient(f"+9665{i:08d}", {"name": f"P{i}"}) for i in range(n)],
            mode="queue",
            created_ms=1,
        )
        await pipe.execute()
    return s


async def _claim(s: Services, attempt: str, now: int, gap: int, reserve: int) -> tuple[str, int]:
    who = Claimant(token="", worker_id="w", lease_ms=500, account="default")
    claim = await s.ledger.claim_next(
        "c1", who, attempt_id=attempt, now_ms=now, min_gap_ms=gap, reserve_gap_ms=reserve
    )
    return claim.kind.value, claim.due_ms


async def test_claim_reserves_the_slot_in_the_same_script(
    redis_url: str, tmp_path: Path, r: aioredis.Redis
) -> None:
    s = await _campaign(redis_url, tmp_path, "c1", 5)
    try:
        # The slot is free: reserved (next free = now + gap) and the recipient claimed at once.
        assert (await _claim(s, "a1", 10_000, 1000, 1200))[0] == StepKind.CLAIMED.value
        assert await r.get("wq:acct:default:next_ms") == "11200"
        assert await r.get("wq:acct:default:last_ms") == "10000"
        # Another sender holds the next slot: the one after it is reserved for this caller,
        # which comes back at the held slot's time; nothing is claimed.
        assert await _claim(s, "a2", 10_500, 1000, 1000) == (StepKind.EARLY.value, 11200)
        assert await r.get("wq:acct:default:next_ms") == "12200"
        assert await r.getrange("wq:c:c1:s", 0, 4) == "SPPPP"
        # Coming back without reserving again: the gap since the last claim still holds.
        assert await _claim(s, "a2", 10_900, 1000, -1) == (StepKind.EARLY.value, 11000)
        assert (await _claim(s, "a2", 11_200, 1000, -1))[0] == StepKind.CLAIMED.value
        # A stopped campaign reserves nothing.
        await r.hset("wq:c:c1", "paused", "1")
        assert (await _claim(s, "a3", 20_000, 1000, 1000))[0] == StepKind.PAUSED.value
        assert await r.get("wq:acct:default:next_ms") == "12200"
    finally:
        await s.close()


async def test_accounts_used_together_are_refreshed_by_one_read(
    redis_url: str, tmp_path: Path, r: aioredis.Redis
) -> None:
    s = build(make_settings(redis_url, tmp_path), redis_url)
    store = s.accounts
    try:
        names = [f"a{i}" for i in range(account_store.BULK_MIN + 4)]
        for name in names:
            await store.put(Account(name=name, warmup=False))
        first = {name: await store.get(name) for name in names}
        # Another process pauses one account; every cached account goes stale.
        other = build(make_settings(redis_url, tmp_path), redis_url)
        paused = first["a3"]
        assert paused is not None
        await other.accounts.put(paused.model_copy(update={"paused": True}))
        await other.close()
        for name in names:
            at, account = store._cache[name]
            store._cache[name] = (at - account_store.CACHE_S, account)
        before = int((await r.info("commandstats"))["cmdstat_hgetall"]["calls"])
        hget_before = int((await r.info("commandstats")).get("cmdstat_hget", {"calls": 0})["calls"])
        again = {name: await store.get(name) for name in names}
        stats = await r.info("commandstats")
        assert int(stats["cmdstat_hgetall"]["calls"]) - before == 1
        assert int(stats.get("cmdstat_hget", {"calls": 0})["calls"]) == hget_before
        assert again["a3"] is not None and again["a3"].paused  # the change is seen...
        assert all(again[n] is first[n] for n in names if n != "a3")  # ...the rest reused
        # A deleted account reads as gone after the next refresh.
        await r.hdel("wq:accounts", "a5")
        for name in names:
            at, account = store._cache[name]
            store._cache[name] = (at - account_store.CACHE_S, account)
        assert await store.get("a5") is None
    finally:
        await s.close()


async def test_simulator_lands_each_attempt_once_per_call(
    redis_url: str, tmp_path: Path, r: aioredis.Redis
) -> None:
    s = build(make_settings(redis_url, tmp_path), redis_url)
    try:
        sim = s.simulator.store
        await r.hset("wq:sim:attempts", mapping={"fenced": FENCED, "old": "m-old"})
        got = await sim.accept(
            FENCED,
            [
                ("new", "m1", b'{"phone":"1"}'),
                ("fenced", "m2", b'{"phone":"2"}'),
                ("old", "m3", b'{"phone":"3"}'),
                ("new", "m4", b'{"phone":"4"}'),  # the same attempt twice in one call
            ],
        )
        assert got == ["m1", FENCED, "m-old", "m1"]
        assert await r.lrange("wq:sim:outbox", 0, -1) == ['{"phone":"1"}']
        assert await r.hget("wq:sim:attempts", "new") == "m1"
    finally:
        await s.close()


async def test_submission_skips_the_suppression_check_without_a_list(
    redis_url: str, tmp_path: Path, r: aioredis.Redis
) -> None:
    s = build(make_settings(redis_url, tmp_path), redis_url)
    try:
        phones = [f"+9665{i:08d}" for i in range(2500)]

        async def calls() -> int:
            stats = await r.info("commandstats")
            return int(stats.get("cmdstat_smismember", {"calls": 0})["calls"])

        before = await calls()
        assert await s.suppressions.among("default", phones) == set()
        assert await calls() == before  # no list: no number was looked up
        await s.suppressions.add("default", [phones[1700]])
        assert await s.suppressions.among("default", phones) == {phones[1700]}
        assert await calls() == before + 3
    finally:
        await s.close()
