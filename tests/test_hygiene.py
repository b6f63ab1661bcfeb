"""CSV intake, dry run, suppression lists and the identical-text warning."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from tests.conftest import HEADERS, App, make_settings, recipients, wait_for_job


async def outbox(app: App) -> list[dict[str, Any]]:
    resp = await app.get("/api/simulator/messages", params={"limit": 10000})
    rows: list[dict[str, Any]] = resp.json()["data"]["messages"]
    return rows


def csv_text(n: int, sep: str = ",", bom: bool = False, extra_rows: str = "") -> bytes:
    lines = [f"phone{sep}name{sep}code"]
    lines += [f"9665{i:08d}{sep}Name {i}{sep}C{i}" for i in range(n)]
    text = "\r\n".join(lines) + "\r\n" + extra_rows
    return (("\ufeff" if bom else "") + text).encode()


async def post_csv(app: App, body: bytes, **params: Any) -> Any:
    return await app.client.post(
        "/api/messages/send-bulk",
        content=body,
        params=params,
        headers={**HEADERS, "Content-Type": "text/csv"},
    )


async def test_csv_with_bom_semicolons_and_bad_rows(app: App) -> None:
    bad = 'notaphone;X;Y\r\n;;\r\n"9665 0000 0099";"Quoted; name";Q\r\n966500000001;dup;D\r\n'
    resp = await post_csv(
        app, csv_text(12, ";", bom=True, extra_rows=bad), message="{name}: {code}"
    )
    body = resp.json()
    assert resp.status_code == 200, body
    data = body["data"]
    assert body["mode"] == "queue" and data["total"] == 13
    errors = {i["index"]: i["error"] for i in data["invalid"]}
    assert errors[12] == "not a valid phone number"
    assert errors[14].startswith("duplicate of recipient 1")
    await wait_for_job(app.get, data["jobId"])
    texts = {r["phone"]: r["text"] for r in await outbox(app)}
    assert texts["+966500000000"] == "Name 0: C0"
    assert texts["+966500000099"] == "Quoted; name: Q"


async def test_csv_multipart_upload(app: App) -> None:
    files = {"file": ("list.csv", csv_text(3), "text/csv")}
    resp = await app.client.post(
        "/api/messages/send-bulk",
        files=files,
        data={"message": "Hi {name}"},
        headers=HEADERS,
    )
    data = resp.json()["data"]
    assert resp.json()["mode"] == "instant" and data["successful"] == 3


async def test_csv_errors_are_400_with_a_reason(app: App) -> None:
    no_phone = await post_csv(app, b"name,code\nA,B\n", message="x")
    assert no_phone.status_code == 400 and "phone" in no_phone.json()["error"]
    latin1 = await post_csv(
        app, "phone,name\n966501234567,Jos\xe9\n".encode("latin-1"), message="x"
    )
    assert latin1.status_code == 400 and "UTF-8" in latin1.json()["error"]
    empty = await post_csv(app, b"", message="x")
    assert empty.status_code == 400 and empty.json()["error"].startswith("csv")
    wrong_type = await app.client.post(
        "/api/messages/send-bulk", content=b"x", headers={**HEADERS, "Content-Type": "text/xml"}
    )
    assert wrong_type.status_code == 415


async def test_dry_run_sends_and_stores_nothing(app: App, r: Any) -> None:
    await app.post("/api/accounts/default/suppressions", json={"phones": ["966500000002"]})
    before = set(await r.keys("*"))
    payload = {
        "recipients": [*recipients(4), "123", {"phone": "966500000001"}, {"phone": "966507654321"}],
        "message": "Hello {name}",
    }
    resp = await app.post("/api/messages/send-bulk", params={"dryRun": "true"}, json=payload)
    data = resp.json()["data"]
    assert resp.json()["mode"] == "preview" and data["dryRun"] is True
    assert data["total"] == 4  # 4 named + 1 default-name number, less the suppressed one
    assert data["suppressedCount"] == 1 and data["suppressed"][0]["phone"] == "+966500000002"
    assert data["duplicates"] == 1
    assert {i["index"] for i in data["invalid"]} == {4, 5}
    assert data["samples"][0] == {"index": 0, "phone": "+966500000000", "text": "Hello Person 0"}
    assert data["schedule"]["default"]["recipients"] == 4
    assert data["schedule"]["default"]["estimatedTime"].startswith("~")
    same = await app.post("/api/messages/preview", json=payload)
    assert same.json()["data"]["total"] == 4
    assert set(await r.keys("*")) == before
    assert (await outbox(app)) == []


async def test_suppressed_numbers_are_never_sent(app: App) -> None:
    added = await app.post(
        "/api/accounts/default/suppressions", json={"phones": ["+966 50 000 0003", "bad"]}
    )
    assert added.json()["data"] == {
        "added": 1,
        "invalid": [{"index": 1, "phone": "bad", "error": "not a valid phone number"}],
    }
    resp = await app.post(
        "/api/messages/send-bulk", json={"recipients": recipients(12), "message": "Hi"}
    )
    data = resp.json()["data"]
    assert data["total"] == 11 and data["suppressedCount"] == 1
    job_id = data["jobId"]
    # Opting out after the campaign was queued still stops the message.
    await app.post("/api/queue/pause")
    await app.post("/api/accounts/default/suppressions", json={"phones": ["966500000011"]})
    await app.post("/api/queue/resume")
    job = await wait_for_job(app.get, job_id)
    assert job["recipients"]["sent"] == 10 and job["recipients"]["suppressed"] == 1
    phones = {r["phone"] for r in await outbox(app)}
    assert "+966500000003" not in phones and "+966500000011" not in phones
    listing = (await app.get("/api/accounts/default/suppressions")).json()["data"]
    assert listing["total"] == 2
    gone = await app.client.delete(
        "/api/accounts/default/suppressions/966500000003", headers=HEADERS
    )
    assert gone.status_code == 200
    again = await app.client.delete(
        "/api/accounts/default/suppressions/966500000003", headers=HEADERS
    )
    assert again.status_code == 404


async def test_identical_text_warning(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path, identical_text_warn=5)) as app:
        same = await app.post(
            "/api/messages/send-bulk", json={"recipients": recipients(11), "message": "Sale!"}
        )
        assert "identical text" in same.json()["data"]["warnings"][0]
        varied = await app.post(
            "/api/messages/send-bulk",
            json={"recipients": recipients(11, 100), "message": "Sale for {name}!"},
        )
        assert varied.json()["data"]["warnings"] == []


async def test_csv_of_many_rows_streams(app: App) -> None:
    await app.post("/api/queue/pause")  # keep them queued; only the intake is under test
    resp = await post_csv(app, csv_text(20_000), message="Hi {name}")
    data = resp.json()["data"]
    assert data["total"] == 20_000 and data["invalid"] == []
    counts = Counter(r["status"] for r in (await app.get("/api/queue/jobs")).json()["data"]["jobs"])
    assert counts["paused"] == 1
    await asyncio.sleep(0)
