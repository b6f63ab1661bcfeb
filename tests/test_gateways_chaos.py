"""A real ``waqtor worker`` SIGKILLed mid-campaign while it sends through a fake gateway
(WAHA, Evolution API): another worker takes the job over, and the gateway never gets a number twice.

The send that was in flight when the worker died is ``unknown`` (a gateway cannot be asked by
our attempt id); if it reached the gateway, the gateway's ack settles it through the webhook.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import App, Proc, env_for, make_settings, wait_for_job
from tests.fake_gateways import API_KEY, WEBHOOK_KEY, FakeEvolution, FakeGateway, FakeWaha
from tests.test_gateways import Served, rows, send

GATEWAY_ENV = {
    "GATEWAY_GW_URL": "",
    "GATEWAY_GW_KEY": API_KEY,
    "GATEWAY_GW_WEBHOOK_KEY": WEBHOOK_KEY,
}
PACING = {
    "gateway_min_gap_ms": 120,
    "gateway_typing_min_ms": 30,
    "gateway_typing_ms_per_char": 0,
    "gateway_session_check_ms": 100,
    "provider_timeout_ms": 2000,
}


@pytest.mark.parametrize("kind", ["waha", "evolution"])
async def test_sigkill_mid_campaign_sends_no_number_twice(
    kind: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake: FakeGateway = FakeWaha("default") if kind == "waha" else FakeEvolution("shop")
    fake.start()
    workers: list[Proc] = []
    try:
        fake.latency_s = 0.05
        fake.auto_acks = [1, 2]
        env = {**GATEWAY_ENV, "GATEWAY_GW_URL": fake.url}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = make_settings(redis_url, tmp_path, **PACING)
        async with App(settings, run_worker=False) as app:
            async with Served(app) as url:
                fake.webhook_url = f"{url}/webhooks/{kind}/gw"
                resp = await app.post(
                    "/api/accounts",
                    json={
                        "name": "web",
                        "provider": kind,
                        "gateway": "gw",
                        "session": fake.session,
                        "warmup": False,
                        "newContactsDailyCap": 1000,
                        "hourlyCap": 1000,
                        "dailyCap": 1000,
                    },
                )
                assert resp.status_code == 201, resp.text
                phones = [f"+9665020000{i:02d}" for i in range(30)]
                job = await send(app, phones)
                worker_env = {**env_for(redis_url=redis_url, **PACING), **env}

                def worker(n: int) -> Proc:
                    proc = Proc(["worker"], worker_env, tmp_path / f"w{n}" / "worker.log")
                    workers.append(proc.start())
                    return proc

                first = worker(1)
                deadline = time.monotonic() + 30
                while len(fake.sent) < 10 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                assert len(fake.sent) >= 10, "the first worker did not get going"
                first.signal(signal.SIGKILL)
                first.wait(10)
                killed_at = len(fake.sent)
                worker(2)
                await wait_for_job(app.get, job, timeout=50)
                got = await rows(app, job)
                counts = Counter(s.phone for s in fake.sent)
                assert max(counts.values()) == 1, "a number reached the gateway twice"
                assert killed_at < len(fake.sent)  # the second worker carried on
                statuses = Counter(r["status"] for r in got.values())
                assert statuses["unknown"] <= 1, statuses
                assert statuses["failed"] == 0 and statuses["pending"] == 0
                # An unknown never reached the gateway (else the ack would have settled it).
                for phone, row in got.items():
                    if row["status"] == "unknown":
                        assert counts[phone.lstrip("+")] == 0
                    else:
                        assert counts[phone.lstrip("+")] == 1
    finally:
        for proc in workers:
            proc.stop()
        fake.stop()
