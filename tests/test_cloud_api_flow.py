"""Campaigns through the Cloud API against the fake server, end to end: templates, the
number's throughput, ban signals, and status webhooks settling what the worker could not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import App, cloud_settings, wait_for_job
from tests.fake_cloud_api import (
    TOKEN,
    TOKEN_ENV,
    FakeCloudApi,
    Fault,
    cloud_account,
    signed,
)
from waqtor.domain.status import RecipientStatus
from waqtor.runtime.services import Services
from waqtor.sending.sender import Campaign, Sender

HOOK = "/webhooks/whatsapp"


@pytest.fixture
def fake(fake_server: FakeCloudApi, monkeypatch: pytest.MonkeyPatch) -> FakeCloudApi:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    fake_server.reset()
    return fake_server


async def start(app: App, **account: Any) -> App:
    resp = await app.post("/api/accounts", json=cloud_account(**account))
    assert resp.status_code == 201, resp.text
    return app


@pytest.fixture
async def app(redis_url: str, tmp_path: Path, fake: FakeCloudApi) -> AsyncIterator[App]:
    async with App(cloud_settings(redis_url, tmp_path, fake, provider_timeout_ms=800)) as running:
        yield await start(running)


async def send(app: App, recipients: list[Any], **body: Any) -> str:
    resp = await app.post(
        "/api/messages/send-bulk",
        json={"recipients": recipients, "account": "cloud", **body},
    )
    assert resp.status_code == 200, resp.text
    job_id: str = resp.json()["data"]["jobId"]
    return job_id


async def rows(app: App, job_id: str) -> list[dict[str, Any]]:
    resp = await app.get(f"/api/queue/jobs/{job_id}/recipients", params={"limit": 1000})
    found: list[dict[str, Any]] = resp.json()["data"]["recipients"]
    return found


async def hook(app: App, payload: Any) -> dict[str, Any]:
    body, headers = signed(payload)
    resp = await app.client.post(HOOK, content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


async def test_template_campaign_with_per_recipient_parameters(
    app: App, fake: FakeCloudApi
) -> None:
    job = await send(
        app,
        [
            {"phone": "966500000001", "name": "Sara", "order": "A-1"},
            {"phone": "966500000002", "name": "Omar", "order": "A-2"},
            {"phone": "966500000003", "name": "Lina"},  # lacks {order}: rejected, not sent
        ],
        template={"name": "order_ready", "language": "ar", "parameters": ["{name}", "{order}"]},
    )
    await wait_for_job(app.get, job)
    bodies = {m.to: m.body for m in fake.sent}
    assert set(bodies) == {"966500000001", "966500000002"}
    assert bodies["966500000002"]["template"] == {
        "name": "order_ready",
        "language": {"code": "ar"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Omar"}, {"type": "text", "text": "A-2"}],
            }
        ],
    }
    sent = {r["phone"]: r for r in await rows(app, job)}
    assert sent["+966500000001"]["status"] == "sent"
    assert sent["+966500000001"]["messageId"] == fake.by_to("966500000001").message_id


async def test_media_and_validation_of_whatsapp_content(app: App, fake: FakeCloudApi) -> None:
    job = await send(
        app,
        [{"phone": "966500000004", "name": "Sara"}],
        message="Your invoice, {name}",
        media={"type": "document", "link": "https://files.test/i.pdf", "filename": "i.pdf"},
    )
    await wait_for_job(app.get, job)
    assert fake.by_to("966500000004").body["document"] == {
        "link": "https://files.test/i.pdf",
        "caption": "Your invoice, Sara",
        "filename": "i.pdf",
    }
    both = await app.post(
        "/api/messages/send-bulk",
        json={
            "recipients": ["966500000005"],
            "template": {"name": "x", "language": "en"},
            "media": {"type": "image", "link": "https://files.test/a.png"},
        },
    )
    assert both.status_code == 400 and "not both" in both.json()["error"]


async def test_throughput_reaches_the_configured_rate(
    redis_url: str, tmp_path: Path, fake: FakeCloudApi
) -> None:
    """A business account with no delay against an API answering in 100 ms: one send at a
    time would give ~9/s; with sends in flight it reaches the number's configured 50/s, and
    not more."""
    fake.latency_s = 0.1
    n = 150
    async with App(cloud_settings(redis_url, tmp_path, fake, cloud_api_mps=50)) as running:
        app = await start(running)
        job = await send(app, [{"phone": f"9665{i:08d}"} for i in range(n)], message="Hi")
        await wait_for_job(app.get, job, timeout=30)
    times = sorted(m.at for m in fake.sent)
    assert len(times) == n
    rate = (n - 1) / (times[-1] - times[0])
    assert rate >= 0.9 * 50, f"{rate:.1f} messages/s"
    assert rate <= 50 * 1.1, f"{rate:.1f} messages/s: over the number's limit"
    assert not fake.rejected
    assert fake.server.connections <= 40  # a keep-alive pool, not a connection per message


async def test_ban_signal_fails_the_recipient_and_rests_the_account(
    app: App, fake: FakeCloudApi
) -> None:
    fake.faults["966500000011"] = Fault(code=131048)
    job = await send(app, ["966500000011"], message="Hi")
    deadline = time.monotonic() + 10
    while (await rows(app, job))[0]["status"] != "failed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    (row,) = await rows(app, job)
    assert row["status"] == "failed" and row["errorCode"] == "131048"
    assert "spam" in row["error"]
    s: Services = app.app.state.services
    assert await s.accounts.cooling_until("cloud") > s.clock.now_ms()


async def test_a_timeout_is_unknown_until_the_status_webhook_settles_it(
    app: App, fake: FakeCloudApi
) -> None:
    fake.faults["966500000021"] = Fault(hang=1.5)
    job = await send(app, ["966500000021", "966500000022"], message="Hi")
    await wait_for_job(app.get, job)
    by_phone = {r["phone"]: r for r in await rows(app, job)}
    assert by_phone["+966500000021"]["status"] == "unknown"
    assert by_phone["+966500000021"]["messageId"] is None
    sent = fake.by_to("966500000021")  # it did go out
    result = await hook(app, fake.status_webhook(sent, "delivered"))
    assert result["statuses"] == {"applied": 1}
    row = next(r for r in await rows(app, job) if r["phone"] == "+966500000021")
    assert row["status"] == "delivered" and row["messageId"] == sent.message_id
    counts = (await app.get(f"/api/queue/jobs/{job}")).json()["data"]["recipients"]
    assert counts["unknown"] == 0 and counts["delivered"] == 1 and counts["sent"] == 1


async def test_a_worker_that_died_mid_send_is_settled_by_the_webhook(
    redis_url: str, tmp_path: Path, fake: FakeCloudApi
) -> None:
    """The request reached Meta, then the worker died: no message id, no outcome. The webhook
    finds the recipient by the attempt id in biz_opaque_callback_data."""
    async with App(cloud_settings(redis_url, tmp_path, fake), run_worker=False) as running:
        app = await start(running)
        s: Services = app.app.state.services
        job = await send(app, ["966500000031"], message="Hi")
        fake.faults["966500000031"] = Fault(hang=5)
        step = asyncio.ensure_future(Sender(s, "doomed").step(Campaign(job, ["cloud"], "Hi"), ""))
        deadline = time.monotonic() + 5
        while not fake.sent:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        step.cancel()  # the worker is gone: nothing recorded after the request
        await asyncio.gather(step, return_exceptions=True)
        (row,) = await rows(app, job)
        assert row["status"] == "sending" and await s.pacer.backlog("cloud") == 1
        sent = fake.by_to("966500000031")
        assert (await hook(app, fake.status_webhook(sent, "sent")))["statuses"] == {"applied": 1}
        (row,) = await rows(app, job)
        assert row["status"] == "sent" and row["messageId"] == sent.message_id
        assert await s.store.redis.hlen(s.keys.inflight(job)) == 0
        assert await s.pacer.backlog("cloud") == 0
        # The next owner of the job finds nothing left in flight: no unknown, no resend.
        assert await s.ledger.recover(job, ["cloud"], "", s.clock.now_ms()) == []


async def test_statuses_out_of_order_repeated_and_failed_after_sent(
    app: App, fake: FakeCloudApi
) -> None:
    job = await send(app, ["966500000041", "966500000042"], message="Hi")
    await wait_for_job(app.get, job)
    first, second = fake.by_to("966500000041"), fake.by_to("966500000042")
    now = time.time()
    outcomes = [
        await hook(app, fake.status_webhook(first, "read", at=now + 3)),
        await hook(app, fake.status_webhook(first, "delivered", at=now + 2)),  # late
        await hook(app, fake.status_webhook(first, "read", at=now + 3)),  # repeated
        await hook(app, fake.status_webhook(first, "sent", at=now + 1)),  # very late
        await hook(app, fake.status_webhook(first, "failed", error_code=131026)),
        await hook(app, fake.status_webhook(second, "failed", error_code=131026)),
    ]
    assert [o["statuses"] for o in outcomes] == [
        {"applied": 1},
        {"stale": 1},
        {"duplicate": 1},
        {"stale": 1},
        {"stale": 1},
        {"applied": 1},
    ]
    by_phone = {r["phone"]: r for r in await rows(app, job)}
    assert by_phone["+966500000041"]["status"] == "read"
    assert by_phone["+966500000042"]["status"] == "failed"
    assert by_phone["+966500000042"]["errorCode"] == "131026"
    counts = (await app.get(f"/api/queue/jobs/{job}")).json()["data"]["recipients"]
    assert counts["read"] == 1 and counts["failed"] == 1 and counts["sent"] == 0
    stats = (await app.get("/api/queue/stats")).json()["data"]["messages"]
    assert stats["read"] == 1 and stats["failed"] == 1
    s: Services = app.app.state.services
    detail = await s.ledger.recipient_details(job, 0, 0)
    assert detail[0][2]["tE"] == int(now + 3) * 1000  # Meta's time of the read


async def test_a_failed_webhook_with_a_spam_code_is_a_ban_signal(
    app: App, fake: FakeCloudApi
) -> None:
    job = await send(app, ["966500000051"], message="Hi")
    await wait_for_job(app.get, job)
    s: Services = app.app.state.services
    assert await s.accounts.cooling_until("cloud") == 0
    await hook(app, fake.status_webhook(fake.by_to("966500000051"), "failed", error_code=131048))
    assert await s.accounts.cooling_until("cloud") > s.clock.now_ms()
    (row,) = await rows(app, job)
    assert row["status"] == RecipientStatus.FAILED.value and row["errorCode"] == "131048"


async def test_events_for_messages_that_are_not_ours_are_counted_not_applied(
    app: App, fake: FakeCloudApi
) -> None:
    job = await send(app, ["966500000061"], message="Hi")
    await wait_for_job(app.get, job)
    stranger = fake.by_to("966500000061")
    stranger.message_id = "wamid.not-ours"
    out = await hook(app, fake.status_webhook(stranger, "delivered", opaque=False))
    assert out["statuses"] == {"unmatched": 1}
    (row,) = await rows(app, job)
    assert row["status"] == "sent"


async def test_instant_send_with_a_template(
    redis_url: str, tmp_path: Path, fake: FakeCloudApi
) -> None:
    async with App(cloud_settings(redis_url, tmp_path, fake, instant_threshold=10)) as running:
        app = await start(running)
        resp = await app.post(
            "/api/messages/send-bulk",
            json={
                "recipients": [{"phone": "966500000071", "code": "4411"}],
                "account": "cloud",
                "template": {
                    "name": "otp",
                    "language": "en_US",
                    "components": [
                        {"type": "body", "parameters": [{"type": "text", "text": "{code}"}]}
                    ],
                },
            },
        )
    body = resp.json()
    assert body["mode"] == "instant" and body["data"]["successful"] == 1, body
    sent = fake.by_to("966500000071")
    assert body["data"]["results"][0]["messageId"] == sent.message_id
    assert sent.body["template"]["components"][0]["parameters"][0]["text"] == "4411"


async def test_queue_health_covers_cloud_api_accounts(
    redis_url: str, tmp_path: Path, fake: FakeCloudApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with App(cloud_settings(redis_url, tmp_path, fake)) as app:
        await start(app)
        health = (await app.get("/api/queue/health")).json()
        cloud = [a for a in health["data"]["accounts"] if a["provider"] == "cloud_api"]
        assert cloud and all(a["ok"] for a in cloud) and health["healthy"] is True
        monkeypatch.delenv(TOKEN_ENV)  # the token disappears: that account cannot send
    async with App(cloud_settings(redis_url, tmp_path, fake)) as app:
        resp = await app.get("/api/queue/health")
        body = resp.json()
        assert resp.status_code == 503 and body["healthy"] is False
        bad = [a for a in body["data"]["accounts"] if not a["ok"]]
        assert bad and TOKEN not in resp.text
