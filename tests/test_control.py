"""Per-campaign control: pause, resume, cancel, retry, promote, remove, resolve; reports."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import HEADERS, App, make_settings, recipients, wait_for_job


async def outbox(app: App) -> list[dict[str, Any]]:
    resp = await app.get("/api/simulator/messages", params={"limit": 10000})
    rows: list[dict[str, Any]] = resp.json()["data"]["messages"]
    return rows


async def send(app: App, n: int, start: int = 0) -> str:
    resp = await app.post(
        "/api/messages/send-bulk",
        json={"recipients": recipients(n, start), "message": "Hello {name}"},
    )
    assert resp.status_code == 200, resp.text
    job_id: str = resp.json()["data"]["jobId"]
    return job_id


async def faults(app: App, **body: Any) -> None:
    resp = await app.client.put("/api/simulator/faults", json=body, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    await asyncio.sleep(0.25)  # every process's simulator re-reads its switches within 0.2 s


async def sent_for(app: App, job_id: str) -> int:
    return sum(1 for r in await outbox(app) if r["jobId"] == job_id)


async def wait_until(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_pause_one_campaign_others_carry_on_and_resume_is_exact(
    redis_url: str, tmp_path: Path
) -> None:
    async with App(make_settings(redis_url, tmp_path, message_delay=20)) as app:
        first = await send(app, 40)
        second = await send(app, 40, start=1000)

        async def first_started() -> bool:
            return await sent_for(app, first) >= 3

        await wait_until(first_started)
        resp = await app.post(f"/api/queue/jobs/{first}/pause")
        assert resp.status_code == 200 and resp.json()["success"] is True
        await asyncio.sleep(0.2)
        frozen = await sent_for(app, first)
        job = (await app.get(f"/api/queue/jobs/{first}")).json()["data"]
        assert job["status"] == "paused"
        await wait_for_job(app.get, second)  # the other campaign finished meanwhile
        assert await sent_for(app, first) == frozen, "a paused campaign kept sending"
        assert (await app.post(f"/api/queue/jobs/{first}/resume")).status_code == 200
        done = await wait_for_job(app.get, first)
        assert done["recipients"]["sent"] == 40
        phones = [r["phone"] for r in await outbox(app) if r["jobId"] == first]
        assert len(phones) == 40 and len(set(phones)) == 40
        # Resume continued at the exact recipient: request order is kept.
        assert phones == sorted(phones)


async def test_cancel_marks_unsent_recipients_canceled(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path, message_delay=20)) as app:
        job_id = await send(app, 60)

        async def started() -> bool:
            return await sent_for(app, job_id) >= 3

        await wait_until(started)
        resp = (await app.post(f"/api/queue/jobs/{job_id}/cancel")).json()
        assert resp["success"] is True and resp["data"]["changed"] > 0
        job = await wait_for_job(app.get, job_id, states=("canceled",))
        counts = job["recipients"]
        sent = await sent_for(app, job_id)
        assert counts["sent"] == sent and counts["canceled"] == 60 - sent
        assert counts["pending"] == 0 and counts["retry"] == 0
        await asyncio.sleep(0.2)
        assert await sent_for(app, job_id) == sent
        again = await app.post(f"/api/queue/jobs/{job_id}/cancel")
        assert again.status_code == 409


async def test_cancel_a_paused_campaign(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path, message_delay=20)) as app:
        job_id = await send(app, 30)
        await app.post(f"/api/queue/jobs/{job_id}/pause")
        await asyncio.sleep(0.3)
        await app.post(f"/api/queue/jobs/{job_id}/cancel")
        job = await wait_for_job(app.get, job_id, states=("canceled",))
        assert job["recipients"]["canceled"] + job["recipients"]["sent"] == 30


async def test_retry_failed_by_error_code(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path, max_retries=1, retry_backoff_ms=10)) as app:
        invalid, flaky = "+966500000001", "+966500000002"
        await faults(app, phones={invalid: "permanent", flaky: "transient"})
        job_id = await send(app, 12)
        job = await wait_for_job(app.get, job_id)
        assert job["recipients"]["failed"] == 2
        await faults(app, phones={invalid: "permanent"})  # the flaky one works now
        resp = await app.post(f"/api/queue/jobs/{job_id}/retry", json={"errorCodes": ["sim_503"]})
        assert resp.json()["data"]["changed"] == 1
        job = await wait_for_job(app.get, job_id)
        assert job["recipients"]["sent"] == 11 and job["recipients"]["failed"] == 1
        failed = (
            await app.get(f"/api/queue/jobs/{job_id}/recipients", params={"status": "failed"})
        ).json()["data"]
        assert [r["phone"] for r in failed["recipients"]] == [invalid]
        assert failed["recipients"][0]["errorCode"] == "sim_invalid_recipient"
        assert Counter(r["phone"] for r in await outbox(app))[flaky] == 1


async def test_remove_only_finished_jobs(app: App) -> None:
    await app.post("/api/queue/pause")
    job_id = await send(app, 11)
    running = await app.client.delete(f"/api/queue/jobs/{job_id}", headers=HEADERS)
    assert running.status_code == 409 and "cancel it first" in running.json()["error"]
    await app.post("/api/queue/resume")
    await wait_for_job(app.get, job_id)
    gone = await app.client.delete(f"/api/queue/jobs/{job_id}", headers=HEADERS)
    assert gone.status_code == 200
    assert (await app.get(f"/api/queue/jobs/{job_id}")).status_code == 404
    stats = (await app.get("/api/queue/stats")).json()["data"]
    assert stats["messages"]["sent"] == 0


async def test_unknown_job_controls_are_404(app: App) -> None:
    for action in ("pause", "resume", "cancel", "retry", "promote"):
        resp = await app.post(f"/api/queue/jobs/nope/{action}")
        assert resp.status_code == 404 and resp.json()["error"] == "Job not found"


async def test_promote_needs_a_delayed_job(app: App) -> None:
    job_id = await send(app, 11)
    await wait_for_job(app.get, job_id)
    resp = await app.post(f"/api/queue/jobs/{job_id}/promote")
    assert resp.status_code == 409


async def test_operator_resolves_unknown_recipients(app: App) -> None:
    lost_a, lost_b = "+966500000003", "+966500000004"
    await faults(app, phones={lost_a: "ambiguous", lost_b: "ambiguous"}, lookup=False)
    job_id = await send(app, 11)
    job = await wait_for_job(app.get, job_id)
    assert job["recipients"]["unknown"] == 2  # the provider cannot tell: left to an operator
    unknown = (
        await app.get(f"/api/queue/jobs/{job_id}/recipients", params={"status": "unknown"})
    ).json()["data"]["recipients"]
    by_phone = {r["phone"]: r["index"] for r in unknown}
    await faults(app)
    ok_sent = await app.post(
        f"/api/queue/jobs/{job_id}/recipients/{by_phone[lost_a]}/resolve",
        json={"action": "sent", "messageId": "wamid.manual"},
    )
    assert ok_sent.status_code == 200
    resend = await app.post(
        f"/api/queue/jobs/{job_id}/recipients/{by_phone[lost_b]}/resolve",
        json={"action": "resend"},
    )
    assert resend.status_code == 200
    job = await wait_for_job(app.get, job_id)
    assert job["recipients"]["sent"] == 11 and job["recipients"]["unknown"] == 0
    counts = Counter(r["phone"] for r in await outbox(app))
    assert counts[lost_a] == 1 and counts[lost_b] == 2  # re-sent on purpose, by the operator
    twice = await app.post(
        f"/api/queue/jobs/{job_id}/recipients/{by_phone[lost_a]}/resolve",
        json={"action": "sent"},
    )
    assert twice.status_code == 409


async def test_recipients_page_filter_and_search(app: App) -> None:
    bad = "+966500000007"
    await faults(app, phones={bad: "permanent"})
    job_id = await send(app, 30)
    await wait_for_job(app.get, job_id)
    page = (
        await app.get(f"/api/queue/jobs/{job_id}/recipients", params={"offset": 10, "limit": 5})
    ).json()["data"]
    assert page["total"] == 30 and [r["index"] for r in page["recipients"]] == list(range(10, 15))
    found = (
        await app.get(f"/api/queue/jobs/{job_id}/recipients", params={"search": "500000007"})
    ).json()["data"]
    assert [r["phone"] for r in found["recipients"]] == [bad]
    assert found["recipients"][0]["status"] == "failed"
    sent = (
        await app.get(f"/api/queue/jobs/{job_id}/recipients", params={"status": "sent"})
    ).json()["data"]
    assert sent["total"] == 29
    bad_status = await app.get(f"/api/queue/jobs/{job_id}/recipients", params={"status": "zzz"})
    assert bad_status.status_code == 400 and bad_status.json()["error"].startswith("status")


async def test_report_csv_streams_every_recipient(app: App) -> None:
    bad = "+966500000002"
    await faults(app, phones={bad: "permanent"})
    job_id = await send(app, 25)
    await wait_for_job(app.get, job_id)
    resp = await app.get(f"/api/queue/jobs/{job_id}/report.csv")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert len(rows) == 25
    sent_texts = {r["phone"]: r["text"] for r in await outbox(app)}
    for row in rows:
        if row["phone"] == bad:
            assert row["status"] == "failed" and row["errorCode"] == "sim_invalid_recipient"
            assert row["failedAt"]
        else:
            assert row["status"] == "sent" and row["messageId"].startswith("sim-")
            assert row["text"] == sent_texts[row["phone"]] and row["sentAt"]
    assert (await app.get("/api/queue/jobs/nope/report.csv")).status_code == 404


async def test_resume_keeps_send_at_and_a_canceled_campaign_stays_canceled(app: App) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    resp = await app.post(
        "/api/messages/send-bulk",
        json={"recipients": recipients(12), "message": "Hi", "sendAt": later},
    )
    job_id = resp.json()["data"]["jobId"]
    assert (await app.post(f"/api/queue/jobs/{job_id}/pause")).status_code == 200
    assert (await app.post(f"/api/queue/jobs/{job_id}/resume")).status_code == 200
    await asyncio.sleep(0.5)  # time enough for a worker to start it, were it promoted
    job = (await app.get(f"/api/queue/jobs/{job_id}")).json()["data"]
    assert job["status"] == "delayed" and await sent_for(app, job_id) == 0
    assert (await app.post(f"/api/queue/jobs/{job_id}/cancel")).status_code == 200
    for action in ("resume", "pause"):
        again = await app.post(f"/api/queue/jobs/{job_id}/{action}")
        assert again.status_code == 409 and "canceled" in again.json()["error"]


async def test_a_canceled_campaign_can_be_removed_while_the_queue_is_paused(app: App) -> None:
    await app.post("/api/queue/pause")
    try:
        job_id = await send(app, 15)
        assert (await app.post(f"/api/queue/jobs/{job_id}/cancel")).status_code == 200
        gone = await app.client.delete(f"/api/queue/jobs/{job_id}", headers=HEADERS)
        assert gone.status_code == 200, gone.text
        assert (await app.get(f"/api/queue/jobs/{job_id}")).status_code == 404
    finally:
        await app.post("/api/queue/resume")


async def test_an_instant_send_does_not_wait_a_gap_after_its_last_message(
    redis_url: str, tmp_path: Path
) -> None:
    async with App(make_settings(redis_url, tmp_path, message_delay=400)) as app:
        started = time.monotonic()
        resp = await app.post(
            "/api/messages/send-bulk", json={"recipients": recipients(3), "message": "Hi"}
        )
        elapsed = time.monotonic() - started
        assert resp.json()["mode"] == "instant"
        assert [r["status"] for r in resp.json()["data"]["results"]] == ["sent"] * 3
        # Two gaps between three messages; a third gap after the last would make it 1.2 s.
        assert 0.8 <= elapsed < 1.15, elapsed
