"""The Cloud API provider against the fake server: wire format, Meta's error codes mapped to
the retry classes, network failures, tokens, throughput."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.fake_cloud_api import PHONE_NUMBER_ID, TOKEN, FakeCloudApi, Fault
from waqtor.config import Settings
from waqtor.domain.accounts import Account
from waqtor.providers.base import (
    AmbiguousError,
    OutgoingMessage,
    PermanentError,
    ProviderError,
    RateLimitedError,
    TransientError,
    UnavailableError,
)
from waqtor.providers.cloud_api import (
    AccessToken,
    CloudApiProvider,
    ProviderConfigError,
    factory,
    opaque_data,
)
from waqtor.providers.registry import UnknownProvider
from waqtor.sending.breaker import BAN_SIGNALS, THROTTLE_SIGNALS

TO = "+966500000001"


def provider(base_url: str, token: str = TOKEN, timeout_s: float = 0.5) -> CloudApiProvider:
    return CloudApiProvider(
        phone_number_id=PHONE_NUMBER_ID,
        token=AccessToken("WA_TOKEN", {"WA_TOKEN": token}.get),
        base_url=base_url,
        version="v23.0",
        messages_per_second=80,
        max_in_flight=8,
        max_connections=32,
        timeout_s=timeout_s,
    )


def msg(phone: str = TO, **kw: object) -> OutgoingMessage:
    return OutgoingMessage("acct", phone, "Hello Sara", "camp1", "att1", **kw)  # type: ignore[arg-type]


async def test_text_request_on_the_wire(fake: FakeCloudApi) -> None:
    p = provider(fake.url)
    try:
        result = await p.send(msg())
    finally:
        await p.close()
    req = fake.requests[-1]
    assert req.path == f"/v23.0/{PHONE_NUMBER_ID}/messages"
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "966500000001",
        "biz_opaque_callback_data": opaque_data("camp1", "att1"),
        "type": "text",
        "text": {"preview_url": False, "body": "Hello Sara"},
    }
    assert result.message_id == fake.sent[-1].message_id
    assert result.message_id.startswith("wamid.")


async def test_template_image_and_document_on_the_wire(fake: FakeCloudApi) -> None:
    p = provider(fake.url)
    template = {"name": "order_update", "language": "ar", "components": [{"type": "body"}]}
    try:
        await p.send(msg(template=template))
        await p.send(msg(media={"type": "image", "link": "https://x.test/a.png", "caption": "Hi"}))
        await p.send(
            msg(media={"type": "document", "link": "https://x.test/i.pdf", "filename": "i.pdf"})
        )
    finally:
        await p.close()
    first, second, third = (m.body for m in fake.sent)
    assert first["type"] == "template"
    assert first["template"] == {
        "name": "order_update",
        "language": {"code": "ar"},
        "components": [{"type": "body"}],
    }
    assert second["type"] == "image"
    assert second["image"] == {"link": "https://x.test/a.png", "caption": "Hi"}
    assert third["document"] == {"link": "https://x.test/i.pdf", "filename": "i.pdf"}


# Meta's code decides, never the HTTP status: the same code under another status maps alike.
MAPPING = [
    # code, http, class, retry-after at least (s)
    (130429, 400, RateLimitedError, 1.0),
    (130429, 429, RateLimitedError, 1.0),
    (131056, 400, RateLimitedError, 5.0),
    (131049, 400, RateLimitedError, 12 * 3600.0),
    (131048, 400, PermanentError, None),
    (131048, 500, PermanentError, None),
    (368, 403, PermanentError, None),
    (131026, 400, PermanentError, None),
    (131047, 400, PermanentError, None),
    (100, 400, PermanentError, None),
    (190, 401, UnavailableError, None),
    (131000, 500, TransientError, None),
    (987654, 400, PermanentError, None),  # unknown code, client error
    (987654, 503, TransientError, None),  # unknown code, server error
]


@pytest.mark.parametrize(("code", "http", "kind", "retry_after"), MAPPING)
async def test_meta_error_codes_map_to_classes(
    fake: FakeCloudApi, code: int, http: int, kind: type[ProviderError], retry_after: float | None
) -> None:
    fake.faults["966500000001"] = Fault(code=code, http=http, details="why it failed")
    p = provider(fake.url)
    try:
        with pytest.raises(kind) as caught:
            await p.send(msg())
    finally:
        await p.close()
    exc = caught.value
    assert type(exc) is kind  # the exact class: 131000 is not "rate limited", 190 not "failed"
    assert exc.code == str(code)  # Meta's number, as the breaker and "retry by code" expect
    assert "why it failed" in exc.reason
    if retry_after is not None:
        assert isinstance(exc, RateLimitedError)
        assert exc.retry_after_s >= retry_after
    if code in (131056, 131048, 368):
        assert exc.code in BAN_SIGNALS
    if code == 130429:  # the number's throughput: the send path slows down, no strike
        assert exc.code in THROTTLE_SIGNALS and exc.code not in BAN_SIGNALS


async def test_131047_advises_a_template_and_100_subcode_33_stops_the_account(
    fake: FakeCloudApi,
) -> None:
    fake.faults["966500000001"] = Fault(code=131047)
    fake.faults["966500000002"] = Fault(code=100, subcode=33)
    p = provider(fake.url)
    try:
        with pytest.raises(PermanentError, match="template"):
            await p.send(msg())
        with pytest.raises(UnavailableError):  # a wrong phone-number id fails everyone alike
            await p.send(msg("+966500000002"))
    finally:
        await p.close()


async def test_5xx_without_a_json_body_is_transient(fake: FakeCloudApi) -> None:
    fake.faults["966500000001"] = Fault(http=502)
    p = provider(fake.url)
    try:
        with pytest.raises(TransientError) as caught:
            await p.send(msg())
    finally:
        await p.close()
    assert caught.value.code == "http_502"
    assert not isinstance(caught.value, (RateLimitedError, UnavailableError))


async def test_network_failures_before_and_after_the_request_left(fake: FakeCloudApi) -> None:
    # Nothing listens: the request never left, so trying again is safe.
    closed = provider(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(TransientError) as before:
            await closed.send(msg())
    finally:
        await closed.close()
    assert before.value.code == "network"
    assert not fake.sent
    # The request arrived and the connection dropped, or no answer came in time: ambiguous.
    fake.faults["966500000001"] = Fault(drop=True)
    fake.faults["966500000002"] = Fault(hang=1.5)
    p = provider(fake.url, timeout_s=0.3)
    try:
        with pytest.raises(AmbiguousError) as dropped:
            await p.send(msg())
        with pytest.raises(AmbiguousError) as slow:
            await p.send(msg("+966500000002"))
    finally:
        await p.close()
    assert dropped.value.code == "connection_lost"
    assert slow.value.code == "timeout"
    assert [m.to for m in fake.sent] == ["966500000001", "966500000002"]  # both did go out


async def test_the_fake_rate_limit_is_reported_as_130429(fake: FakeCloudApi) -> None:
    fake.mps_limit = 5
    p = provider(fake.url)
    try:
        outcomes = await asyncio.gather(
            *(p.send(msg(f"+9665000000{i:02d}")) for i in range(10)), return_exceptions=True
        )
    finally:
        await p.close()
    limited = [o for o in outcomes if isinstance(o, RateLimitedError)]
    assert len(fake.sent) == 5 and len(limited) == 5
    assert {o.code for o in limited} == {"130429"}


async def test_requests_share_a_keep_alive_pool(fake: FakeCloudApi) -> None:
    before = fake.server.connections
    p = provider(fake.url)
    try:
        for i in range(20):
            await p.send(msg(f"+9665000001{i:02d}"))
    finally:
        await p.close()
    assert fake.server.connections - before == 1


async def test_token_comes_from_env_or_file_never_into_errors_or_logs(
    fake: FakeCloudApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = Settings(cloud_api_base_url=fake.url, provider_timeout_ms=2000)
    build = factory(settings)
    account = Account(
        name="cloud",
        provider="cloud_api",
        phoneNumberId=PHONE_NUMBER_ID,
        accessTokenEnv="WA_TOKEN_T1",
    )
    monkeypatch.delenv("WA_TOKEN_T1", raising=False)
    monkeypatch.delenv("WA_TOKEN_T1_FILE", raising=False)
    with pytest.raises(ProviderConfigError, match=r"\$WA_TOKEN_T1") as missing:
        build(account)
    assert isinstance(missing.value, UnknownProvider)  # the send path waits, saying why
    with pytest.raises(ProviderConfigError, match="phoneNumberId"):
        build(account.model_copy(update={"phoneNumberId": None}))
    # From a file; an expired token (190) makes it read the file again.
    token_file = tmp_path / "token"
    token_file.write_text("expired-token-value-1234\n")
    monkeypatch.setenv("WA_TOKEN_T1_FILE", str(token_file))
    p = build(account)
    assert build(account.model_copy(update={"paused": True})) is p  # one pool per number
    try:
        with pytest.raises(UnavailableError) as expired:
            await p.send(msg())
        assert expired.value.code == "190"
        assert not (await p.health()).ok
        token_file.write_text(TOKEN)
        assert (await p.send(msg())).message_id
    finally:
        await p.close()
    shown = " ".join(r.getMessage() for r in caplog.records) + str(expired.value) + repr(p)
    assert "expired-token-value-1234" not in shown and TOKEN not in shown
