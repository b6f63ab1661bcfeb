"""Campaigns through WAHA and Evolution API, end to end: the fake gateways on loopback, the
service on a real port (the fakes POST their webhooks to it), real Redis.

The number check, typing inside the gap, a session that drops mid-campaign (the account
waits or is paused; resume continues at the exact recipient), acks out of order and repeated,
opt-out replies and reply counts, a timeout settled by the ack, ban signals (463), and
webhooks that refuse anything unsigned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.conftest import App, make_settings, wait_for_job
from tests.dashboard_support import Browser, text_of
from tests.fake_gateways import API_KEY, WEBHOOK_KEY, FakeEvolution, FakeGateway, FakeWaha
from waqtor.sending import worker

GW = "gw"
NUMBERS = [f"+9665010000{i:02d}" for i in range(10)]


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeGateway]]:
    found: dict[str, FakeGateway] = {
        "waha": FakeWaha("default").start(),
        "evolution": FakeEvolution("shop").start(),
    }
    yield found
    for one in found.values():
        one.stop()


@pytest.fixture(params=["waha", "evolution"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake(kind: str, fakes: dict[str, FakeGateway], monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    one = fakes[kind]
    one.reset()
    monkeypatch.setenv(f"GATEWAY_{GW.upper()}_URL", one.url)
    monkeypatch.setenv(f"GATEWAY_{GW.upper()}_KEY", API_KEY)
    monkeypatch.setenv(f"GATEWAY_{GW.upper()}_WEBHOOK_KEY", WEBHOOK_KEY)
    # A session that does not work is checked again this soon (15 s in production).
    monkeypatch.setattr(worker, "ACCOUNT_RECHECK_MS", 300)
    return one


class Served:
    """The service on 127.0.0.1 and a free port, for the fakes' webhooks."""

    def __init__(self, app: App) -> None:
        config = uvicorn.Config(
            app.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> str:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task


def settings(redis_url: str, tmp_path: Path, **kw: Any) -> Any:
    values: dict[str, Any] = {
        "gateway_min_gap_ms": 150,
        "gateway_typing_min_ms": 60,
        "gateway_typing_ms_per_char": 0,
        "gateway_typing_max_ms": 2000,
        "gateway_session_check_ms": 100,
        "provider_timeout_ms": 1500,
        **kw,
    }
    return make_settings(redis_url, tmp_path, **values)


def account(kind: str, fake: FakeGateway, **extra: Any) -> dict[str, Any]:
    return {
        "name": "web",
        "provider": kind,
        "gateway": GW,
        "session": fake.session,
        "warmup": False,
        # Tests share one Redis: the new-contact cap has its own test.
        "newContactsDailyCap": 100_000,
        **extra,
    }


@pytest.fixture
async def app(redis_url: str, tmp_path: Path, fake: FakeGateway, kind: str) -> AsyncIterator[App]:
    async with App(settings(redis_url, tmp_path)) as running:
        async with Served(running) as url:
            fake.webhook_url = f"{url}/webhooks/{kind}/{GW}"
            resp = await running.post("/api/accounts", json=account(kind, fake))
            assert resp.status_code == 201, resp.text
            yield running


async def send(app: App, phones: list[str], text: str = "Hello {name}") -> str:
    resp = await app.post(
        "/api/messages/send-bulk",
        json={
            "recipients": [{"phone": p, "name": f"n{i}"} for i, p in enumerate(phones)],
            "message": text,
            "account": "web",
        },
    )
    assert resp.status_code == 200, resp.text
    job_id: str = resp.json()["data"]["jobId"]
    return job_id


async def rows(app: App, job_id: str) -> dict[str, dict[str, Any]]:
    resp = await app.get(f"/api/queue/jobs/{job_id}/recipients", params={"limit": 1000})
    return {r["phone"]: r for r in resp.json()["data"]["recipients"]}


async def until(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_number_check_typing_inside_the_gap_and_acks(
    app: App, fake: FakeGateway, kind: str
) -> None:
    fake.not_on_whatsapp.add(NUMBERS[1].lstrip("+"))
    fake.auto_acks = [1, 2]  # server, then device
    await app.client.patch(
        "/api/accounts/web",
        json={"delayMs": 600, "jitter": 0},
        headers={"X-API-Key": app.settings.api_key or ""},
    )
    phones = NUMBERS[:5]
    job = await send(app, phones)
    await wait_for_job(app.get, job, timeout=40)
    got = await rows(app, job)
    # The unknown number is checked, failed without a send, never sent.
    assert got[NUMBERS[1]]["status"] == "failed"
    assert "not_on_whatsapp" in str(got[NUMBERS[1]])
    assert fake.sent_to(NUMBERS[1]) == []
    sent = [p for p in phones if p != NUMBERS[1]]
    assert [s.phone for s in fake.sent] == [p.lstrip("+") for p in sent]
    # Acks moved each to delivered.
    await until(
        lambda: _all_status(app, job, sent, "delivered"),
    )
    # Typing before each text, inside the gap: shown after the previous message went out,
    # and the messages are a gap apart, not a gap plus the typing.
    for earlier, later in zip(fake.sent, fake.sent[1:], strict=False):
        starts = [t.at for t in fake.typing if t.phone == later.phone and t.action == "start"]
        assert starts and earlier.at < starts[0] < later.at
    if kind == "evolution":
        assert all(s.body.get("delay") == 60 for s in fake.sent)  # typing by Evolution's delay
    gaps = [b.at - a.at for a, b in zip(fake.sent, fake.sent[1:], strict=False)]
    assert min(gaps) > 0.5, gaps  # the gap holds (600 ms, less timer slack)
    # Typing not added on top: the least gap (the one a loaded machine delayed least) stays
    # within the gap plus timer slack.
    assert min(gaps) < 0.6 + 0.06 / 2 + 0.1, gaps
    # The number check is cached: a second campaign does not ask again.
    checks = len(fake.checks)
    job2 = await send(app, [NUMBERS[1]])
    await wait_for_job(app.get, job2, timeout=20)
    assert len(fake.checks) == checks
    assert fake.sent_to(NUMBERS[1]) == []


async def _all_status(app: App, job: str, phones: list[str], status: str) -> bool:
    got = await rows(app, job)
    return all(got[p]["status"] == status for p in phones)


async def test_acks_out_of_order_and_repeated(app: App, fake: FakeGateway) -> None:
    job = await send(app, [NUMBERS[0]])
    await wait_for_job(app.get, job, timeout=20)
    (sent,) = fake.sent
    for ack in (3, 2, 1, 3, 2):  # read first, then older ones and repeats
        assert await fake.ack(sent, ack) == 200
    got = await rows(app, job)
    assert got[NUMBERS[0]]["status"] == "read"
    # Every later ack was stale or a duplicate; an error after read changes nothing.
    assert await fake.ack(sent, 5 if isinstance(fake, FakeEvolution) else -1) == 200
    assert (await rows(app, job))[NUMBERS[0]]["status"] == "read"
    # The same message's acks, replayed: still read.
    assert await fake.ack(sent, 1) == 200
    assert (await rows(app, job))[NUMBERS[0]]["status"] == "read"


async def test_opt_out_reply_suppresses_and_replies_are_counted(
    app: App, fake: FakeGateway
) -> None:
    job = await send(app, NUMBERS[:2])
    await wait_for_job(app.get, job, timeout=20)
    assert await fake.inbound(NUMBERS[0], "Thanks!") == 200
    assert await fake.inbound(NUMBERS[1], " stop ") == 200
    assert await fake.inbound(NUMBERS[0], "again") == 200  # one replier counts once
    sup = (await app.get("/api/accounts/web/suppressions")).json()["data"]["phones"]
    assert sup == [NUMBERS[1]]
    view = (await app.get(f"/api/queue/jobs/{job}")).json()["data"]
    assert view["replies"] == 2 and view["replyRate"] == 1.0
    async with Browser(app) as b:  # the campaign page shows it too
        assert (await b.login()).status_code == 303
        page = text_of((await b.get(f"/admin/queues/jobs/{job}")).text)
        assert "2 recipient(s) replied: a reply rate of 100 %" in page
    # Suppressed: a new campaign is refused the number that opted out.
    resp = await app.post(
        "/api/messages/send-bulk",
        json={"recipients": [{"phone": NUMBERS[1]}], "message": "Hi", "account": "web"},
    )
    assert resp.status_code == 400 and resp.json()["suppressed"][0]["phone"] == NUMBERS[1]
    assert len(fake.sent_to(NUMBERS[1])) == 1


async def test_qr_needed_waits_and_recovers_by_itself(
    app: App, fake: FakeGateway, kind: str
) -> None:
    await fake.set_state("SCAN_QR_CODE" if kind == "waha" else "connecting", hook=False)
    job = await send(app, NUMBERS[:2])

    async def waiting() -> Any:
        data = (await app.get(f"/api/queue/jobs/{job}")).json()["data"]
        return data if "session" in str(data.get("waitingFor") or "") else None

    data = await until(waiting)
    assert "scan the QR code" in data["waitingFor"] or "connecting" in data["waitingFor"]
    acct = (await app.get("/api/accounts/web")).json()["data"]
    assert acct["paused"] is False and acct["sessionState"]["working"] is False
    health = (await app.get("/api/queue/health")).json()
    assert "web" in str(health) and "session" in str(health)
    assert fake.sent == []
    await fake.set_state(fake.working_state, hook=False)
    await wait_for_job(app.get, job, timeout=30)
    assert [s.phone for s in fake.sent] == [p.lstrip("+") for p in NUMBERS[:2]]


async def test_session_drop_mid_campaign_pauses_and_resume_continues_exactly(
    app: App, fake: FakeGateway, kind: str
) -> None:
    phones = NUMBERS[:6]
    job = await send(app, phones)
    await until(lambda: _sent_at_least(fake, 2))
    dropped = "FAILED" if kind == "waha" else "close"
    assert await fake.set_state(dropped) == 200  # the session webhook: mid-campaign

    async def paused() -> Any:
        data = (await app.get("/api/accounts/web")).json()["data"]
        return data if data["paused"] else None

    acct = await until(paused)
    reason = acct["pausedReason"]
    assert reason.startswith("breaker:") and (dropped in reason or "LOGGED_OUT" in reason)
    await asyncio.sleep(0.5)
    before = len(fake.sent)
    got = await rows(app, job)
    assert not any(r["status"] == "failed" for r in got.values())  # nothing lost
    # Resuming stays manual: the session is back, the account still waits for an operator.
    await fake.set_state(fake.working_state)
    await asyncio.sleep(0.6)
    assert len(fake.sent) == before
    assert (await app.post("/api/accounts/web/resume")).status_code == 200
    await wait_for_job(app.get, job, timeout=40)
    # Every recipient exactly once, in order: resume continued at the exact recipient.
    assert [s.phone for s in fake.sent] == [p.lstrip("+") for p in phones]


async def _sent_at_least(fake: FakeGateway, n: int) -> bool:
    return len(fake.sent) >= n


async def test_a_timeout_is_unknown_until_the_ack_settles_it(app: App, fake: FakeGateway) -> None:
    fake.faults[NUMBERS[0].lstrip("+")] = "hang"
    fake.hang_s = 2.5  # past PROVIDER_TIMEOUT_MS; the message did go out
    fake.auto_acks = [1, 2]
    job = await send(app, NUMBERS[:1])
    await wait_for_job(app.get, job, timeout=20)

    async def settled() -> Any:
        return (await rows(app, job))[NUMBERS[0]]["status"] == "delivered"

    await until(settled)
    assert (await rows(app, job))[NUMBERS[0]]["messageId"] == fake.sent[0].message_id
    assert len(fake.sent) == 1  # never sent again


async def test_ban_signal_463_rests_the_account(app: App, fake: FakeGateway, kind: str) -> None:
    fake.faults[NUMBERS[0].lstrip("+")] = "463"
    job = await send(app, NUMBERS[:1])

    async def cooling() -> Any:
        data = (await app.get("/api/accounts/web")).json()["data"]
        return data if data["today"]["coolingUntilMs"] else None

    acct = await until(cooling)
    assert acct["today"]["coolingUntilMs"] > time.time() * 1000
    got = (await rows(app, job))[NUMBERS[0]]
    if kind == "waha":  # HTTP 500 "server returned error 463": not retried as transient
        assert got["status"] == "retry"
        assert len(fake.sent) == 0
    else:  # accepted, then messages.update ERROR with messageStubParameters ["463"]
        await until(lambda: _status_is(app, job, NUMBERS[0], "failed"))


async def _status_is(app: App, job: str, phone: str, status: str) -> bool:
    found: str = (await rows(app, job))[phone]["status"]
    return found == status


async def test_webhooks_refuse_unsigned_and_unconfigured(
    app: App, fake: FakeGateway, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"/webhooks/{kind}/{GW}"
    payload = fake.inbound_payload("966501000009", "STOP")
    if kind == "evolution":
        payload["apikey"] = "wrong-key"
        resp = await app.client.post(path, json=payload)
    else:
        resp = await app.client.post(path, json=payload, headers={"X-Webhook-Hmac": "00" * 64})
    assert resp.status_code == 401
    monkeypatch.delenv(f"GATEWAY_{GW.upper()}_WEBHOOK_KEY")
    resp = await app.client.post(path, json=payload)
    assert resp.status_code == 404 and "WEBHOOK_KEY" in resp.text
    assert (await app.get("/api/accounts/web/suppressions")).json()["data"]["phones"] == []


async def test_accounts_api_refuses_an_unconfigured_gateway(app: App, fake: FakeGateway) -> None:
    resp = await app.post(
        "/api/accounts", json={"name": "x", "provider": "waha", "gateway": "nowhere"}
    )
    assert resp.status_code == 400 and "GATEWAY_NOWHERE_URL" in resp.text
    resp = await app.post("/api/accounts", json={"name": "y", "provider": "evolution"})
    assert resp.status_code in (400, 422) and "gateway" in resp.text
    # The API never takes a URL or a key for a gateway.
    resp = await app.post(
        "/api/accounts",
        json={"name": "z", "provider": "waha", "gateway": GW, "url": "http://evil.example"},
    )
    assert resp.status_code in (400, 422)
    resp = await app.post(
        "/api/accounts", json={"name": "fresh", "provider": "waha", "gateway": GW}
    )
    assert resp.status_code == 201, resp.text
    got = resp.json()["data"]
    # A new gateway account: tier new, WAHA Core's only session, 10 new contacts a day.
    assert got["tier"] == "new" and got["session"] == "default"
    assert got["today"]["newContactsCap"] == 10


async def test_the_new_contact_cap_holds_and_known_contacts_pass(
    app: App, fake: FakeGateway
) -> None:
    resp = await app.client.patch(
        "/api/accounts/web",
        json={"newContactsDailyCap": 2},
        headers={"X-API-Key": app.settings.api_key or ""},
    )
    assert resp.status_code == 200, resp.text
    first = await send(app, ["+966501000020", "+966501000021"])
    await wait_for_job(app.get, first, timeout=20)
    # Two new contacts used; a known one still goes, a third new one waits for the cap.
    job = await send(app, ["+966501000020", "+966501000022"])

    async def capped() -> Any:
        data = (await app.get(f"/api/queue/jobs/{job}")).json()["data"]
        return data if "new-contact" in str(data.get("waitingFor")) else None

    data = await until(capped)
    assert data["recipients"]["sent"] == 1 and data["recipients"]["retry"] == 1
    assert len(fake.sent_to("+966501000020")) == 2
    assert fake.sent_to("+966501000022") == []
    acct = (await app.get("/api/accounts/web")).json()["data"]
    assert acct["today"]["newContacts"] == 2 and acct["today"]["newContactsCap"] == 2
