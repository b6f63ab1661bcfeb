"""The gateway providers' reading of each gateway's answers, and the webhook parsers, on the
shapes WAHA and Evolution API really send."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from waqtor.campaigns import gateway_webhooks as gw
from waqtor.config import Settings
from waqtor.providers.base import (
    BanSignalError,
    PermanentError,
    RateLimitedError,
    SessionDownError,
    TransientError,
    UnavailableError,
)
from waqtor.providers.evolution import EvolutionProvider
from waqtor.providers.gateway_env import Gateway, GatewayConfigError, gateway
from waqtor.providers.waha import WahaProvider, chat_id, message_id

GW = Gateway("main", "http://127.0.0.1:9")


def waha() -> WahaProvider:
    return WahaProvider(Settings(), GW, "default")


def evolution() -> EvolutionProvider:
    return EvolutionProvider(Settings(), GW, "shop")


def test_waha_errors_map_onto_the_classes() -> None:
    p = waha()
    ban = p.classify(
        500, {"statusCode": 500, "exception": {"message": "server returned error 463"}}
    )
    assert isinstance(ban, BanSignalError) and ban.code == "463"
    qr = p.classify(422, {"error": "Session status is not as expected", "status": "SCAN_QR_CODE"})
    assert isinstance(qr, SessionDownError) and not qr.needs_operator
    failed = p.classify(422, {"error": "Session status is not as expected", "status": "FAILED"})
    assert isinstance(failed, SessionDownError) and failed.needs_operator
    assert isinstance(p.classify(404, {"message": "Session not found"}), SessionDownError)
    assert isinstance(p.classify(429, {"message": "slow down"}), RateLimitedError)
    plain = p.classify(500, {"exception": {"message": "Evaluation failed"}})
    assert type(plain) is TransientError
    assert isinstance(p.classify(503, None), UnavailableError)
    assert isinstance(p.classify(400, {"message": ["chatId must be a string"]}), PermanentError)
    # A 5xx with a session in trouble is not a transient error either.
    assert isinstance(
        p.classify(500, {"exception": {"message": "not logged in"}}), SessionDownError
    )


def test_evolution_errors_map_onto_the_classes() -> None:
    p = evolution()
    missing = {
        "status": 400,
        "error": "Bad Request",
        "response": {
            "message": [
                {"jid": "966500000001@s.whatsapp.net", "exists": False, "number": "966500000001"}
            ]
        },
    }
    gone = p.classify(400, missing)
    assert isinstance(gone, PermanentError) and gone.code == "not_on_whatsapp"
    closed = {
        "status": 500,
        "error": "Internal Server Error",
        "response": {"message": "Error: Connection Closed"},
    }
    assert isinstance(p.classify(500, closed), SessionDownError)
    unknown = {
        "status": 404,
        "error": "Not Found",
        "response": {"message": ['The "shop" instance does not exist']},
    }
    assert isinstance(p.classify(404, unknown), SessionDownError)
    over = {"status": 500, "response": {"message": "rate-overlimit"}}
    assert isinstance(p.classify(500, over), BanSignalError)


def test_ids_and_chat_ids() -> None:
    assert chat_id("+966500000001") == "966500000001@c.us"
    webjs = {
        "id": {"fromMe": True, "remote": "x@c.us", "id": "ABC", "_serialized": "true_x@c.us_ABC"}
    }
    assert message_id(webjs) == "true_x@c.us_ABC"
    assert message_id({"id": "true_x@c.us_DEF"}) == "true_x@c.us_DEF"
    noweb = {"key": {"remoteJid": "x@s.whatsapp.net", "fromMe": True, "id": "GHI"}}
    assert message_id(noweb) == "true_x@s.whatsapp.net_GHI"


def test_gateway_env_is_the_only_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_MAIN_URL", "http://127.0.0.1:3000/")
    assert gateway("main").url == "http://127.0.0.1:3000"
    monkeypatch.setenv("GATEWAY_BAD_URL", "ftp://host")
    with pytest.raises(GatewayConfigError):
        gateway("bad")
    with pytest.raises(GatewayConfigError):
        gateway("../etc")
    assert "KEY" not in repr(gateway("main"))
    assert not Settings().token_env_allowed("GATEWAY_MAIN_KEY")


def test_waha_signature() -> None:
    body = b'{"event":"message.ack"}'
    good = hmac.new(b"k" * 20, body, hashlib.sha512).hexdigest()
    assert gw.waha_signature_ok("k" * 20, body, good, "sha512")
    assert gw.waha_signature_ok("k" * 20, body, good.upper(), None)
    assert not gw.waha_signature_ok("k" * 20, body, good, "sha256")
    assert not gw.waha_signature_ok("k" * 20, body + b" ", good, "sha512")
    assert not gw.waha_signature_ok("k" * 20, body, None, None)
    assert not gw.evolution_key_ok("secret", {"apikey": "other"})
    assert not gw.evolution_key_ok("secret", {"apikey": None})
    assert gw.evolution_key_ok("secret", {"apikey": "secret"})


def test_webhook_parsers_keep_only_our_own_acks_and_real_numbers() -> None:
    ack = {
        "event": "message.ack",
        "session": "default",
        "payload": {
            "id": "true_966500000001@c.us_A",
            "from": "966500000000@c.us",
            "to": "966500000001@c.us",
            "fromMe": True,
            "ack": -1,
            "ackName": "ERROR",
        },
    }
    session, events = gw.parse_waha(ack, 1)
    assert session == "default" and events.statuses[0][0].status == "failed"
    theirs = {**ack, "payload": {**ack["payload"], "fromMe": False}}
    assert gw.parse_waha(theirs, 1)[1].statuses == []
    group = {
        "event": "message",
        "session": "default",
        "payload": {"from": "1203630@g.us", "fromMe": False, "body": "STOP"},
    }
    assert gw.parse_waha(group, 1)[1].inbound == []
    with pytest.raises(gw.Malformed):
        gw.parse_waha({"event": "message.ack"}, 1)
    update = {
        "event": "messages.update",
        "instance": "shop",
        "data": {
            "keyId": "BAE5",
            "remoteJid": "966500000001@s.whatsapp.net",
            "fromMe": True,
            "status": "ERROR",
            "messageStubParameters": ["463"],
        },
    }
    instance, events = gw.parse_evolution(update, 1)
    assert instance == "shop"
    event, phone = events.statuses[0]
    assert (event.status, event.error_code, phone) == ("failed", "463", "+966500000001")
    upsert = {
        "event": "MESSAGES_UPSERT",
        "instance": "shop",
        "data": {
            "key": {"remoteJid": "966500000002@s.whatsapp.net", "fromMe": False, "id": "X"},
            "message": {"extendedTextMessage": {"text": "إلغاء"}},
        },
    }
    assert gw.parse_evolution(upsert, 1)[1].inbound == [("+966500000002", "إلغاء")]
    logout = {
        "event": "connection.update",
        "instance": "shop",
        "data": {"instance": "shop", "state": "close", "statusReason": 401},
    }
    events = gw.parse_evolution(logout, 1)[1]
    assert events.session == "close" and events.logged_out
