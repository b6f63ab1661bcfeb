"""Webhooks in: Meta's verification, the signature check, statuses applied to the ledger
(idempotent, out of order, settling unknowns), and opt-out replies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import VERIFY, App, cloud_settings, make_settings
from tests.fake_cloud_api import PHONE_NUMBER_ID, TOKEN, FakeCloudApi, signed

HOOK = "/webhooks/whatsapp"


@pytest.fixture
async def app(
    redis_url: str, tmp_path: Path, fake: FakeCloudApi, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[App]:
    monkeypatch.setenv("WA_TOKEN_TEST", TOKEN)
    async with App(cloud_settings(redis_url, tmp_path, fake)) as running:
        resp = await running.post(
            "/api/accounts",
            json={
                "name": "cloud",
                "tier": "business",
                "warmup": False,
                "delayMs": 0,
                "provider": "cloud_api",
                "phoneNumberId": PHONE_NUMBER_ID,
                "accessTokenEnv": "WA_TOKEN_TEST",
            },
        )
        assert resp.status_code == 201, resp.text
        yield running


async def post_hook(app: App, payload: Any) -> Any:
    body, headers = signed(payload)
    return await app.client.post(HOOK, content=body, headers=headers)


async def test_meta_verification(app: App) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    ok = await app.client.get(HOOK, params=params)
    assert ok.status_code == 200 and ok.text == "1158201444"
    assert ok.headers["content-type"].startswith("text/plain")
    wrong = await app.client.get(HOOK, params={**params, "hub.verify_token": VERIFY + "x"})
    assert wrong.status_code == 403
    assert wrong.json() == {
        "success": False,
        "error": "hub.verify_token: does not match WHATSAPP_VERIFY_TOKEN",
    }


async def test_unconfigured_webhooks_answer_404_saying_what_is_missing(
    redis_url: str, tmp_path: Path
) -> None:
    async with App(make_settings(redis_url, tmp_path), run_worker=False) as app:
        get = await app.client.get(
            HOOK, params={"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
        )
        body, headers = signed({"entry": []})
        post = await app.client.post(HOOK, content=body, headers=headers)
    assert get.status_code == 404 and "WHATSAPP_VERIFY_TOKEN" in get.json()["error"]
    assert post.status_code == 404 and "WHATSAPP_APP_SECRET" in post.json()["error"]


async def test_bad_or_missing_signature_is_401_and_stores_nothing(
    app: App, fake: FakeCloudApi
) -> None:
    s = app.app.state.services
    payload = fake.inbound_webhook("+966500000077", "STOP")
    body, headers = signed(payload)
    before = sorted(await s.store.redis.keys("*"))
    missing = await app.client.post(
        HOOK, content=body, headers={"Content-Type": "application/json"}
    )
    forged = await app.client.post(HOOK, content=body, headers=signed(payload, "not-the-secret")[1])
    tampered = await app.client.post(HOOK, content=body.replace(b"STOP", b"STOq"), headers=headers)
    assert [r.status_code for r in (missing, forged, tampered)] == [401, 401, 401]
    assert sorted(await s.store.redis.keys("*")) == before
    good = await app.client.post(HOOK, content=body, headers=headers)
    assert good.status_code == 200 and good.json()["data"]["optOuts"] == 1


@pytest.mark.parametrize("text", ["STOP", "  stop! ", "Unsubscribe", "إلغاء", "الغاء", "إيقاف"])
async def test_opt_out_keywords_suppress_the_sender(
    app: App, fake: FakeCloudApi, text: str
) -> None:
    resp = await post_hook(app, fake.inbound_webhook("+966500000078", text))
    assert resp.status_code == 200
    listed = await app.get("/api/accounts/cloud/suppressions")
    assert listed.json()["data"]["phones"] == ["+966500000078"]


async def test_other_messages_and_other_numbers_suppress_nobody(
    app: App, fake: FakeCloudApi
) -> None:
    await post_hook(app, fake.inbound_webhook("+966500000079", "stop sending me the invoice?"))
    await post_hook(app, fake.inbound_webhook("+966500000079", "Hello"))
    await post_hook(app, fake.inbound_webhook("+966500000079", "STOP", phone_number_id="999"))
    listed = await app.get("/api/accounts/cloud/suppressions")
    assert listed.json()["data"]["phones"] == []
