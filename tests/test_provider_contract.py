"""One contract for every provider: the simulator, and the Cloud API against the fake server.

Whatever the API, the worker gets a message id, or one of: transient, rate limited (with a
retry-after), permanent (with a code), ambiguous (the request left, no answer). It also gets
our attempt id carried along, and a health report.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest
import redis.asyncio as aioredis

from tests.fake_cloud_api import PHONE_NUMBER_ID, TOKEN, FakeCloudApi, Fault
from tests.fake_gateways import API_KEY, FakeEvolution, FakeGateway, FakeWaha
from tests.fake_web import FakeWebClient, pair_file
from waqtor.config import Settings
from waqtor.domain.accounts import Account
from waqtor.providers import gateway_env
from waqtor.providers.base import (
    AmbiguousError,
    OutgoingMessage,
    PermanentError,
    Provider,
    RateLimitedError,
    TransientError,
)
from waqtor.providers.cloud_api import AccessToken, CloudApiProvider, parse_opaque
from waqtor.providers.evolution import EvolutionProvider
from waqtor.providers.simulator import SimulatorProvider
from waqtor.providers.waha import WahaProvider
from waqtor.runtime.services import Services, build
from waqtor.store.keys import Keys
from waqtor.store.simulator import SimulatorStore

PHONE = "+966500000001"


class Harness(Protocol):
    provider: Provider
    #: The provider carries our attempt id (a WhatsApp Web gateway does not: the send path
    #: notes the attempt per number in Redis instead) and sends WhatsApp templates.
    carries_attempt: bool
    templates: bool
    #: Sends media by URL (WhatsApp Web built in sends text only, and refuses the rest).
    media: bool

    async def force(self, phone: str, kind: str) -> None: ...

    async def attempt_of(self, message_id: str) -> str | None: ...


@dataclass
class SimHarness:
    provider: SimulatorProvider
    carries_attempt: bool = True
    templates: bool = True
    media: bool = True

    async def force(self, phone: str, kind: str) -> None:
        await self.provider.set_faults({}, None, {phone: kind})

    async def attempt_of(self, message_id: str) -> str | None:
        rows, _ = await self.provider.outbox(0, 1000)
        return next((r["attemptId"] for r in rows if r["messageId"] == message_id), None)


@dataclass
class CloudHarness:
    provider: CloudApiProvider
    fake: FakeCloudApi
    carries_attempt: bool = True
    templates: bool = True
    media: bool = True

    async def force(self, phone: str, kind: str) -> None:
        to = phone.lstrip("+")
        self.fake.faults[to] = {
            "transient": Fault(code=131000, http=500),
            "rate_limited": Fault(code=130429, http=400),
            "permanent": Fault(code=131026, http=400),
            "ambiguous": Fault(hang=2.0),
        }[kind]

    async def attempt_of(self, message_id: str) -> str | None:
        sent = next(m for m in self.fake.sent if m.message_id == message_id)
        found = parse_opaque(sent.opaque)
        return found[1] if found else None


@dataclass
class GatewayHarness:
    provider: WahaProvider | EvolutionProvider
    fake: FakeGateway
    carries_attempt: bool = False
    templates: bool = False
    media: bool = True

    async def force(self, phone: str, kind: str) -> None:
        self.fake.faults[phone.lstrip("+")] = {
            "transient": "500",
            "rate_limited": "429",
            "permanent": "400",
            "ambiguous": "hang",
        }[kind]

    async def attempt_of(self, message_id: str) -> str | None:
        return None


@pytest.fixture(scope="module")
def gateways() -> Iterator[dict[str, FakeGateway]]:
    fakes: dict[str, FakeGateway] = {
        "waha": FakeWaha().start(),
        "evolution": FakeEvolution().start(),
    }
    yield fakes
    for one in fakes.values():
        one.stop()


def gateway_provider(
    kind: str, fake: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> WahaProvider | EvolutionProvider:
    monkeypatch.setenv("GATEWAY_CONTRACT_URL", fake.url)
    monkeypatch.setenv("GATEWAY_CONTRACT_KEY", API_KEY)
    settings = Settings(provider_timeout_ms=600, gateway_session_check_ms=100)
    gw = gateway_env.gateway("contract")
    if kind == "waha":
        return WahaProvider(settings, gw, fake.session)
    return EvolutionProvider(settings, gw, fake.session)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCloudApi]:
    server = FakeCloudApi().start()
    yield server
    server.stop()


def cloud_provider(fake: FakeCloudApi, timeout_s: float = 0.5, **kw: Any) -> CloudApiProvider:
    return CloudApiProvider(
        phone_number_id=PHONE_NUMBER_ID,
        token=AccessToken("WA_TOKEN", {"WA_TOKEN": kw.pop("token", TOKEN)}.get),
        base_url=fake.url,
        version="v23.0",
        messages_per_second=80,
        max_in_flight=8,
        max_connections=16,
        timeout_s=timeout_s,
    )


@dataclass
class WebHarness:
    """A worker's services holding the web account ``acct`` (a paired session, our adapter
    faked): WhatsApp's own answers, 5xx, 429 rate-overlimit, 479 refused, no answer."""

    provider: Provider
    services: Services
    carries_attempt: bool = False  # neonize 0.5.2 cannot send under an id of ours
    templates: bool = False
    media: bool = False
    FAULTS: ClassVar[dict[str, str]] = {
        "transient": "503",
        "rate_limited": "429",
        "permanent": "479",
        "ambiguous": "ambiguous",
    }

    async def force(self, phone: str, kind: str) -> None:
        FakeWebClient.faults[phone.lstrip("+")] = self.FAULTS[kind]

    async def attempt_of(self, message_id: str) -> str | None:
        raise AssertionError("not asked: WhatsApp Web cannot carry our attempt id")


async def web_harness(redis_url: str, tmp_path: Path) -> WebHarness:
    FakeWebClient.reset()
    settings = Settings(redis_url=redis_url, api_key="k" * 32, data_dir=tmp_path / "data")
    s = build(settings, redis_url)
    s.web._factory = FakeWebClient
    pair_file(s.web.db_path("acct"))
    account = await s.accounts.put(Account(name="acct", provider="web"))
    await s.web.tick()  # takes the lease and connects
    await asyncio.wait_for(s.web.sessions["acct"].connected.wait(), 5)
    return WebHarness(s.providers.get(account), s)


@pytest.fixture(params=["simulator", "cloud_api", "waha", "evolution", "web"])
async def harness(
    request: pytest.FixtureRequest,
    r: aioredis.Redis,
    fake: FakeCloudApi,
    gateways: dict[str, FakeGateway],
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    tmp_path: Path,
) -> AsyncIterator[Harness]:
    h: Harness
    if request.param == "simulator":
        h = SimHarness(SimulatorProvider(SimulatorStore(r, Keys())))
    elif request.param == "web":
        h = await web_harness(redis_url, tmp_path)
    elif request.param in gateways:
        one = gateways[request.param]
        one.reset()
        one.hang_s = 1.5
        h = GatewayHarness(gateway_provider(request.param, one, monkeypatch), one)
    else:
        fake.reset()
        h = CloudHarness(cloud_provider(fake), fake)
    yield h
    await h.provider.close()
    await h.provider.close()  # closing twice is harmless
    if isinstance(h, WebHarness):
        await h.services.close()


def message(phone: str = PHONE, attempt: str = "att1", **kw: Any) -> OutgoingMessage:
    return OutgoingMessage("acct", phone, "Hello", "camp1", attempt, **kw)


async def test_send_returns_a_message_id_and_carries_the_attempt_id(harness: Harness) -> None:
    result = await harness.provider.send(message(attempt="a-123"))
    assert result.message_id
    if harness.carries_attempt:
        assert await harness.attempt_of(result.message_id) == "a-123"


async def test_template_and_media_messages_are_accepted(harness: Harness) -> None:
    template = {
        "name": "order_update",
        "language": {"code": "ar"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Sara"}]}],
    }
    if harness.templates:
        first = await harness.provider.send(message(template=template))
    else:
        with pytest.raises(PermanentError):
            await harness.provider.send(message(template=template))
        first = await harness.provider.send(message())
    media = {
        "type": "document",
        "link": "https://example.com/i.pdf",
        "caption": "Invoice",
        "filename": "invoice.pdf",
    }
    if not harness.media:
        with pytest.raises(PermanentError):
            await harness.provider.send(message("+966500000002", "b", media=media))
        return
    second = await harness.provider.send(message("+966500000002", "b", media=media))
    assert first.message_id and second.message_id and first.message_id != second.message_id


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("permanent", PermanentError),
        ("transient", TransientError),
        ("rate_limited", RateLimitedError),
        ("ambiguous", AmbiguousError),
    ],
)
async def test_failures_raise_their_class(harness: Harness, kind: str, error: type) -> None:
    await harness.force(PHONE, kind)
    with pytest.raises(error) as caught:
        await harness.provider.send(message())
    exc = caught.value
    assert exc.code and exc.reason
    if kind == "transient":
        assert not isinstance(exc, RateLimitedError)
    if kind == "rate_limited":
        assert exc.retry_after_s > 0
    # Another recipient is not affected.
    assert (await harness.provider.send(message("+966500000009", "other"))).message_id


async def test_health_is_reported(harness: Harness) -> None:
    health = await harness.provider.health()
    assert health.ok, health.detail
    assert health.detail
