"""One send path for every unpaced provider: the adaptive in-flight limit, the shared rate
slots, the provider contract, and campaigns through a provider that takes one message per
request (the Cloud API against the fake, the simulator in its per-message mode)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.conftest import App, cloud_settings, make_settings, recipients, wait_for_job
from tests.fake_cloud_api import PHONE_NUMBER_ID, TOKEN, TOKEN_ENV, FakeCloudApi, cloud_account
from waqtor.domain.steps import StepKind, UnknownStepKind
from waqtor.providers.base import (
    Capabilities,
    Health,
    Lookup,
    OutgoingMessage,
    Provider,
    SendResult,
    Unsupported,
)
from waqtor.providers.cloud_api import AccessToken, CloudApiProvider
from waqtor.providers.simulator import SimulatorProvider
from waqtor.runtime.services import Services, build
from waqtor.sending import throughput
from waqtor.sending.flow import Flow, Signal
from waqtor.store.keys import Keys
from waqtor.store.simulator import SimulatorStore


# ---------------------------------------------------------------- the in-flight limit
async def test_slow_start_doubles_per_round_up_to_the_providers_ceiling() -> None:
    flow = Flow(32)
    widths = []
    for _ in range(6):
        widths.append(flow.width)
        tickets = [(await flow.acquire())[0] for _ in range(flow.width)]
        for ticket in tickets:
            flow.release(ticket, Signal.OK)
    assert widths == [1, 2, 4, 8, 16, 32]
    assert flow.width == 32  # never above Capabilities.max_in_flight


async def test_a_burst_of_throttle_refusals_halves_the_limit_once() -> None:
    """32 requests in flight all come back 130429: one cut (to 16), not 32 of them; only a
    refusal of a request started after the cut cuts again."""
    flow = Flow(32)
    flow.limit = 32.0
    burst = [(await flow.acquire())[0] for _ in range(32)]
    for ticket in burst:
        flow.release(ticket, Signal.CONGESTED)
    assert flow.width == 16
    later = (await flow.acquire())[0]
    flow.release(later, Signal.CONGESTED)
    assert flow.width == 8
    # Then it grows again, one request at a time past the threshold (additive increase).
    for _ in range(9):  # about one round of 8
        flow.release((await flow.acquire())[0], Signal.OK)
    assert flow.width == 9


async def test_a_ban_signal_drops_to_one_request_and_one_recipient() -> None:
    flow = Flow(2, batch_limit=100)
    for _ in range(8):
        flow.release((await flow.acquire())[0], Signal.OK)
        flow.batch_done(Signal.OK)
    assert (flow.width, flow.batch_size) == (2, 100)
    assert flow.claims_in_flight(100) == 2
    flow.release((await flow.acquire())[0], Signal.BAN)
    flow.batch_done(Signal.BAN)
    assert (flow.width, flow.batch_size) == (1, 1)
    assert flow.claims_in_flight(1) == 1  # the breaker sees each outcome before the next send


async def test_rising_answer_times_count_as_congestion() -> None:
    flow = Flow(32)
    flow.limit = flow.threshold = 20.0
    for _ in range(20):
        flow.release((await flow.acquire())[0], Signal.OK, 0.05)
    assert flow.width == 20  # answers as fast as ever: about one more per round
    # The provider now answers in 400 ms instead of 50: a round of requests cuts once.
    slow = [(await flow.acquire())[0] for _ in range(20)]
    for ticket in slow:
        flow.release(ticket, Signal.OK, 0.4)
    assert flow.width == 10


async def test_acquire_waits_for_room_under_the_limit() -> None:
    flow = Flow(4)
    flow.limit = 2.0
    first, second = (await flow.acquire())[0], (await flow.acquire())[0]
    third = asyncio.ensure_future(flow.acquire())
    await asyncio.sleep(0.01)
    assert not third.done() and flow.in_flight == 2
    flow.release(first, Signal.OK)
    await asyncio.wait_for(third, 1)
    assert flow.in_flight == 2
    flow.release(second, Signal.OK)
    flow.release(third.result()[0], Signal.OK)


def test_claims_stay_within_a_short_horizon_of_rate_slots() -> None:
    flow = Flow(32)
    flow.limit = 32.0
    assert flow.claim_size(100, None) == 32
    assert flow.claim_size(100, 500.0) == 5  # 10 ms of slots at 500/s
    assert flow.claim_size(100, 10.0) == 1
    assert flow.claims_in_flight(5) == 8  # enough claims of 5 to keep 32 requests busy, +1
    flow.limit = 128.0
    flow.ceiling = 128
    flow.srtt_s = 0.05  # answers in 50 ms: claims of 10 ms of slots over twice that, and 3 more
    assert flow.claims_in_flight(5, 500.0) == 13
    flow.srtt_s = 0.01
    assert flow.claims_in_flight(5, 500.0) == 5


# ---------------------------------------------------------------- rate slots
@pytest.fixture
async def services(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Services]:
    monkeypatch.setenv("WQ_PIPE_TOKEN", TOKEN)
    s = build(make_settings(redis_url, tmp_path), redis_url)
    yield s
    await s.close()


async def test_rate_slots_are_shared_and_reserved_in_runs(services: Services) -> None:
    caps = Capabilities(messages_per_second=100.0, throttle_key="cloud_api:1")
    firsts = await asyncio.gather(
        *(throughput.reserve(services, f"acct{i}", caps, 10) for i in range(3))
    )
    # Three callers (any accounts on the same number) get three runs of 10 slots, about 10 ms
    # apart (a little more: the rate keeps some headroom for late requests).
    spacing = throughput.interval_ms(caps)
    assert 10 < spacing <= 10 / 0.95
    ordered = sorted(firsts)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    assert gaps == [pytest.approx(10 * spacing, abs=0.01)] * 2
    started = time.monotonic()
    await asyncio.gather(*(throughput.throttle(services, "x", caps) for _ in range(11)))
    assert time.monotonic() - started >= 0.3  # after the 30 slots above, 10 ms apart


# ---------------------------------------------------------------- the contract
class Bare(Provider):
    """A provider that declares nothing: it gets the careful defaults."""

    name = "bare"

    async def send(self, message: OutgoingMessage) -> SendResult:
        return SendResult("x")

    async def health(self) -> Health:
        return Health(True, "ok")

    async def close(self) -> None:
        return None


async def test_capabilities_are_declared_with_safe_defaults(r: aioredis.Redis) -> None:
    bare = Bare()
    assert bare.capabilities == Capabilities()
    assert (bare.capabilities.batch_size, bare.capabilities.max_in_flight) == (1, 1)
    assert bare.capabilities.lookup is Lookup.NONE and bare.capabilities.min_gap_ms == 0
    for call in (bare.lookup("a"), bare.check_numbers(["+966500000001"])):
        with pytest.raises(Unsupported):
            await call
    with pytest.raises(NotImplementedError):  # Unsupported is one
        await bare.send_presence("acct", "+966500000001", 1000)
    two = await bare.send_batch(
        [OutgoingMessage("a", "+966500000001", "t", "c", f"at{i}") for i in range(2)]
    )
    assert two == [SendResult("x"), SendResult("x")]
    sim = SimulatorProvider(SimulatorStore(r, Keys()))
    assert sim.capabilities.batch_size > 1 and sim.capabilities.lookup is Lookup.FENCED
    per_message = SimulatorProvider(SimulatorStore(r, Keys()), batch_size=1, max_in_flight=48)
    assert (per_message.capabilities.batch_size, per_message.capabilities.max_in_flight) == (1, 48)
    cloud = CloudApiProvider(
        phone_number_id=PHONE_NUMBER_ID,
        token=AccessToken("T", {"T": TOKEN}.get),
        base_url="http://127.0.0.1:9",
        version="v23.0",
        messages_per_second=80,
        max_in_flight=32,
        max_connections=8,
        timeout_s=1,
    )
    can = cloud.capabilities
    assert (can.batch_size, can.max_in_flight, can.messages_per_second) == (1, 32, 80)
    assert can.throttle_key == f"cloud_api:{PHONE_NUMBER_ID}" and can.settles_by_webhook
    assert can.lookup is Lookup.NONE
    with pytest.raises(ValueError):
        Capabilities(max_in_flight=0)


def test_an_unknown_step_kind_fails_loudly() -> None:
    assert StepKind.parse(b"lane_done") is StepKind.LANE_DONE
    with pytest.raises(UnknownStepKind, match="'finished'"):
        StepKind.parse("finished")


# ---------------------------------------------------------------- campaigns
def _batches(details: list[dict[str, Any]]) -> Counter[str]:
    """Recipients per claim: attempt ids are ``<claim>.<index>``."""
    return Counter(d["id"].rsplit(".", 1)[0] for d in details)


async def test_per_message_provider_claims_in_batches_and_sends_concurrently(
    redis_url: str, tmp_path: Path, r: aioredis.Redis
) -> None:
    """The simulator taking one message per call, 20 ms each: the engine claims many
    recipients per script and keeps many calls in flight, each recipient sent once."""
    settings = make_settings(redis_url, tmp_path, sim_batch_size=1, sim_latency_ms=20)
    async with App(settings) as app:
        resp = await app.post(
            "/api/messages/send-bulk", json={"recipients": recipients(400), "message": "Hi {name}"}
        )
        job_id = resp.json()["data"]["jobId"]
        started = time.monotonic()
        job = await wait_for_job(app.get, job_id, timeout=60)
        elapsed = time.monotonic() - started
    assert job["recipients"]["sent"] == 400
    details = [json.loads(v) for v in (await r.hgetall(f"wq:c:{job_id}:d")).values()]
    per_claim = _batches(details)
    assert len(per_claim) < 60 and max(per_claim.values()) >= 16
    assert elapsed < 400 * 0.02 / 4  # one call at a time would take 8 s
    rows = [json.loads(x) for x in await r.lrange("wq:sim:outbox", 0, -1)]
    assert sorted(Counter(row["phone"] for row in rows).values()) == [1] * 400


@pytest.fixture
def fake(fake_server: FakeCloudApi, monkeypatch: pytest.MonkeyPatch) -> FakeCloudApi:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    fake_server.reset()
    return fake_server


async def test_a_burst_of_130429_slows_the_number_and_never_strikes_the_account(
    redis_url: str, tmp_path: Path, fake: FakeCloudApi
) -> None:
    """The fake accepts 20 messages a second while waqtor is told 200: the 130429s slow the
    sends down, every recipient still goes out once, no attempt is used up by them and the
    account is neither rested nor paused."""
    fake.latency_s = 0.02
    fake.mps_limit = 20
    settings = cloud_settings(redis_url, tmp_path, fake, cloud_api_mps=200, max_retries=1)
    async with App(settings) as app:
        assert (await app.post("/api/accounts", json=cloud_account())).status_code == 201
        body = {"recipients": [f"9665{i:08d}" for i in range(60)], "message": "Hi"}
        resp = await app.post("/api/messages/send-bulk", json={**body, "account": "cloud"})
        job_id = resp.json()["data"]["jobId"]
        job = await wait_for_job(app.get, job_id, timeout=60)
        account = (await app.get("/api/accounts/cloud")).json()["data"]
        s: Services = app.app.state.services
        cooling = await s.accounts.cooling_until("cloud")
    assert [code for _, code in fake.rejected].count(130429) >= 3  # there was a burst
    assert job["recipients"]["sent"] == 60 and job["recipients"]["failed"] == 0
    assert Counter(m.to for m in fake.sent).most_common(1)[0][1] == 1
    assert account["paused"] is False
    assert cooling <= s.clock.now_ms()  # no rest: 130429 is not a ban signal
