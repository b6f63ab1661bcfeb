"""The batch send path (accounts with no delay): the scripts on their own, then end to end."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import redis.asyncio as aioredis

from tests.conftest import App, make_settings, recipients, wait_for_job
from waqtor.dashboard import jobs as dashboard_jobs
from waqtor.domain.recipients import Recipient
from waqtor.domain.status import RecipientStatus
from waqtor.runtime.services import Services, build
from waqtor.store import batches
from waqtor.store.batches import Outcome
from waqtor.store.ledger import Claimant

#: Claims of lane 0 of the default account by worker ``w``, leased for 500 ms.
WHO = Claimant(token="", worker_id="w", lease_ms=500, account="default")
HOURLY_3 = Claimant(token="", worker_id="w", lease_ms=500, account="default", hourly_cap=3)


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


async def test_claim_and_finish_a_batch(redis_url: str, tmp_path: Path, r: aioredis.Redis) -> None:
    s = await _campaign(redis_url, tmp_path, "c1", 10)
    try:
        ledger = s.ledger
        got = await batches.claim(ledger, "c1", WHO, prefix="p1", now_ms=1000, size=4)
        assert isinstance(got, list)
        assert [c.index for c in got] == [0, 1, 2, 3]
        assert [c.attempt_id for c in got] == ["p1.0", "p1.1", "p1.2", "p1.3"]
        assert got[2].recipient.phone == "+966500000002" and got[2].attempt == 1
        assert await r.getrange("wq:c:c1:s", 0, 9) == "SSSSPPPPPP"
        # Each claimed recipient is in flight under its own attempt before anything is sent.
        assert await r.hgetall("wq:c:c1:f") == {str(i): f"p1.{i}" for i in range(4)}
        detail = json.loads(await r.hget("wq:c:c1:d", "1"))
        assert (detail["a"], detail["id"], detail["lease"]) == (1, "p1.1", 1500)

        outcomes = [
            Outcome(0, "p1.0", RecipientStatus.SENT, message_id="m0", text_hash="h0"),
            Outcome(1, "p1.1", RecipientStatus.FAILED, error_code="x", reason="bad"),
            Outcome(2, "p1.2", RecipientStatus.RETRY, error_code="t", reason="5xx", due_ms=9000),
            Outcome(3, "p1.3", RecipientStatus.UNKNOWN, error_code="u", reason="?", due_ms=7000),
        ]
        applied = await batches.finish(
            ledger, "c1", "default", outcomes, prefix="p1", now_ms=2000, sent_at_ms=1001
        )
        assert applied == [True, True, True, True]
        assert await r.getrange("wq:c:c1:s", 0, 3) == "DFRU"
        assert await r.hlen("wq:c:c1:f") == 0
        sent = json.loads(await r.hget("wq:c:c1:d", "0"))
        assert (sent["st"], sent["m"], sent["tD"], sent["id"]) == ("D", "m0", 2000, "p1.0")
        assert json.loads(await r.hget("wq:c:c1:d", "1"))["e"] == "x"
        assert await r.zscore("wq:c:c1:q", "2") == 9000
        assert await r.zscore("wq:c:c1:u", "3") == 7000
        assert await r.zscore("wq:acct:default:texts", "h0") == 2000
        counts = await ledger.counts("c1")
        assert (counts["pending"], counts["sent"], counts["failed"]) == (6, 1, 1)
        assert (counts["retry"], counts["unknown"], counts["sending"]) == (1, 1, 0)
        # Pending 6 + retry 1 still need a send; sent, failed and unknown do not.
        assert await r.get("wq:acct:default:backlog") == "7"

        # A stale attempt (a batch that lost the recipient to another claim) changes nothing.
        again = await batches.finish(
            ledger,
            "c1",
            "default",
            [Outcome(0, "p1.0", RecipientStatus.FAILED, error_code="late")],
            prefix="old",
            now_ms=3000,
        )
        assert again == [False]
        assert await r.getrange("wq:c:c1:s", 0, 0) == "D"

        # The due retry comes first, then pending ones in order; the next claim sees both.
        more = await batches.claim(ledger, "c1", WHO, prefix="p2", now_ms=10_000, size=3)
        assert isinstance(more, list)
        assert [(c.index, c.attempt) for c in more] == [(2, 2), (4, 1), (5, 1)]
    finally:
        await s.close()


async def test_batch_claim_stops_at_the_hourly_cap_and_skips_opted_out(
    redis_url: str, tmp_path: Path, r: aioredis.Redis
) -> None:
    s = await _campaign(redis_url, tmp_path, "c2", 10)
    try:
        await r.sadd("wq:acct:default:suppressed", "+966500000001")
        got = await batches.claim(s.ledger, "c2", HOURLY_3, prefix="p", now_ms=1000, size=10)
        assert isinstance(got, list)
        # Three sends left in the hour; the opted-out number is closed, not sent nor counted.
        assert [c.index for c in got] == [0, 2]
        assert await r.getrange("wq:c:c2:s", 0, 3) == "SZSP"
        assert await r.zcard("wq:acct:default:sent") == 2
        third = await batches.claim(s.ledger, "c2", HOURLY_3, prefix="q", now_ms=1001, size=10)
        assert isinstance(third, list) and [c.index for c in third] == [3]
        capped = await batches.claim(s.ledger, "c2", HOURLY_3, prefix="z", now_ms=1002, size=10)
        assert not isinstance(capped, list)
        assert capped.kind == "capped" and capped.due_ms == 1000 + 3_600_000
    finally:
        await s.close()


async def test_a_large_campaign_goes_out_in_batches_once_each(
    redis_url: str, tmp_path: Path, r: aioredis.Redis
) -> None:
    async with App(make_settings(redis_url, tmp_path)) as app:
        resp = await app.post(
            "/api/messages/send-bulk",
            json={"recipients": recipients(600), "message": "Hi {name}"},
        )
        job_id = resp.json()["data"]["jobId"]
        job = await wait_for_job(app.get, job_id, timeout=60)
        assert job["recipients"]["sent"] == 600
    details = [json.loads(v) for v in (await r.hgetall(f"wq:c:{job_id}:d")).values()]
    assert len(details) == 600 and all(d["a"] == 1 and d["st"] == "D" for d in details)
    # Attempt ids are <batch>.<index>: far fewer batches than recipients, and slow start
    # means the first batch held one recipient.
    per_batch = Counter(d["id"].rsplit(".", 1)[0] for d in details)
    assert len(per_batch) < 30
    assert max(per_batch.values()) > 50
    assert min(per_batch.values()) == 1
    rows = [json.loads(x) for x in await r.lrange("wq:sim:outbox", 0, -1)]
    phones = Counter(row["phone"] for row in rows)
    assert len(phones) == 600 and set(phones.values()) == {1}
    assert {row["text"] for row in rows if row["phone"] == "+966500000007"} == {"Hi Person 7"}


async def test_helper_jobs_are_not_counted_or_listed_as_campaigns(
    redis_url: str, tmp_path: Path, r: aioredis.Redis
) -> None:
    """Queue stats and the dashboard count and list campaigns (WaQtor's jobs), not the
    helper jobs that send them."""
    async with App(make_settings(redis_url, tmp_path), run_worker=False) as app:
        resp = await app.post(
            "/api/messages/send-bulk", json={"recipients": recipients(50), "message": "Hi"}
        )
        job_id = resp.json()["data"]["jobId"]
        s = app.app.state.services
        await s.engine.add_assists(job_id, 0, 2)
        assert await r.llen("bull:waqtor:wait") == 3
        stats = (await app.get("/api/queue/stats")).json()["data"]
        counts = await dashboard_jobs.counts(s, s.clock.now_ms())
        ids, total = await dashboard_jobs.page(s, "waiting", 0, 50, s.clock.now_ms())
        listed = await dashboard_jobs.rows(s, ids)
    assert (stats["waiting"], stats["active"], stats["total"]) == (1, 0, 1)
    assert counts["waiting"] == 1 and total == 1
    assert [row.id for row in listed] == [job_id]
