"""WhatsApp Web built in (``"provider": "web"``), end to end through the API and a worker, with
our adapter faked (``tests/fake_web.py``): pairing by QR and by code, a paced campaign with the
number check and typing, receipts, opt-outs, ban signals, the relay to the session's holder,
removal. Plus one smoke test of the real neonize client, offline."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HEADERS, App, make_settings, wait_for_job
from tests.fake_web import FakeWebClient, pair_file, sent_log
from waqtor.providers.base import (
    AmbiguousError,
    BanSignalError,
    OutgoingMessage,
    PermanentError,
    RateLimitedError,
    UnavailableError,
)
from waqtor.providers.web import hub as hub_module
from waqtor.providers.web.adapter import (
    Inbound,
    LoggedOut,
    Receipt,
    StreamReplaced,
    TemporaryBan,
)
from waqtor.providers.web.provider import WebProvider
from waqtor.runtime.services import build

GAP_MS = 300
WEB = {
    "web_min_gap_ms": GAP_MS,
    "web_lease_ms": 1500,
    "provider_timeout_ms": 3000,
    "instant_threshold": 0,  # campaigns go through the queue and a worker
}


@pytest.fixture(autouse=True)
def fake_neonize(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeWebClient.reset()
    monkeypatch.setattr(hub_module, "neonize_factory", lambda: FakeWebClient)


@pytest.fixture
async def web_app(redis_url: str, tmp_path: Path) -> AsyncIterator[App]:
    async with App(make_settings(redis_url, tmp_path, **WEB)) as running:
        yield running


async def until(check: Callable[[], Any], timeout: float = 10, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}")


def session_dir(app: App) -> Path:
    return app.settings.data_dir / "web"


async def web_state(app: App, name: str) -> dict[str, Any]:
    resp = await app.get(f"/api/accounts/{name}/web")
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


async def paired_account(app: App, name: str = "w1") -> None:
    pair_file(session_dir(app) / f"{name}.db")
    resp = await app.post("/api/accounts", json={"name": name, "provider": "web", "delayMs": 0})
    assert resp.status_code == 201, resp.text

    async def connected() -> bool:
        return bool((await web_state(app, name))["state"] == "connected")

    await until(connected, what="the paired session to connect")


async def test_pairing_by_qr_code_then_the_session_persists(web_app: App) -> None:
    app = web_app
    assert (await app.post("/api/accounts", json={"name": "w1", "provider": "web"})).status_code
    # Not paired and nobody asked: no process connects it.
    await asyncio.sleep(0.7)
    assert (await web_state(app, "w1"))["state"] == "unpaired"
    assert (await app.post("/api/accounts/w1/web/pair", json={})).status_code == 202

    async def qr() -> str:
        return str((await web_state(app, "w1"))["qr"])

    first = await until(qr, what="a QR code")
    assert first.startswith("2@fake-w1-")
    state = await web_state(app, "w1")
    assert state["state"] == "pairing" and state["holder"]
    FakeWebClient.live["w1"].rotate_qr()  # WhatsApp rotates the code: the state follows
    await until(lambda: _differs(app, first), what="the rotated QR code")
    db = session_dir(app) / "w1.db"
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(db.parent).st_mode) == 0o700
    FakeWebClient.live["w1"].scan(me="966511112222")

    async def connected() -> dict[str, Any] | None:
        got = await web_state(app, "w1")
        return got if got["state"] == "connected" else None

    state = await until(connected, what="connected")
    assert state["me"] == "966511112222" and state["qr"] == ""


async def _differs(app: App, first: str) -> bool:
    return (await web_state(app, "w1"))["qr"] not in ("", first)


async def test_pairing_by_code_for_a_phone_number(web_app: App) -> None:
    app = web_app
    await app.post("/api/accounts", json={"name": "w2", "provider": "web"})
    bad = await app.post("/api/accounts/w2/web/pair", json={"phone": "12ab"})
    assert bad.status_code == 400 and "phone" in bad.text
    other = await app.post("/api/accounts", json={"name": "sim"})
    assert other.status_code == 201
    assert (await app.post("/api/accounts/sim/web/pair", json={})).status_code == 409
    assert (await app.post("/api/accounts/w2/web/pair", json={"phone": "+966501234567"})).is_success

    async def code() -> str:
        return str((await web_state(app, "w2"))["pairCode"])

    assert await until(code, what="a pairing code") == "WQTR-4567"


async def test_a_paced_campaign_checks_numbers_and_types_first(web_app: App) -> None:
    app = web_app
    await paired_account(app)
    FakeWebClient.absent.add("966500000002")
    phones = ["966500000001", "966500000002", "966500000003", "966500000004"]
    resp = await app.post(
        "/api/messages/send-bulk",
        json={
            "account": "w1",
            "recipients": [
                {"phone": p, "message": f"Hello number {i}"} for i, p in enumerate(phones)
            ],
        },
    )
    assert resp.status_code in (200, 201, 202), resp.text
    assert "jobId" in resp.json()["data"], resp.text
    job_id = resp.json()["data"]["jobId"]
    job = await wait_for_job(app.get, job_id, timeout=30)
    counts = job["recipients"]
    assert counts["sent"] == 3 and counts["failed"] == 1, counts
    sent = sent_log(session_dir(app))
    assert sorted(m["phone"] for m in sent) == ["966500000001", "966500000003", "966500000004"]
    # Typing before each text, and the texts at least the gap apart (typing inside it).
    typed = [t for t in FakeWebClient.typing_log if t[2]]
    assert [t[1] for t in typed] == [m["phone"] for m in sent]
    starts = [t[3] for t in typed]
    assert all(b - a >= GAP_MS / 1000 * 0.9 for a, b in itertools.pairwise(starts))
    # The number check is cached: asked once per number.
    cached = await app.app.state.services.web.store.cached_numbers(
        "w1", ["+966500000002", "+966500000001"], 0
    )
    assert cached == {"+966500000002": False, "+966500000001": True}
    failed = await app.get(f"/api/queue/jobs/{job_id}/recipients", params={"status": "failed"})
    assert "not_on_whatsapp" in failed.text


async def test_receipts_settle_delivered_and_read_and_opt_outs_suppress(web_app: App) -> None:
    app = web_app
    await paired_account(app)
    resp = await app.post(
        "/api/messages/send-bulk",
        json={"account": "w1", "recipients": [{"phone": "966500000001", "message": "Hi"}]},
    )
    job_id = resp.json()["data"]["jobId"]
    await wait_for_job(app.get, job_id)
    (msg,) = sent_log(session_dir(app))
    client = FakeWebClient.live["w1"]
    client.emit(Receipt("966500000001", (msg["id"],), "delivered"))
    client.emit(Receipt("966500000001", (msg["id"],), "read"))
    client.emit(Receipt("966500000001", (msg["id"],), "delivered"))  # late, out of order

    async def read() -> bool:
        job = (await app.get(f"/api/queue/jobs/{job_id}")).json()["data"]
        return bool(job["recipients"].get("read") == 1)

    await until(read, what="the read receipt applied")
    client.emit(Inbound("966500000001", "thanks, see you", "in-0"))

    async def replied() -> bool:
        job = (await app.get(f"/api/queue/jobs/{job_id}")).json()["data"]
        return bool(job.get("replies") == 1)

    await until(replied, what="the reply counted for the campaign")
    client.emit(Inbound("966500000001", "  Stop! ", "in-1"))

    async def suppressed() -> bool:
        listing = (await app.get("/api/accounts/w1/suppressions")).text
        return "966500000001" in listing

    await until(suppressed, what="the opt-out")


@pytest.mark.parametrize(
    ("event", "state", "words"),
    [
        (LoggedOut("LOGGED_OUT"), "logged_out", "logged out"),
        (TemporaryBan("SEND_TO_TOO_MANY_PEOPLE", 3600), "banned", "until"),
        (StreamReplaced(), "replaced", "replaced"),
    ],
)
async def test_ban_signals_pause_the_account_and_never_reconnect(
    web_app: App, event: Any, state: str, words: str
) -> None:
    app = web_app
    await paired_account(app)
    built = FakeWebClient.built
    FakeWebClient.live["w1"].emit(event)

    async def paused() -> dict[str, Any] | None:
        account = (await app.get("/api/accounts/w1")).json()["data"]
        return account if account["paused"] else None

    account = await until(paused, what="the account paused")
    assert words in account["pausedReason"]
    got = await web_state(app, "w1")
    assert got["state"] == state and words in got["detail"]
    if state == "banned":
        assert got["untilMs"] > time.time() * 1000 + 3_000_000
    # Several lease rounds later: not reconnected, and the lease is free for an operator.
    await asyncio.sleep(1.2)
    assert FakeWebClient.built == built
    assert (await web_state(app, "w1"))["holder"] is None


async def test_send_errors_map_to_the_contract(web_app: App) -> None:
    app = web_app
    await paired_account(app)
    s = app.app.state.services
    provider = s.providers.get(await s.accounts.get("w1"))
    assert isinstance(provider, WebProvider) and provider.capabilities.min_gap_ms == GAP_MS

    def msg(phone: str) -> OutgoingMessage:
        return OutgoingMessage("w1", "+" + phone, "Hello", "c1", "a1")

    FakeWebClient.faults.update(
        {"966500000011": "463", "966500000012": "ambiguous", "966500000013": "479"}
    )
    with pytest.raises(BanSignalError) as banned:
        await provider.send(msg("966500000011"))
    assert banned.value.code == "463"
    FakeWebClient.faults["966500000017"] = "429"
    with pytest.raises(RateLimitedError) as limited:
        await provider.send(msg("966500000017"))
    assert limited.value.retry_after_s >= 60
    with pytest.raises(AmbiguousError):
        await provider.send(msg("966500000012"))
    with pytest.raises(PermanentError):
        await provider.send(msg("966500000013"))
    FakeWebClient.absent.add("966500000014")
    with pytest.raises(PermanentError) as absent:
        await provider.send(msg("966500000014"))
    assert absent.value.code == "not_on_whatsapp"
    with pytest.raises(PermanentError):
        await provider.send(
            OutgoingMessage("w1", "+966500000015", "x", "c", "a", media={"type": "image"})
        )
    assert await provider.check_numbers(["+966500000014", "+966500000016"]) == {
        "+966500000014": False,
        "+966500000016": True,
    }
    assert (await provider.health()).ok


async def test_other_processes_send_through_the_holder(web_app: App, redis_url: str) -> None:
    app = web_app
    await paired_account(app)
    # Another process (its own Services, no sessions of its own) sends for w1.
    other = build(app.settings, redis_url)
    try:
        account = await other.accounts.get("w1")
        assert account is not None
        provider = other.providers.get(account)
        result = await provider.send(OutgoingMessage("w1", "+966500000021", "Hi", "c", "a"))
        sent = sent_log(session_dir(app))
        assert [m["id"] for m in sent] == [result.message_id]
        assert int(sent[0]["pid"]) == os.getpid()
        # Nobody holds an account: the request is withdrawn unsent, and never sent later.
        await app.post("/api/accounts", json={"name": "w9", "provider": "web"})
        lonely = other.providers.get(await other.accounts.get("w9"))  # type: ignore[arg-type]
        assert isinstance(lonely, WebProvider)
        lonely.timeout_s = 0.5
        with pytest.raises(UnavailableError) as down:
            await lonely.send(OutgoingMessage("w9", "+966500000022", "Hi", "c", "b"))
        assert "no running process" in down.value.reason
        assert await other.store.redis.llen(other.keys.web_requests("w9")) == 0
    finally:
        await other.close()


async def test_removing_a_web_account_unlinks_and_deletes_its_keys(web_app: App) -> None:
    app = web_app
    await paired_account(app)
    db = session_dir(app) / "w1.db"
    assert db.exists()
    resp = await app.client.delete("/api/accounts/w1", headers=HEADERS)
    assert resp.status_code == 200, resp.text
    await until(lambda: not db.exists(), what="the session database deleted")
    assert FakeWebClient.logged_out == ["w1"]  # the device was unlinked first
    assert (await app.get("/api/accounts/w1/web")).status_code == 404


def test_the_real_neonize_client_builds_offline(tmp_path: Path) -> None:
    """neonize's own client against a temporary SQLite database: events registered, JIDs
    built. It never connects (no test reaches WhatsApp)."""
    from neonize.events import EVENT_TO_INT, ConnectedEv, LoggedOutEv, ReceiptEv, TemporaryBanEv

    from waqtor.providers.web import neonize_client

    events: list[Any] = []
    client = neonize_client.NeonizeClient(tmp_path / "acct.db", events.append)
    registered = client.client.event.list_func
    for ev in (ConnectedEv, LoggedOutEv, ReceiptEv, TemporaryBanEv):
        assert EVENT_TO_INT[ev] in registered
    assert not (tmp_path / "acct.db").exists()  # built without touching the database
    jid = client.jid("966500000001")
    assert (jid.User, jid.Server) == ("966500000001", "s.whatsapp.net")
    assert neonize_client.classify_send_error("server returned error 463").code == "463"
    assert neonize_client.classify_send_error("websocket not connected").code == "not_connected"
    left = neonize_client.classify_send_error("context deadline exceeded")
    assert left.may_have_left
    # Whether a database holds a linked device is read offline, from whatsmeow's own table.
    db = tmp_path / "linked.db"
    assert not neonize_client.factory.has_session(db)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE whatsmeow_device (jid TEXT PRIMARY KEY)")
        assert not neonize_client.factory.has_session(db)
        conn.execute("INSERT INTO whatsmeow_device VALUES ('966500000001.0:3@s.whatsapp.net')")
        conn.commit()
    assert neonize_client.factory.has_session(db)
    assert events == []


async def test_a_receipt_settles_a_send_whose_outcome_was_never_recorded(web_app: App) -> None:
    """The message left but no answer came back (the request timed out, or the holder died
    before recording): the recipient is unknown, never sent again; WhatsApp's receipt for the
    message, matched by the account's latest attempt to that number, settles it."""
    app = web_app
    await paired_account(app)
    FakeWebClient.faults["966500000031"] = "ambiguous"
    resp = await app.post(
        "/api/messages/send-bulk",
        json={"account": "w1", "recipients": [{"phone": "966500000031", "message": "Hi"}]},
    )
    job_id = resp.json()["data"]["jobId"]
    job = await wait_for_job(app.get, job_id)
    assert job["recipients"]["unknown"] == 1, job["recipients"]
    (msg,) = sent_log(session_dir(app))  # it did go out, once
    FakeWebClient.live["w1"].emit(Receipt("966500000031", (msg["id"],), "delivered"))

    async def delivered() -> bool:
        counts = (await app.get(f"/api/queue/jobs/{job_id}")).json()["data"]["recipients"]
        return bool(counts["delivered"] == 1 and counts["unknown"] == 0)

    await until(delivered, what="the unknown settled by its receipt")
    assert len(sent_log(session_dir(app))) == 1


async def test_after_a_logout_the_operator_links_again_and_resumes(web_app: App) -> None:
    app = web_app
    await paired_account(app)
    view = (await app.get("/api/accounts/w1")).json()["data"]
    assert view["sessionState"]["state"] == "connected" and view["sessionState"]["working"]
    FakeWebClient.live["w1"].unlinked_by_phone()  # and WhatsApp says so:
    FakeWebClient.live["w1"].emit(LoggedOut("LOGGED_OUT"))

    async def logged_out() -> bool:
        return bool((await web_state(app, "w1"))["state"] == "logged_out")

    await until(logged_out, what="logged out")
    await asyncio.sleep(1.0)  # a few lease rounds: nobody reconnects by itself
    assert (await web_state(app, "w1"))["state"] == "logged_out"
    assert (await app.post("/api/accounts/w1/web/pair", json={})).status_code == 202

    async def qr() -> str:
        return str((await web_state(app, "w1"))["qr"])

    await until(qr, what="a new QR code")
    FakeWebClient.live["w1"].scan()

    async def connected() -> bool:
        return bool((await web_state(app, "w1"))["state"] == "connected")

    await until(connected, what="linked again")
    assert (await app.post("/api/accounts/w1/resume")).status_code == 200
    account = (await app.get("/api/accounts/w1")).json()["data"]
    assert not account["paused"] and account["sessionState"]["state"] == "connected"


async def test_without_the_web_extra_the_account_says_what_to_install(
    web_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    from waqtor.providers.web.adapter import MissingNeonize
    from waqtor.providers.web.neonize_client import INSTALL_HINT

    def missing() -> Any:
        raise MissingNeonize(INSTALL_HINT)

    monkeypatch.setattr(hub_module, "neonize_factory", missing)
    app = web_app
    await app.post("/api/accounts", json={"name": "w3", "provider": "web"})
    await app.post("/api/accounts/w3/web/pair", json={})

    async def stopped() -> dict[str, Any] | None:
        got = await web_state(app, "w3")
        return got if got["state"] == "stopped" else None

    got = await until(stopped, what="the stopped state")
    assert "pip install 'waqtor[web]'" in got["detail"] and "libmagic" in got["detail"]
    assert got["holder"] is None
    s = app.app.state.services
    provider = s.providers.get(await s.accounts.get("w3"))
    seen = await provider.session()
    assert not seen.working and "waqtor[web]" in seen.detail


async def test_a_session_lost_mid_campaign_pauses_and_resumes_at_the_exact_recipient(
    web_app: App,
) -> None:
    app = web_app
    await paired_account(app)
    phones = [f"9665000001{i:02d}" for i in range(8)]
    resp = await app.post(
        "/api/messages/send-bulk",
        json={"account": "w1", "recipients": [{"phone": p, "message": "Hi"} for p in phones]},
    )
    job_id = resp.json()["data"]["jobId"]
    await until(lambda: len(sent_log(session_dir(app))) >= 3, what="three sends")
    FakeWebClient.live["w1"].unlinked_by_phone()
    FakeWebClient.live["w1"].emit(LoggedOut("LOGGED_OUT"))

    async def paused() -> bool:
        return bool((await app.get("/api/accounts/w1")).json()["data"]["paused"])

    await until(paused, what="the account paused")
    await asyncio.sleep(1.0)
    job = (await app.get(f"/api/queue/jobs/{job_id}")).json()["data"]
    counts = job["recipients"]
    assert counts["failed"] == 0 and counts["unknown"] == 0, counts
    assert job["status"] != "completed"
    stopped_at = len(sent_log(session_dir(app)))
    assert stopped_at < len(phones)
    # The operator links the number again and resumes: the rest go, each exactly once.
    await app.post("/api/accounts/w1/web/pair", json={})
    await until(lambda: "w1" in FakeWebClient.live and FakeWebClient.live["w1"].qr_shown, what="QR")
    FakeWebClient.live["w1"].scan()

    async def connected() -> bool:
        return bool((await web_state(app, "w1"))["state"] == "connected")

    await until(connected, what="linked again")
    assert (await app.post("/api/accounts/w1/resume")).status_code == 200
    done = await wait_for_job(app.get, job_id, timeout=30)
    assert done["recipients"]["sent"] == len(phones), done["recipients"]
    sent = [m["phone"] for m in sent_log(session_dir(app))]
    assert sorted(sent) == sorted(phones)  # none lost, none twice


async def test_a_takeover_is_not_a_ban_signal(web_app: App) -> None:
    """This process's lease ran out and another took the account over: WhatsApp replaces our
    stream with theirs. That is not a ban: the account is not paused, the new holder's state
    stays."""
    app = web_app
    await paired_account(app)
    store = app.app.state.services.web.store
    await store.redis.set(store.keys.web_lease("w1"), "otherhost:1:abc", px=10_000)
    FakeWebClient.live["w1"].emit(StreamReplaced())
    await asyncio.sleep(0.5)
    account = (await app.get("/api/accounts/w1")).json()["data"]
    assert not account["paused"], account["pausedReason"]
    assert (await web_state(app, "w1"))["state"] != "replaced"


async def test_an_expired_qr_code_is_withdrawn(
    web_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "QR_STALE_MS", 300)
    app = web_app
    await app.post("/api/accounts", json={"name": "w4", "provider": "web"})
    await app.post("/api/accounts/w4/web/pair", json={})

    async def expired() -> dict[str, Any] | None:
        got = await web_state(app, "w4")
        return got if got["state"] == "unpaired" and "expired" in got["detail"] else None

    got = await until(expired, what="the QR code withdrawn")
    assert got["qr"] == "" and got["holder"] is None


async def test_one_process_holds_fifty_sessions(redis_url: str, tmp_path: Path) -> None:
    import threading

    from waqtor.config import Settings
    from waqtor.domain.accounts import Account

    settings = Settings(redis_url=redis_url, api_key="k" * 32, data_dir=tmp_path / "data")
    s = build(settings, redis_url)
    try:
        s.web._factory = FakeWebClient
        names = [f"many{i:02d}" for i in range(50)]
        for name in names:
            pair_file(s.web.db_path(name))
            await s.accounts.put(Account(name=name, provider="web"))
        threads = threading.active_count()
        await s.web.tick()
        assert sorted(s.web.sessions) == names
        await asyncio.wait_for(
            asyncio.gather(*(x.connected.wait() for x in s.web.sessions.values())), 10
        )
        sends = [
            s.providers.get(Account(name=n, provider="web")).send(
                OutgoingMessage(n, "+966500000099", "Hi", "c", f"a{n}")
            )
            for n in names
        ]
        ids = {r.message_id for r in await asyncio.gather(*sends)}
        assert len(ids) == 50
        # Short calls share one pool sized for WEB_MAX_SESSIONS, never a thread per call.
        assert threading.active_count() - threads <= settings.web_max_sessions + 4
        holders = {await s.web.store.holder(n) for n in names}
        assert holders == {s.web.holder_id}
    finally:
        await s.close()


def test_the_real_clients_events_become_ours(tmp_path: Path) -> None:
    """neonize's own dispatch (``Event.execute``, what the Go side calls with serialized
    events) fed WhatsApp-shaped events offline: each arrives in our types."""
    import ctypes

    from neonize.events import (
        EVENT_TO_INT,
        ConnectFailureEv,
        LoggedOutEv,
        MessageEv,
        ReceiptEv,
        StreamReplacedEv,
        TemporaryBanEv,
    )
    from neonize.proto import Neonize_pb2 as pb
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as E2EMessage

    from waqtor.providers.web import adapter, neonize_client

    events: list[Any] = []
    client = neonize_client.NeonizeClient(tmp_path / "acct.db", events.append)

    def complete(message: Any) -> Any:
        """Zero values for the required fields the test leaves out (neonize's protos are
        proto2, and the Go side always sends every field)."""
        for field in message.DESCRIPTOR.fields:
            if field.message_type is not None and not field.is_repeated:
                if field.is_required or message.HasField(field.name):
                    getattr(message, field.name).SetInParent()
                    complete(getattr(message, field.name))
            elif field.is_required and not message.HasField(field.name):
                setattr(message, field.name, field.default_value)
        return message

    def deliver(event: Any) -> None:
        raw = complete(event).SerializeToString()
        buf = ctypes.create_string_buffer(raw, len(raw))
        client.client.event.execute(0, ctypes.addressof(buf), len(raw), EVENT_TO_INT[type(event)])

    chat = pb.JID(User="966500000001", Server="s.whatsapp.net")
    source = pb.MessageSource(Chat=chat, Sender=chat, IsFromMe=False, IsGroup=False)
    deliver(
        ReceiptEv(MessageSource=source, MessageIDs=["3EB0A1"], Type=pb.Receipt.ReceiptType.READ)
    )
    deliver(LoggedOutEv(OnConnect=False, Reason=pb.ConnectFailureReason.LOGGED_OUT))
    deliver(TemporaryBanEv(Code=pb.TemporaryBan.SEND_TO_TOO_MANY_PEOPLE, Expire=3600))
    deliver(ConnectFailureEv(Reason=pb.ConnectFailureReason.TEMP_BANNED, Message="banned"))
    deliver(StreamReplacedEv())
    info = pb.MessageInfo(MessageSource=source, ID="in-1")
    deliver(MessageEv(Info=info, Message=E2EMessage(conversation="STOP")))
    client.client.event._qr(client.client, b"2@abc,def")
    assert events == [
        adapter.Receipt("966500000001", ("3EB0A1",), "read"),
        adapter.LoggedOut("LOGGED_OUT"),
        adapter.TemporaryBan("SEND_TO_TOO_MANY_PEOPLE", 3600),
        adapter.ConnectFailure("TEMP_BANNED", "banned", True),
        adapter.StreamReplaced(),
        adapter.Inbound("966500000001", "STOP", "in-1"),
        adapter.QrCode("2@abc,def"),
    ]


async def test_receipts_reach_the_status_callback(redis_url: str, tmp_path: Path) -> None:
    from tests.fake_cloud_api import Receiver

    receiver = Receiver().start()
    settings = make_settings(
        redis_url, tmp_path, callback_secret="callback-secret-0123456789abcdef", **WEB
    )
    try:
        async with App(settings) as app:
            await paired_account(app)
            resp = await app.post(
                "/api/messages/send-bulk",
                json={
                    "account": "w1",
                    "recipients": [{"phone": "966500000041", "message": "Hi"}],
                    "callbackUrl": receiver.url("/hook"),
                },
            )
            await wait_for_job(app.get, resp.json()["data"]["jobId"])
            (msg,) = sent_log(session_dir(app))
            FakeWebClient.live["w1"].emit(Receipt("966500000041", (msg["id"],), "delivered"))
            FakeWebClient.live["w1"].emit(Receipt("966500000041", (msg["id"],), "read"))

            def changes() -> list[tuple[str, str]]:
                bodies = [json.loads(r.body) for r in receiver.got]
                return [
                    (e["previousStatus"], e["status"])
                    for e in bodies
                    if e["event"] == "message.status"
                ]

            await until(lambda: len(changes()) >= 3, what="three status callbacks")
            assert sorted(changes()) == [
                ("delivered", "read"),
                ("sending", "sent"),
                ("sent", "delivered"),
            ]
    finally:
        receiver.stop()


async def test_moving_an_account_to_another_provider_keeps_its_session(web_app: App) -> None:
    app = web_app
    await paired_account(app)
    db = session_dir(app) / "w1.db"
    patch = await app.client.patch(
        "/api/accounts/w1", json={"provider": "simulator"}, headers=HEADERS
    )
    assert patch.status_code == 200, patch.text
    store = app.app.state.services.web.store

    async def released() -> bool:
        return await store.holder("w1") is None

    await until(released, what="the session closed")
    assert FakeWebClient.has_session(db)  # the keys stay: moving back needs no new pairing
