"""A worker that is still alive when its job is taken over must never cause a duplicate.

The old owner lost its lock (its renewals were late: a loaded machine, a Redis restart) while
one send was in flight. The new owner marks that send unknown and, once the send lease is
over, asks the provider by attempt id. "No record" may only lead to a new send if the old
attempt can no longer land: the lookup fences it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis

from tests.conftest import make_settings
from waqtor.domain.recipients import Recipient
from waqtor.providers.base import OutgoingMessage, TransientError
from waqtor.runtime.services import build
from waqtor.sending.sender import Campaign, Sender


async def test_late_send_of_a_taken_over_job_is_fenced(
    redis_url: str, tmp_path: Path, r: aioredis.Redis
) -> None:
    s = build(make_settings(redis_url, tmp_path, send_lease_ms=200), redis_url)
    cid = "fence1"
    try:
        async with s.store.redis.pipeline(transaction=True) as pipe:
            s.ledger.stage(
                pipe,
                cid,
                accounts=["default"],
                template="Hi",
                recipients=[Recipient("+966500000001", {})],
                mode="queue",
                created_ms=1,
            )
            await pipe.execute()
        await s.simulator.set_faults({}, latency_ms=800, phones={})
        lock = s.engine.key(f"{cid}:lock")
        await r.set(lock, "old-token")
        old = Sender(s, "old-worker")
        campaign = Campaign(cid, ["default"], "Hi")
        in_flight = asyncio.ensure_future(old.step(campaign, "old-token"))
        while not await r.hlen(s.keys.inflight(cid)):
            await asyncio.sleep(0.01)
        # The job is taken over while the old owner's request is still on its way.
        await r.set(lock, "new-token")
        lost = await s.ledger.recover(cid, ["default"], "new-token", s.clock.now_ms())
        assert [x.index for x in lost] == [0]
        await asyncio.sleep(0.25)  # the send lease is over
        await s.simulator.set_faults({}, latency_ms=0, phones={})
        new = Sender(s, "new-worker")
        assert await new.settle(campaign) is None
        again = await new.step(campaign, "new-token")
        assert again.kind == "sent"
        await in_flight  # the old request arrives late
        outbox, total = await s.simulator.outbox()
        assert total == 1, outbox
        counts = await s.ledger.counts(cid)
        assert counts["sent"] == 1 and counts["unknown"] == 0
    finally:
        await s.close()


async def test_a_fenced_attempt_is_refused_and_a_sent_one_is_found(
    redis_url: str, tmp_path: Path
) -> None:
    s = build(make_settings(redis_url, tmp_path), redis_url)
    sim = s.simulator
    try:
        msg = OutgoingMessage("default", "+966500000002", "Hi", "c", "att-1")
        sent = await sim.send(msg)
        assert await sim.lookup("att-1") == sent.message_id
        # Sending the same attempt again (a client-side retry) is not a second message.
        assert (await sim.send(msg)).message_id == sent.message_id
        assert await sim.lookup("att-2") is None  # never seen: fenced from now on
        late = OutgoingMessage("default", "+966500000003", "Hi", "c", "att-2")
        try:
            await sim.send(late)
            raise AssertionError("a fenced attempt was accepted")
        except TransientError as exc:
            assert exc.code == "sim_fenced"
        assert (await sim.outbox())[1] == 1
    finally:
        await s.close()
