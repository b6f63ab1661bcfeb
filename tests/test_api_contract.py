"""Every route's success and error shapes, over HTTP against the ASGI app and real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import HEADERS, App, make_settings, recipients, wait_for_job


async def test_auth_missing_and_wrong_key(app: App) -> None:
    for method, path in [
        ("GET", "/api/queue/stats"),
        ("GET", "/api/queue/jobs"),
        ("GET", "/api/queue/jobs/x"),
        ("POST", "/api/queue/pause"),
        ("POST", "/api/queue/resume"),
        ("POST", "/api/queue/clean"),
        ("GET", "/api/queue/health"),
        ("POST", "/api/messages/send-bulk"),
        ("GET", "/api/simulator/messages"),
    ]:
        missing = await app.client.request(method, path)
        assert missing.status_code == 401, path
        assert missing.json()["success"] is False and "X-API-Key" in missing.json()["error"]
        wrong = await app.client.request(method, path, headers={"X-API-Key": "nope" * 5})
        assert wrong.status_code == 403, path
        assert wrong.json() == {"success": False, "error": "Invalid API key"}


async def test_key_in_query_string_is_not_accepted(app: App) -> None:
    resp = await app.client.get("/api/queue/stats", params={"api_key": HEADERS["X-API-Key"]})
    assert resp.status_code == 401


async def test_liveness_needs_no_key(app: App) -> None:
    resp = await app.client.get("/health")
    assert resp.status_code == 200 and resp.json()["status"] == "ok"


async def test_instant_mode_shape_and_outbox(app: App) -> None:
    resp = await app.post(
        "/api/messages/send-bulk",
        json={
            "recipients": [
                {"phone": "966501234567", "message": "Test 1 {name}", "name": "John"},
                {"phone": "966507654321", "message": "Test 2"},
            ]
        },
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["success"] is True and body["mode"] == "instant"
    data = body["data"]
    assert (data["total"], data["successful"], data["failed"]) == (2, 2, 0)
    assert data["pending"] == 0 and "jobId" not in data
    # The phone as the client sent it (WaQtor echoes it), and the form it was sent to.
    assert [r["phone"] for r in data["results"]] == ["966501234567", "966507654321"]
    assert [r["normalizedPhone"] for r in data["results"]] == ["+966501234567", "+966507654321"]
    assert all(r["success"] and r["messageId"].startswith("sim-") for r in data["results"])
    out = (await app.get("/api/simulator/messages")).json()["data"]
    assert out["total"] == 2
    assert {m["text"] for m in out["messages"]} == {"Test 1 John", "Test 2"}
    assert {m["messageId"] for m in out["messages"]} == {r["messageId"] for r in data["results"]}


async def test_bare_phone_strings_with_top_level_message(app: App) -> None:
    resp = await app.post(
        "/api/messages/send-bulk",
        json={"recipients": ["966501234567", "+966 50 765 4321"], "message": "Hi {name}"},
    )
    assert resp.json()["data"]["successful"] == 2
    texts = [
        m["text"] for m in (await app.get("/api/simulator/messages")).json()["data"]["messages"]
    ]
    assert texts == ["Hi Valued Customer", "Hi Valued Customer"]


async def test_threshold_split(app: App) -> None:
    at = await app.post(
        "/api/messages/send-bulk", json={"recipients": recipients(10), "message": "Hi {name}"}
    )
    assert at.json()["mode"] == "instant"
    above = await app.post(
        "/api/messages/send-bulk",
        json={"recipients": recipients(11, start=100), "message": "Hi {name}"},
    )
    body = above.json()
    assert body["mode"] == "queue"
    data = body["data"]
    assert data["total"] == 11 and data["status"] == "queued"
    assert data["jobId"] and data["estimatedTime"].startswith("~")
    await wait_for_job(app.get, data["jobId"])


async def test_invalid_and_duplicate_reported_by_index(app: App) -> None:
    resp = await app.post(
        "/api/messages/send-bulk",
        json={
            "recipients": ["966501234567", "00966501234567", "123", {"phone": "966507654321"}],
            "message": "Hello {name}",
        },
    )
    data = resp.json()["data"]
    assert data["total"] == 2 and data["successful"] == 2
    assert [(i["index"], i["error"]) for i in data["invalid"]] == [
        (1, "duplicate of recipient 0"),
        (2, "not a valid phone number"),
    ]


async def test_missing_variable_is_never_sent_literally(app: App) -> None:
    resp = await app.post(
        "/api/messages/send-bulk",
        json={
            "recipients": [
                {"phone": "966501234567", "code": "A1"},
                {"phone": "966507654321"},
            ],
            "message": "Your code {code}",
        },
    )
    data = resp.json()["data"]
    assert data["total"] == 1
    assert data["invalid"] == [
        {"index": 1, "phone": "+966507654321", "error": "missing variable {code}"}
    ]
    texts = [
        m["text"] for m in (await app.get("/api/simulator/messages")).json()["data"]["messages"]
    ]
    assert texts == ["Your code A1"]


async def test_nothing_valid_is_a_400(app: App) -> None:
    resp = await app.post(
        "/api/messages/send-bulk", json={"recipients": ["1", "2"], "message": "x"}
    )
    assert resp.status_code == 400
    body = resp.json()
    assert body["success"] is False and body["error"].startswith("recipients:")
    assert [i["index"] for i in body["invalid"]] == [0, 1]


async def test_validation_errors_name_the_field(app: App) -> None:
    cases = [
        ({"message": "x"}, "recipients"),
        ({"recipients": "966501234567"}, "recipients"),
        ({"recipients": [], "message": "x"}, "recipients"),
        ({"recipients": ["966501234567"], "message": 5}, "message"),
        ({"recipients": ["966501234567"], "message": "x" * 4097}, "message"),
        ({"recipients": ["966501234567"], "message": "x", "account": "bad account!"}, "account"),
    ]
    for payload, field in cases:
        resp = await app.post("/api/messages/send-bulk", json=payload)
        assert resp.status_code == 400, payload
        assert resp.json()["success"] is False
        assert resp.json()["error"].startswith(field), resp.json()


async def test_malformed_json_is_a_400(app: App) -> None:
    resp = await app.client.post(
        "/api/messages/send-bulk",
        content=b'{"recipients": [',
        headers={**HEADERS, "Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert resp.json()["error"].startswith("body")


async def test_body_over_limit_is_413(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path, max_body_bytes=2048)) as small:
        payload = {"recipients": ["966501234567"], "message": "x" * 4000}
        resp = await small.post("/api/messages/send-bulk", json=payload)
        assert resp.status_code == 413
        assert resp.json()["success"] is False and "body" in resp.json()["error"]

        async def chunks():  # no Content-Length: counted while streaming
            data = json.dumps(payload).encode()
            for i in range(0, len(data), 500):
                yield data[i : i + 500]

        resp = await small.client.post(
            "/api/messages/send-bulk",
            content=chunks(),
            headers={**HEADERS, "Content-Type": "application/json"},
        )
        assert resp.status_code == 413


async def test_too_many_recipients_is_413(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path, max_recipients=5)) as small:
        resp = await small.post(
            "/api/messages/send-bulk", json={"recipients": recipients(6), "message": "x"}
        )
        assert resp.status_code == 413 and resp.json()["error"].startswith("recipients")


async def test_stats_shape(app: App) -> None:
    resp = await app.get("/api/queue/stats")
    data = resp.json()["data"]
    for key in ("waiting", "active", "completed", "failed", "delayed", "paused", "total"):
        assert isinstance(data[key], int)
    assert set(data["messages"]) >= {"pending", "sent", "failed", "unknown"}
    sent = await app.post(
        "/api/messages/send-bulk", json={"recipients": recipients(12), "message": "Hi"}
    )
    await wait_for_job(app.get, sent.json()["data"]["jobId"])
    data = (await app.get("/api/queue/stats")).json()["data"]
    assert data["completed"] == 1 and data["total"] == 1
    assert data["messages"]["sent"] == 12 and data["messages"]["pending"] == 0


async def test_jobs_list_and_detail(app: App) -> None:
    ids = []
    for batch in range(3):
        resp = await app.post(
            "/api/messages/send-bulk",
            json={"recipients": recipients(11, start=batch * 100), "message": "Hi {name}"},
        )
        ids.append(resp.json()["data"]["jobId"])
    for job_id in ids:
        await wait_for_job(app.get, job_id)
    listing = (await app.get("/api/queue/jobs", params={"limit": 2})).json()["data"]
    assert listing["count"] == 2
    assert [j["id"] for j in listing["jobs"]] == [ids[2], ids[1]]  # newest first
    job = listing["jobs"][0]
    assert set(job) >= {
        "id",
        "status",
        "progress",
        "data",
        "processedOn",
        "finishedOn",
        "failedReason",
    }
    assert job["status"] == "completed" and job["progress"] == 100
    assert "recipients" not in job["data"]  # a summary, never the whole list
    detail = (await app.get(f"/api/queue/jobs/{ids[0]}")).json()["data"]
    assert set(detail) >= {
        "id",
        "status",
        "progress",
        "data",
        "failedReason",
        "processedOn",
        "finishedOn",
        "returnvalue",
    }
    assert detail["recipients"]["sent"] == 11
    assert detail["returnvalue"]["sent"] == 11


async def test_jobs_limit_validation(app: App) -> None:
    for bad in ("0", "abc", "100000"):
        resp = await app.get("/api/queue/jobs", params={"limit": bad})
        assert resp.status_code == 400 and resp.json()["error"].startswith("limit")


async def test_unknown_job_is_404(app: App) -> None:
    resp = await app.get("/api/queue/jobs/does-not-exist")
    assert resp.status_code == 404
    assert resp.json() == {"success": False, "error": "Job not found"}


async def test_pause_resume_shapes(app: App) -> None:
    resp = await app.post("/api/queue/pause")
    assert resp.status_code == 200 and resp.json()["success"] is True
    health = (await app.get("/api/queue/health")).json()
    assert health["data"]["queue"]["paused"] is True
    # While paused, a small list is queued rather than sent, and says why.
    small = (
        await app.post(
            "/api/messages/send-bulk", json={"recipients": ["966501234567"], "message": "x"}
        )
    ).json()
    assert small["mode"] == "queue" and "paused" in small["data"]["reason"]
    stats = (await app.get("/api/queue/stats")).json()["data"]
    assert stats["paused"] == 1 and stats["waiting"] == 0
    assert (await app.post("/api/queue/resume")).json()["success"] is True
    await wait_for_job(app.get, small["data"]["jobId"])


async def test_clean_removes_finished_jobs_and_ledgers(app: App) -> None:
    resp = await app.post(
        "/api/messages/send-bulk", json={"recipients": recipients(11), "message": "Hi"}
    )
    job_id = resp.json()["data"]["jobId"]
    await wait_for_job(app.get, job_id)
    kept = (await app.post("/api/queue/clean")).json()  # default grace: 24 h
    assert kept["data"]["removed"] == 0
    assert (await app.get(f"/api/queue/jobs/{job_id}")).status_code == 200
    bad = await app.post("/api/queue/clean", json={"grace": -1})
    assert bad.status_code == 400 and bad.json()["error"].startswith("grace")
    removed = (await app.post("/api/queue/clean", json={"grace": 0})).json()
    assert removed["success"] is True and job_id in removed["data"]["jobs"]
    assert (await app.get(f"/api/queue/jobs/{job_id}")).status_code == 404
    stats = (await app.get("/api/queue/stats")).json()["data"]
    assert stats["messages"]["sent"] == 0 and stats["completed"] == 0
    again = (await app.post("/api/queue/clean", params={"grace": 0})).json()
    assert again["data"]["removed"] == 0


async def test_queue_health_shape(app: App) -> None:
    resp = await app.get("/api/queue/health")
    body = resp.json()
    assert resp.status_code == 200 and body["success"] is True and body["healthy"] is True
    assert body["data"]["redis"]["ok"] is True
    assert body["data"]["redis"]["maxmemoryPolicy"] == "noeviction"
    assert body["data"]["workers"]["alive"] >= 1
    assert body["data"]["provider"]["name"] == "simulator"


async def test_redis_down_is_503_with_cause(tmp_path: Path) -> None:
    from tests.conftest import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with App(make_settings(dead, tmp_path), run_worker=False) as down:
        resp = await down.get("/api/queue/stats")
        assert resp.status_code == 503
        body = resp.json()
        assert body["success"] is False
        assert body["error"].startswith(
            f"Redis unavailable at 127.0.0.1:{dead.split(':')[2].split('/')[0]}"
        )
        assert "Traceback" not in resp.text
        send = await down.post(
            "/api/messages/send-bulk", json={"recipients": ["966501234567"], "message": "x"}
        )
        assert send.status_code == 503
        health = await down.get("/api/queue/health")
        assert health.status_code == 503 and health.json()["healthy"] is False


async def test_openapi_is_served(app: App) -> None:
    resp = await app.client.get("/openapi.json")
    assert resp.status_code == 200 and "/api/messages/send-bulk" in resp.json()["paths"]


async def test_cors_off_unless_asked(app: App, redis_url: str, tmp_path: Path) -> None:
    pre = await app.client.options(
        "/api/queue/stats",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in pre.headers
    async with App(make_settings(redis_url, tmp_path, cors_origins="https://ok.example")) as c:
        ok = await c.client.options(
            "/api/queue/stats",
            headers={"Origin": "https://ok.example", "Access-Control-Request-Method": "GET"},
        )
        assert ok.headers.get("access-control-allow-origin") == "https://ok.example"


def test_httpx_version_has_asgi_transport() -> None:
    assert hasattr(httpx, "ASGITransport")


async def test_readonly_key_reads_but_cannot_act(redis_url: str, tmp_path: Path) -> None:
    reader = "reader-key-0123456789"
    async with App(make_settings(redis_url, tmp_path, readonly_api_key=reader)) as ro:
        headers = {"X-API-Key": reader}
        assert (await ro.client.get("/api/queue/stats", headers=headers)).status_code == 200
        for path in ("/api/queue/pause", "/api/messages/send-bulk", "/api/queue/clean"):
            resp = await ro.client.post(path, headers=headers, json={})
            assert resp.status_code == 403, path
            assert resp.json() == {"success": False, "error": "This API key is read-only"}
        assert (await ro.get("/api/queue/health")).status_code == 200
