"""Status callbacks out: a durable outbox in Redis, signed POSTs, retries with backoff to a
flaky receiver, no retry on a client error, given up after the maximum age, visible in the
API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HEADERS, App, make_settings, wait_for_job
from tests.fake_cloud_api import (
    APP_SECRET,
    TOKEN,
    TOKEN_ENV,
    FakeCloudApi,
    Receiver,
    cloud_account,
    signed,
)
from waqtor.runtime.services import Services, build
from waqtor.sending import callbacks

SECRET = "callback-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def receiver(receiver_server: Receiver) -> Receiver:
    receiver_server.script.clear()
    receiver_server.got.clear()
    receiver_server.answered.clear()
    return receiver_server


@pytest.fixture
async def services(redis_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    settings = make_settings(
        redis_url,
        tmp_path,
        callback_secret=SECRET,
        callback_backoff_ms=20,
        callback_timeout_ms=2000,
    )
    s = build(settings, redis_url)
    yield s
    await s.close()


async def drain(d: callbacks.Dispatcher, s: Services, timeout: float = 10) -> None:
    """Run the dispatcher until nothing is due or waiting to be retried."""
    deadline = time.monotonic() + timeout
    while await s.store.redis.zcard(s.keys.callback_due):
        assert time.monotonic() < deadline, "callbacks still pending"
        if not await d.run_once():
            await asyncio.sleep(0.01)


def event(n: int = 0) -> dict[str, Any]:
    return {"event": "message.status", "campaignId": "c1", "index": n, "status": "sent"}


async def test_signed_with_a_timestamp_and_verifiable(
    services: Services, receiver: Receiver
) -> None:
    cb_id = await callbacks.enqueue(services, receiver.url(), event())
    d = callbacks.Dispatcher(services)
    try:
        await drain(d, services)
    finally:
        await d.stop()
    (req,) = receiver.got
    body = req.body
    ts = req.headers["x-waqtor-timestamp"]
    sig = req.headers["x-waqtor-signature"]
    assert abs(int(ts) - time.time()) < 5
    assert callbacks.verify(SECRET, body, ts, sig)
    assert req.headers["x-waqtor-delivery"] == cb_id
    assert req.headers["x-waqtor-event"] == "message.status"
    payload = json.loads(body)
    assert payload["id"] == cb_id and payload["status"] == "sent" and payload["index"] == 0
    # What a receiver must refuse: another body, another key, an old (replayed) timestamp.
    assert not callbacks.verify(SECRET, body + b" ", ts, sig)
    assert not callbacks.verify("another-secret-0123456789", body, ts, sig)
    assert not callbacks.verify(SECRET, body, ts, sig, now_s=int(ts) + 301)
    assert not callbacks.verify(SECRET, body, None, sig)


async def test_flaky_receiver_gets_it_after_retries(services: Services, receiver: Receiver) -> None:
    receiver.script.extend([500, 503, 429])
    cb_id = await callbacks.enqueue(services, receiver.url(), event())
    d = callbacks.Dispatcher(services)
    try:
        await drain(d, services)
    finally:
        await d.stop()
    assert receiver.answered == [500, 503, 429, 200]
    ids = {r.headers["x-waqtor-delivery"] for r in receiver.got}
    assert ids == {cb_id}  # the same delivery id on every retry: receivers dedupe on it
    gaps = [b.at - a.at for a, b in zip(receiver.got, receiver.got[1:], strict=False)]
    # Exponential backoff (20 ms base, doubling, ±20 %): the third wait is at least
    # 0.8 x 20 x 2^2 = 64 ms. Scheduling noise only ever adds to a wait, so this lower bound
    # holds on a busy machine, and a backoff that did not grow (about 20 ms) fails it.
    assert gaps[-1] * 1000 >= 0.8 * 20 * 2**2 - 2, gaps  # receiver times are in seconds
    rows, total = await callbacks.listing(services, "delivered", 0, 10)
    assert total == 1 and rows[0]["id"] == cb_id and rows[0]["attempts"] == 4
    assert await services.store.redis.hlen(services.keys.callback_items) == 0


async def test_client_error_is_not_retried_and_can_be_sent_again(
    services: Services, receiver: Receiver
) -> None:
    receiver.script.append(410)
    cb_id = await callbacks.enqueue(services, receiver.url(), event())
    d = callbacks.Dispatcher(services)
    try:
        await drain(d, services)
        assert receiver.answered == [410]
        rows, total = await callbacks.listing(services, "failed", 0, 10)
        assert total == 1 and rows[0]["id"] == cb_id
        assert rows[0]["last"]["status"] == 410 and "not retried" in rows[0]["last"]["error"]
        assert rows[0]["payload"]["index"] == 0
        assert await callbacks.requeue(services, cb_id)
        assert not await callbacks.requeue(services, cb_id)  # no longer failed
        await drain(d, services)
    finally:
        await d.stop()
    assert receiver.answered == [410, 200]
    assert (await callbacks.stats(services))["failed"] == 0


async def test_given_up_after_the_maximum_age(
    redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(
        redis_url,
        tmp_path,
        callback_secret=SECRET,
        callback_backoff_ms=50,
        callback_max_age_ms=1000,
    )
    s = build(settings, redis_url)
    receiver.script.extend([500] * 50)
    d = callbacks.Dispatcher(s)
    try:
        await callbacks.enqueue(s, receiver.url(), event())
        await drain(d, s)
    finally:
        await d.stop()
        await s.close()
    assert 3 <= len(receiver.answered) < 15
    assert set(receiver.answered) == {500}
    rows, _ = await callbacks.listing(s, "failed", 0, 10)
    assert "retries ran out" in rows[0]["last"]["error"]


async def test_without_a_secret_callbacks_wait_unsigned_never(
    redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    s = build(make_settings(redis_url, tmp_path), redis_url)
    d = callbacks.Dispatcher(s)
    try:
        await callbacks.enqueue(s, receiver.url(), event())
        assert await d.run_once() == 0
        stats = await callbacks.stats(s)
    finally:
        await d.stop()
        await s.close()
    assert stats["pending"] == 1 and stats["signing"] is False
    assert receiver.got == []


async def test_lease_keeps_two_dispatchers_from_sending_one_callback_twice(
    services: Services, receiver: Receiver
) -> None:
    for n in range(20):
        await callbacks.enqueue(services, receiver.url(), event(n))
    one, two = callbacks.Dispatcher(services), callbacks.Dispatcher(services)
    try:
        await asyncio.gather(drain(one, services), drain(two, services))
    finally:
        await one.stop()
        await two.stop()
    indexes = sorted(json.loads(r.body)["index"] for r in receiver.got)
    assert indexes == list(range(20))


async def test_outbox_is_visible_in_the_api(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(redis_url, tmp_path)
    async with App(settings, run_worker=False) as app:
        s: Services = app.app.state.services
        await callbacks.enqueue(s, "http://127.0.0.1:9/hook", event(7))
        resp = await app.get("/api/callbacks", params={"state": "pending"})
        stats = await app.get("/api/callbacks/stats")
        bad = await app.post("/api/callbacks/ffff/retry")
        unauth = await app.client.get("/api/callbacks")
    assert resp.status_code == 200
    (row,) = resp.json()["data"]["deliveries"]
    assert row["payload"]["index"] == 7 and row["url"] == "http://127.0.0.1:9/hook"
    assert stats.json()["data"]["pending"] == 1
    assert bad.status_code == 404
    assert unauth.status_code == 401


async def test_status_changes_of_a_campaign_reach_its_callback_url(
    redis_url: str,
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Recipient changes from the worker and from webhooks, and the campaign's own states,
    all signed, through the outbox, to the campaign's callbackUrl (over the account's)."""
    fake = FakeCloudApi().start()
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    settings = make_settings(
        redis_url,
        tmp_path,
        cloud_api_base_url=fake.url,
        whatsapp_app_secret=APP_SECRET,
        callback_secret=SECRET,
        instant_threshold=0,
    )
    try:
        async with App(settings) as app:
            account = cloud_account(callbackUrl=receiver.url("/account-hook"))
            assert (await app.post("/api/accounts", json=account)).status_code == 201
            resp = await app.post(
                "/api/messages/send-bulk",
                json={
                    "recipients": ["966500000001", "966500000002"],
                    "message": "Hi",
                    "account": "cloud",
                    "callbackUrl": receiver.url("/campaign-hook"),
                },
            )
            job = resp.json()["data"]["jobId"]
            await wait_for_job(app.get, job)
            body, headers = signed(fake.status_webhook(fake.by_to("966500000001"), "delivered"))
            assert (
                await app.client.post("/webhooks/whatsapp", content=body, headers=headers)
            ).status_code == 200
            deadline = time.monotonic() + 10
            while len(receiver.got) < 5:
                assert time.monotonic() < deadline, [r.body for r in receiver.got]
                await asyncio.sleep(0.05)
    finally:
        fake.stop()
    events = [json.loads(r.body) for r in receiver.got]
    assert {r.path for r in receiver.got} == {"/campaign-hook"}
    assert all(
        callbacks.verify(
            SECRET, r.body, r.headers["x-waqtor-timestamp"], r.headers["x-waqtor-signature"]
        )
        for r in receiver.got
    )
    states = [e["status"] for e in events if e["event"] == "campaign.status"]
    assert states == ["active", "completed"]
    done = next(e for e in events if e["status"] == "completed")
    assert done["recipients"] == {"sent": 2} and done["campaignId"] == job
    changes = sorted(
        (e["phone"], e["previousStatus"], e["status"], e["source"])
        for e in events
        if e["event"] == "message.status"
    )
    assert changes == [
        ("+966500000001", "sending", "sent", "worker"),
        ("+966500000001", "sent", "delivered", "webhook"),
        ("+966500000002", "sending", "sent", "worker"),
    ]
    delivered = next(e for e in events if e["status"] == "delivered")
    assert delivered["messageId"] == fake.by_to("966500000001").message_id


async def test_batched_sends_queue_their_callbacks_with_the_outcomes(
    redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """On the batch path (simulator, no delay) each recorded change queues its callback in the
    same script as the change: one per recipient, with its own outcome."""
    settings = make_settings(redis_url, tmp_path, callback_secret=SECRET, instant_threshold=0)
    async with App(settings) as app:
        faults = {"phones": {"+966500000004": "permanent"}}
        assert (
            await app.client.put("/api/simulator/faults", json=faults, headers=HEADERS)
        ).is_success
        await asyncio.sleep(0.25)
        resp = await app.post(
            "/api/messages/send-bulk",
            json={
                "recipients": [{"phone": f"9665{i:08d}", "name": f"P{i}"} for i in range(40)],
                "message": "Hi {name}",
                "callbackUrl": receiver.url("/batch-hook"),
            },
        )
        job = resp.json()["data"]["jobId"]
        await wait_for_job(app.get, job)
        deadline = time.monotonic() + 10
        while len(receiver.got) < 42:  # 40 recipients, then active and completed
            assert time.monotonic() < deadline, len(receiver.got)
            await asyncio.sleep(0.05)
        r = app.app.state.services.store.redis
        ids = [json.loads(v)["id"].rsplit(".", 1)[0] for v in (await r.hvals(f"wq:c:{job}:d"))]
    assert len(set(ids)) < 20  # the sends did go out in batches
    events = [
        json.loads(x.body) for x in receiver.got if x.headers["x-waqtor-event"] == "message.status"
    ]
    assert len(events) == 40 and len({e["id"] for e in events}) == 40
    by_phone = {e["phone"]: e for e in events}
    assert by_phone["+966500000004"]["status"] == "failed"
    assert by_phone["+966500000004"]["errorCode"] == "sim_invalid_recipient"
    sent = by_phone["+966500000007"]
    assert (sent["status"], sent["previousStatus"], sent["source"]) == ("sent", "sending", "worker")
    assert sent["messageId"].startswith("sim-") and sent["campaignId"] == job
    assert sent["index"] == 7 and sent["account"] == "default"
    assert all(
        callbacks.verify(
            SECRET, x.body, x.headers["x-waqtor-timestamp"], x.headers["x-waqtor-signature"]
        )
        for x in receiver.got
    )
