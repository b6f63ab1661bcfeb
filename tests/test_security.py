"""Security regression tests (issue 12), one or more per defect; each failed on the old code.

Threat model (docs/security.md says the same at more length):

- **Anyone who can reach the port** may call ``GET /health``, ``/docs``, ``/openapi.json``,
  the dashboard's login form and the WhatsApp webhook. Their bodies are read only up to
  PREAUTH_MAX_BODY_BYTES (1 MB) and only as they are verified (signature, login key). They may
  never make the service read a body for a route they are not allowed to call, stall the event
  loop, make unbounded work, or guess keys faster than AUTH_FAIL_LIMIT per window per address.
- **An admin API key** (``X-API-Key``) may call every ``/api`` route, bodies up to
  MAX_BODY_BYTES. It may never read the process's secrets (only ``WA_TOKEN_*`` variables can be
  named as a token), change the Graph API's URL path, read another caller's idempotent
  responses, reach bullmq's own keys through a job id, or see a server stack trace.
- **A read-only key** may read everything an admin can and change nothing; on the dashboard
  it sees no stack traces.
- **A dashboard session** is a login with one of those keys; changes need an admin session and
  its CSRF token. A session ends on the server at logout: a copied cookie stops working.
- **Meta** (the holder of WHATSAPP_APP_SECRET) may post statuses and replies; a malformed
  delivery is refused (400), a partly bad one keeps its good items.

This module: phone parsing on every input path (2), token variables and the Graph URL (3),
idempotent responses (4), job ids (6), CSV report cells, server-sent events, the callback
guard (10) and stack traces (11). ``test_security_limits.py`` holds bounded work (1, 4, 7);
``test_security_auth.py`` sessions and the failed-attempt limit (8, 9); ``test_fuzz.py`` the
OpenAPI schema under schemathesis's full default checks (10).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import (
    HEADERS,
    KEY,
    App,
    cloud_settings,
    make_settings,
    recipients,
    wait_for_job,
)
from tests.dashboard_support import READ_KEY, Browser, text_of
from tests.fake_cloud_api import PHONE_NUMBER_ID, TOKEN, FakeCloudApi, signed
from waqtor.config import Settings
from waqtor.dashboard import live
from waqtor.domain.accounts import Account
from waqtor.domain.phones import PhoneError, normalise
from waqtor.providers.cloud_api import CloudApiProvider, ProviderConfigError, factory
from waqtor.sending import egress

KEY_B = "second-admin-key-0123456789abcdef"
ARABIC = "٩٦٦٥٠١٢٣٤٥٦٧"  # 966501234567 in Arabic-Indic digits (category Nd)
PERSIAN = "۹۶۶۵۰۱۲۳۴۵۶۸"  # 966501234568, Extended Arabic-Indic (Nd)
FULLWIDTH = "".join(chr(0xFF10 + int(d)) for d in "966501234569")  # full-width digits (Nd)
NOT_DIGITS = ["²", "¹", "①", "9665012345²7"]  # category No: never digits of a phone


# ---------------------------------------------------------------- 2. phones, every path
@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.integers(), st.none(), st.booleans(), st.floats()))
@example("²")
@example("+966501234²67")
@example("¹٩٦٦")
@example(10**5000)
@example("966503333333@c.us")
def test_phone_parsing_raises_only_phone_errors(raw: Any) -> None:
    try:
        phone = normalise(raw)
    except PhoneError:
        return
    assert re.fullmatch(r"\+[0-9]{7,15}", phone), phone


def test_unicode_decimal_digits_are_digits_and_other_numerals_are_not() -> None:
    assert normalise(ARABIC) == "+966501234567"
    assert normalise("+" + ARABIC) == "+966501234567"
    assert normalise(PERSIAN) == "+966501234568"
    assert normalise(FULLWIDTH) == "+966501234569"
    assert normalise("९६६५०१२३४५६७") == "+966501234567"  # Devanagari
    for bad in NOT_DIGITS:
        with pytest.raises(PhoneError, match="not a decimal digit"):
            normalise(bad)
    with pytest.raises(PhoneError):
        normalise(10**5000)  # a JSON integer too long to print


def test_whatsapp_chat_suffixes_are_phones() -> None:
    assert normalise("966503333333@c.us") == "+966503333333"
    assert normalise("966503333333@s.whatsapp.net") == "+966503333333"
    assert normalise("+966 50 333 3333@C.US") == "+966503333333"
    with pytest.raises(PhoneError):
        normalise("966503333333@g.us")  # a group chat, not a phone


def _errors(data: dict[str, Any]) -> dict[int, str]:
    return {row["index"]: row["error"] for row in data["invalid"]}


MIXED = ["²", ARABIC, "¹", "966503333333@c.us", "①", PERSIAN]
MIXED_BAD = {0, 2, 4}


async def test_bad_phones_are_item_errors_on_json_send_preview_and_dry_run(app: App) -> None:
    # The last one is a JSON integer of 4,000 digits.
    raw = json.dumps({"recipients": [*MIXED, 0], "message": "Hi {phone}"})
    raw = raw.replace(", 0]", ", " + "9" * 4000 + "]")
    for path in (
        "/api/messages/preview",
        "/api/messages/send-bulk?dryRun=true",
        "/api/messages/send-bulk",
    ):
        resp = await app.client.post(
            path, content=raw, headers={**HEADERS, "Content-Type": "application/json"}
        )
        assert resp.status_code == 200, (path, resp.text)
        data = resp.json()["data"]
        assert set(_errors(data)) == {*MIXED_BAD, 6}, (path, data["invalid"])
        assert data["total"] == 3, path
    sent = {r["normalizedPhone"] for r in resp.json()["data"]["results"]}
    assert sent == {"+966501234567", "+966503333333", "+966501234568"}


async def test_bad_phones_are_row_errors_in_csv_and_multipart(app: App) -> None:
    text = "phone,name\n" + "".join(f"{p},N{i}\n" for i, p in enumerate(MIXED))
    plain = await app.client.post(
        "/api/messages/preview",
        params={"message": "Hi {name}"},
        content=text.encode(),
        headers={**HEADERS, "Content-Type": "text/csv"},
    )
    assert plain.status_code == 200, plain.text
    assert set(_errors(plain.json()["data"])) == MIXED_BAD
    upload = await app.client.post(
        "/api/messages/send-bulk?dryRun=true",
        files={"file": ("list.csv", text.encode(), "text/csv")},
        data={"message": "Hi {name}"},
        headers=HEADERS,
    )
    assert upload.status_code == 200, upload.text
    data = upload.json()["data"]
    assert set(_errors(data)) == MIXED_BAD and data["total"] == 3


async def test_bad_phones_are_item_errors_in_suppressions(app: App) -> None:
    add = await app.post("/api/accounts/default/suppressions", json={"phones": [*MIXED, 5, None]})
    assert add.status_code == 200, add.text
    data = add.json()["data"]
    assert data["added"] == 3 and {row["index"] for row in data["invalid"]} == {*MIXED_BAD, 6, 7}
    for bad in NOT_DIGITS:
        gone = await app.client.delete(f"/api/accounts/default/suppressions/{bad}", headers=HEADERS)
        assert gone.status_code == 404 and gone.json()["error"].startswith("phone:")
    for spelled in (ARABIC, "966503333333@c.us"):
        gone = await app.client.delete(
            f"/api/accounts/default/suppressions/{spelled}", headers=HEADERS
        )
        assert gone.status_code == 200, gone.text


async def test_bad_phones_are_row_errors_in_dashboard_compose(app: App) -> None:
    async with Browser(app) as b:
        await b.login()
        page = await b.post(
            "/admin/queues/compose/preview",
            {"recipients": "\n".join(MIXED), "message": "Hi", "account": "default"},
        )
    assert page.status_code == 200, page.text[:500]
    shown = text_of(page.text)
    assert "Will be sent 3 Invalid 3" in shown and "is not a decimal digit" in shown


@pytest.fixture
async def cloud(
    redis_url: str, tmp_path: Path, fake: FakeCloudApi, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[App]:
    monkeypatch.setenv("WA_TOKEN_SEC", TOKEN)
    async with App(cloud_settings(redis_url, tmp_path, fake)) as running:
        made = await running.post(
            "/api/accounts",
            json={
                "name": "cloud",
                "provider": "cloud_api",
                "phoneNumberId": PHONE_NUMBER_ID,
                "accessTokenEnv": "WA_TOKEN_SEC",
            },
        )
        assert made.status_code == 201, made.text
        yield running


def _inbound(*messages: dict[str, Any]) -> dict[str, Any]:
    value = {"metadata": {"phone_number_id": PHONE_NUMBER_ID}, "messages": list(messages)}
    return {"object": "whatsapp_business_account", "entry": [{"changes": [{"value": value}]}]}


async def test_one_bad_webhook_sender_never_loses_the_others_opt_out(cloud: App) -> None:
    stop = {"type": "text", "text": {"body": "STOP"}}
    payload = _inbound(
        {"from": "²", **stop}, {"from": ARABIC, **stop}, {"from": "966503333333@c.us", **stop}
    )
    body, headers = signed(payload)
    resp = await cloud.client.post("/webhooks/whatsapp", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["optOuts"] == 2 and resp.json()["data"]["invalid"] == 1
    listed = await cloud.get("/api/accounts/cloud/suppressions")
    assert set(listed.json()["data"]["phones"]) == {"+966501234567", "+966503333333"}


# ---------------------------------------------------------------- 3. secrets and the Graph URL
@pytest.mark.parametrize(
    "field, value",
    [
        ("accessTokenEnv", "SESSION_SECRET"),
        ("accessTokenEnv", "CALLBACK_SECRET"),
        ("accessTokenEnv", "DATABASE_PASSWORD"),
        ("accessTokenEnv", "WA_TOKEN_"),
        ("phoneNumberId", "../../leak?x="),
        ("phoneNumberId", "1234/../../me"),
        ("phoneNumberId", "12 34"),
    ],
)
async def test_an_admin_key_cannot_name_a_secret_or_bend_the_graph_url(
    app: App, field: str, value: str
) -> None:
    good = {"provider": "cloud_api", "phoneNumberId": "106540352242922"}
    good["accessTokenEnv"] = "WA_TOKEN_SALES"
    created = await app.post("/api/accounts", json={"name": "c1", **good, field: value})
    assert created.status_code == 400 and created.json()["error"].startswith(field), created.text
    assert (await app.post("/api/accounts", json={"name": "c2", **good})).status_code == 201
    patched = await app.client.patch("/api/accounts/c2", json={field: value}, headers=HEADERS)
    assert patched.status_code == 400 and patched.json()["error"].startswith(field)


async def test_token_variables_outside_the_prefix_need_the_allow_list(
    redis_url: str, tmp_path: Path
) -> None:
    settings_ = make_settings(redis_url, tmp_path, cloud_api_token_envs="META_TOKEN,SESSION_SECRET")
    async with App(settings_) as app:
        base = {"provider": "cloud_api", "phoneNumberId": "106540352242922"}
        listed = await app.post(
            "/api/accounts", json={"name": "a", **base, "accessTokenEnv": "META_TOKEN"}
        )
        assert listed.status_code == 201
        # The service's own secrets stay out even when listed.
        own = await app.post(
            "/api/accounts", json={"name": "b", **base, "accessTokenEnv": "SESSION_SECRET"}
        )
        assert own.status_code == 400


async def test_an_account_stored_under_old_rules_never_sends_a_secret(
    app: App, r: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An account written before the rules (straight into Redis) still lists, so it can be
    fixed, but the Cloud API refuses to read its variable or build its URL."""
    monkeypatch.setenv("SESSION_SECRET", "s" * 40)
    old = {"name": "old", "provider": "cloud_api", "phoneNumberId": "../../leak?x="}
    await r.hset("wq:accounts", "old", json.dumps({**old, "accessTokenEnv": "SESSION_SECRET"}))
    listed = await app.get("/api/accounts/old")
    assert listed.status_code == 200
    build = factory(Settings(cloud_api_base_url="http://127.0.0.1:9"))
    account = Account.model_validate(
        {**old, "accessTokenEnv": "SESSION_SECRET"}, context={"stored": True}
    )
    with pytest.raises(ProviderConfigError, match="phoneNumberId"):
        build(account)
    digits = account.model_copy(update={"phoneNumberId": "106540352242922"})
    with pytest.raises(ProviderConfigError, match="accessTokenEnv"):
        build(digits)


def test_the_graph_url_path_is_fixed_by_the_provider() -> None:
    with pytest.raises(ProviderConfigError):
        CloudApiProvider(
            phone_number_id="../../leak?x=",
            token=None,  # type: ignore[arg-type]
            base_url="http://127.0.0.1:9",
            version="v23.0",
            messages_per_second=80,
            max_in_flight=1,
            max_connections=1,
            timeout_s=1,
        )


# ---------------------------------------------------------------- 5. Idempotency-Key
@pytest.fixture
async def two_keys(redis_url: str, tmp_path: Path) -> AsyncIterator[App]:
    async with App(make_settings(redis_url, tmp_path)) as running:
        running.app.state.api_keys = [KEY, KEY_B]  # two admin keys, two callers
        yield running


async def test_idempotent_responses_belong_to_the_api_key(two_keys: App) -> None:
    app = two_keys
    await app.post("/api/queue/pause")
    mine = {"recipients": recipients(12), "message": "Hi {name}"}
    first = await app.client.post(
        "/api/messages/send-bulk", json=mine, headers={**HEADERS, "Idempotency-Key": "order-1"}
    )
    assert first.status_code == 200
    theirs = {"recipients": recipients(12, 500), "message": "Hi {name}"}
    other = await app.client.post(
        "/api/messages/send-bulk",
        json=theirs,
        headers={"X-API-Key": KEY_B, "Idempotency-Key": "order-1"},
    )
    assert other.status_code == 200 and "Idempotent-Replayed" not in other.headers
    assert other.json()["data"]["jobId"] != first.json()["data"]["jobId"]
    assert "96650000000" not in other.text  # none of the first caller's numbers


async def test_a_reused_key_with_another_request_is_422_never_a_replay(app: App) -> None:
    await app.post("/api/queue/pause")
    headers = {**HEADERS, "Idempotency-Key": "k-1"}
    body = {"recipients": recipients(12), "message": "Hi {name}", "account": "default"}
    first = await app.client.post("/api/messages/send-bulk", json=body, headers=headers)
    assert first.status_code == 200
    # The same request with its keys in another order is the same request: replayed.
    same = json.dumps(dict(reversed(list(body.items()))))
    again = await app.client.post(
        "/api/messages/send-bulk",
        content=same,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    for changed in (
        {**body, "recipients": recipients(12, 40)},
        {**body, "message": "Hello {name}"},
    ):
        resp = await app.client.post("/api/messages/send-bulk", json=changed, headers=headers)
        assert resp.status_code == 422 and "Idempotency-Key" in resp.json()["error"]
        assert "jobId" not in resp.text
    other_query = await app.client.post(
        "/api/messages/send-bulk?message=x", json=body, headers=headers
    )
    assert other_query.status_code == 422
    csv_headers = {**HEADERS, "Idempotency-Key": "k-csv", "Content-Type": "text/csv"}
    text = b"phone\n" + b"".join(f"9665{i:08d}\n".encode() for i in range(12))
    params = {"message": "Hi"}
    one = await app.client.post(
        "/api/messages/send-bulk", params=params, content=text, headers=csv_headers
    )
    two = await app.client.post(
        "/api/messages/send-bulk", params=params, content=text, headers=csv_headers
    )
    assert (
        one.status_code == two.status_code == 200 and two.headers["Idempotent-Replayed"] == "true"
    )
    three = await app.client.post(
        "/api/messages/send-bulk",
        params=params,
        content=text + b"966500000099\n",
        headers=csv_headers,
    )
    assert three.status_code == 422


# ---------------------------------------------------------------- 6. job ids naming bullmq keys
BULL_NAMES = ["completed", "id", "events", "meta", "stalled-check", "wait", "delayed", "marker"]


async def test_job_ids_that_name_bullmq_keys_are_unknown(app: App) -> None:
    resp = await app.post(
        "/api/messages/send-bulk", json={"recipients": recipients(12), "message": "Hi"}
    )
    await wait_for_job(app.get, resp.json()["data"]["jobId"])  # bullmq's keys now exist
    cid = resp.json()["data"]["jobId"]
    for name in [*BULL_NAMES, f"{cid}:lock", f"{cid}:logs", "x:r"]:
        for method, path in [
            ("GET", f"/api/queue/jobs/{name}"),
            ("GET", f"/api/queue/jobs/{name}/recipients"),
            ("GET", f"/api/queue/jobs/{name}/report.csv"),
            ("POST", f"/api/queue/jobs/{name}/pause"),
            ("POST", f"/api/queue/jobs/{name}/retry"),
            ("DELETE", f"/api/queue/jobs/{name}"),
        ]:
            got = await app.client.request(method, path, headers=HEADERS)
            assert got.status_code == 404, (method, path, got.status_code, got.text[:200])
            assert got.json()["success"] is False
    async with Browser(app) as b:
        await b.login()
        for name in BULL_NAMES:
            page = await b.get(f"/admin/queues/jobs/{name}")
            assert page.status_code == 404, (name, page.status_code)
            search = await b.get("/admin/queues/jobs", params={"q": name})
            assert search.status_code == 200  # no redirect to a phantom campaign
            act = await b.post(f"/admin/queues/jobs/{name}/pause")
            assert act.status_code == 404, (name, act.status_code)


# ---------------------------------------------------------------- 10. smaller ones
async def test_report_cells_never_run_as_spreadsheet_formulas(app: App) -> None:
    formulas = [
        '=HYPERLINK("http://evil","x")',
        "+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
    ]
    people = [{"phone": f"96650000000{i + 1}", "v": f} for i, f in enumerate(formulas)]
    people += [{**p, "v": "plain"} for p in recipients(6, 100)]
    resp = await app.post("/api/messages/send-bulk", json={"recipients": people, "message": "{v}"})
    cid = resp.json()["data"]["jobId"]
    await wait_for_job(app.get, cid)
    report = await app.get(f"/api/queue/jobs/{cid}/report.csv")
    rows = list(csv.DictReader(io.StringIO(report.text)))
    assert len(rows) == 12
    for row in rows:
        for name, cell in row.items():
            if cell and cell[0] in "=+-@\t\r":
                assert re.fullmatch(r"[+-]?[0-9]+(\.[0-9]+)?", cell), (name, cell)
    texts = [row["text"] for row in rows[:6]]
    assert all(t.startswith("'") for t in texts), texts
    assert rows[0]["phone"] == "+966500000001"  # a number stays a number


def _sse_events(stream: str) -> list[dict[str, str]]:
    """Parse an event stream as a browser does (WHATWG: CRLF, CR and LF all end a line)."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in re.split(r"\r\n|\r|\n", stream):
        if line == "":
            if current:
                events.append(current)
            current = {}
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        current[name] = current[name] + "\n" + value if name in current else value
    return events


def test_a_carriage_return_in_a_message_cannot_forge_an_event() -> None:
    html = "<p>Hi\revent: alert\rdata: forged</p>\r\nline two\nline three"
    events = _sse_events(live.encode({"log": html}))
    assert events == [
        {"event": "log", "data": "<p>Hi\nevent: alert\ndata: forged</p>\nline two\nline three"}
    ]


@pytest.mark.parametrize(
    "host",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::a9fe:a9fe",  # local-use NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "::127.0.0.1",  # IPv4-compatible
        "::a00:1",
        "::ffff:10.0.0.1",  # IPv4-mapped (already refused)
    ],
)
async def test_the_callback_guard_refuses_ipv6_forms_of_private_addresses(host: str) -> None:
    with pytest.raises(egress.Refused):
        await egress.resolve(f"http://[{host}]:8080/hook", allow_private=False)


async def test_the_callback_guard_still_allows_public_embedded_addresses() -> None:
    found = await egress.resolve("http://[64:ff9b::808:808]/hook", allow_private=False)
    assert "64:ff9b::808:808" in found.url


async def test_the_openapi_schema_has_no_dangling_reference(app: App) -> None:
    schema = (await app.client.get("/openapi.json")).json()
    refs = set(re.findall(r'"\$ref":\s*"([^"]+)"', json.dumps(schema)))
    assert refs, "the schema refers to its components"
    for ref in refs:
        node: Any = schema
        assert ref.startswith("#/"), ref
        for part in ref[2:].split("/"):
            assert part in node, f"{ref} does not resolve"
            node = node[part]


# ---------------------------------------------------------------- 11. stack traces
async def test_a_failed_job_keeps_a_short_reason_and_no_trace_in_bullmq(
    redis_url: str, tmp_path: Path, r: Any
) -> None:
    async with App(make_settings(redis_url, tmp_path, max_retries=0)) as app:
        await app.client.put("/api/simulator/faults", json={"unavailable": 1.0}, headers=HEADERS)
        resp = await app.post(
            "/api/messages/send-bulk", json={"recipients": recipients(12), "message": "Hi"}
        )
        cid = resp.json()["data"]["jobId"]
        job = await wait_for_job(app.get, cid, ("failed",))
        raw = await r.hgetall(f"bull:waqtor:{cid}")
        assert json.loads(raw["stacktrace"]) == []
        reason = raw["failedReason"]
        assert reason == job["failedReason"] and "provider unavailable" in reason
        assert len(reason) <= 300 and "Traceback" not in reason and ".py" not in reason
        kept = await r.get(f"wq:c:{cid}:trace")
        assert kept and "Traceback" in kept and len(kept) <= 16_000
        async with Browser(app) as admin:
            await admin.login()
            page = await admin.get(f"/admin/queues/jobs/{cid}")
            assert 'data-testid="job-trace"' in page.text and "Traceback" in page.text
        app.app.state.readonly_keys = [READ_KEY]
        async with Browser(app) as reader:
            await reader.login(READ_KEY)
            page = await reader.get(f"/admin/queues/jobs/{cid}")
            assert page.status_code == 200 and "Traceback" not in page.text
        await asyncio.sleep(0)
