"""Several sends of one campaign in flight (Cloud API accounts with no delay), and the shared
messages-per-second throttle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.fake_cloud_api import PHONE_NUMBER_ID, TOKEN
from waqtor.concurrency import Pipeline, throttle, width
from waqtor.domain.accounts import Account
from waqtor.sender import Step
from waqtor.services import Services, build


@pytest.fixture
async def services(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Services]:
    monkeypatch.setenv("WA_TOKEN_PIPE", TOKEN)
    s = build(
        make_settings(redis_url, tmp_path, cloud_api_concurrency=4, cloud_api_mps=100),
        redis_url,
    )
    await s.accounts.put(
        Account(
            name="cloud",
            tier=None,
            delayMs=0,
            provider="cloud_api",
            phoneNumberId=PHONE_NUMBER_ID,
            accessTokenEnv="WA_TOKEN_PIPE",
        )
    )
    await s.accounts.put(Account(name="slow", tier=None, delayMs=0))  # the simulator
    yield s
    await s.close()


class Steps:
    """A stand-in for Sender.step: ``n`` sends of 50 ms, then ``end``."""

    def __init__(self, n: int, end: str = "done", fail_at: int = -1) -> None:
        self.n, self.end, self.fail_at = n, end, fail_at
        self.started = 0
        self.running = 0
        self.peak = 0
        self.log: list[str] = []

    async def __call__(self) -> Step:
        index = self.started
        self.started += 1
        if index >= self.n:
            return Step(self.end)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(0.05)
            if index == self.fail_at:
                raise RuntimeError("redis went away")
            return Step("sent", index)
        finally:
            self.running -= 1
            self.log.append(f"end {index}")


async def drain(pipe: Pipeline) -> list[Step]:
    out = []
    while True:
        step = await pipe.next()
        out.append(step)
        if step.kind not in ("sent", "failed", "retry", "unknown"):
            return out


async def test_width_is_the_providers_for_delay_free_accounts_only(services: Services) -> None:
    assert await width(services, "cloud") == 4
    assert await width(services, "slow") == 1  # the simulator: one at a time, as before
    cloud = await services.accounts.get("cloud")
    assert cloud is not None
    await services.accounts.put(cloud.model_copy(update={"delayMs": 500}))
    assert await width(services, "cloud") == 1  # a paced account stays one at a time


async def test_pipeline_overlaps_sends_and_ends_with_nothing_in_flight(services: Services) -> None:
    steps = Steps(12)
    pipe = Pipeline(services, "cloud", steps)
    started = time.monotonic()
    out = await drain(pipe)
    elapsed = time.monotonic() - started
    assert sorted(s.index for s in out[:-1]) == list(range(12))
    assert out[-1].kind == "done" and pipe.in_flight == 0 and steps.running == 0
    assert steps.peak == 4
    assert elapsed < 12 * 0.05 / 2  # overlapped, not one after another


async def test_a_one_wide_pipeline_is_the_plain_loop(services: Services) -> None:
    steps = Steps(3, end="paused")
    out = await drain(Pipeline(services, "slow", steps))
    assert [s.kind for s in out] == ["sent", "sent", "sent", "paused"]
    assert steps.peak == 1


async def test_an_error_surfaces_after_the_others_finish(services: Services) -> None:
    steps = Steps(8, fail_at=1)
    pipe = Pipeline(services, "cloud", steps)
    seen: list[Step] = []
    with pytest.raises(RuntimeError, match="redis went away"):
        while True:
            seen.append(await pipe.next())
    assert steps.running == 0  # nothing left in flight behind the error
    assert all(s.kind == "sent" for s in seen)


async def test_throttle_spaces_requests_across_callers(services: Services) -> None:
    cloud = await services.accounts.get("cloud")
    assert cloud is not None
    provider = services.providers.get(cloud)  # 100 messages a second: 10 ms apart
    started = time.monotonic()
    await asyncio.gather(*(throttle(services, "cloud", provider) for _ in range(31)))
    elapsed = time.monotonic() - started
    assert 0.28 <= elapsed < 0.6
