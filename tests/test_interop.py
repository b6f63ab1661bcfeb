"""The tools our users already run, against a live ``waqtor serve``: Bull Board (``@bull-board/api``
9 with its BullMQ adapter over Node ``bullmq`` 6, served by ``@bull-board/express``) and the
seed dashboard's own HTTP client (``tests/interop/seed_client.js``). They are npm-installed into
a temp dir once per session; the suite skips only when Node or npm is missing.

After every action the state must stay consistent (``assert_consistent``): the outbox has no
duplicate, no pending count is orphaned, each account's backlog is true, and every answer agrees
with the others.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import HEADERS, KEY, Proc, env_for, free_port, recipients, wait_http

TOOLS = Path(__file__).resolve().parent / "interop"
QUEUE = "waqtor"
OPEN = ("P", "R", "S")


@pytest.fixture(scope="session")
def node_tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``npm install`` of Bull Board, Node BullMQ and axios into a temp dir, once a session."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            # CI (WAQTOR_REQUIRE_ALL=1, set by .ci/run) must run this, never skip it.
            (pytest.fail if os.environ.get("WAQTOR_REQUIRE_ALL") else pytest.skip)(
                f"{tool} not found on PATH: the interop suite runs the real Node tools"
            )
    folder = tmp_path_factory.mktemp("interop-node")
    for name in ("package.json", "board.js", "seed_client.js"):
        shutil.copy(TOOLS / name, folder / name)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--omit=dev"],
        cwd=folder,
        check=True,
        timeout=600,
        capture_output=True,
    )
    return folder


class Service:
    """A real ``waqtor serve`` on the test Redis, with a fast reconciler."""

    def __init__(self, tmp: Path, redis_url: str, **env: Any) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        values = {"reconcile_every_ms": 200, "reconcile_grace_ms": 800, **env}
        self.env = {
            **env_for(**values),
            "API_KEY": KEY,
            "REDIS_URL": redis_url,
            "WAQTOR_DATA_DIR": str(tmp / "data"),
        }
        self.log = tmp / "serve.log"
        self.proc = Proc(["serve", "--port", str(self.port)], self.env, self.log)

    def start(self) -> Service:
        self.proc.start()
        wait_http(self.base + "/health")
        return self

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.base + path, headers=HEADERS, timeout=30, **kw)

    def data(self, path: str, **kw: Any) -> Any:
        resp = self.call("GET", path, **kw)
        assert resp.status_code == 200, resp.text
        return resp.json()["data"]

    def queue(self, n: int, start: int = 0) -> str:
        body = {"recipients": recipients(n, start), "message": "Hi {name}"}
        resp = self.call("POST", "/api/messages/send-bulk", json=body)
        assert resp.status_code == 200 and resp.json()["mode"] == "queue", resp.text
        job_id: str = resp.json()["data"]["jobId"]
        return job_id

    def faults(self, **body: Any) -> None:
        resp = self.call("PUT", "/api/simulator/faults", json={"latencyMs": 0, **body})
        assert resp.status_code == 200, resp.text
        time.sleep(0.25)  # every process's simulator re-reads its switches within 0.2 s

    def outbox(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.data("/api/simulator/messages", params={"limit": 10000})[
            "messages"
        ]
        return rows

    def job(self, job_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.data(f"/api/queue/jobs/{job_id}")
        return found

    def wait_job(self, job_id: str, *states: str, timeout: float = 30) -> dict[str, Any]:
        return wait_until(lambda: _in_state(self.job(job_id), states), timeout, job_id)


def _in_state(job: dict[str, Any], states: tuple[str, ...]) -> dict[str, Any] | None:
    return job if job["status"] in states else None


def _orphan(service: Service, job_id: str) -> dict[str, Any] | None:
    resp = service.call("GET", f"/api/queue/jobs/{job_id}")
    return dict(resp.json()["data"]) if resp.status_code == 200 else None


def wait_until(check: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


class Board:
    """``tests/interop/board.js``: Bull Board on our queue, full and read-only, over HTTP."""

    def __init__(self, tools: Path, redis_url: str, prefix: str = "bull") -> None:
        self.proc = subprocess.Popen(
            ["node", "board.js", redis_url, QUEUE, prefix],
            cwd=tools,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"board.js did not start: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        port = json.loads(line)["port"]
        self.base = f"http://127.0.0.1:{port}/admin/bull/api"
        self.read_only = f"http://127.0.0.1:{port}/admin/bull-ro/api"

    def queue(self, status: str = "latest") -> dict[str, Any]:
        resp = httpx.get(
            f"{self.base}/queues",
            params={"activeQueue": QUEUE, "status": status, "page": 1, "jobsPerPage": 50},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        (found,) = [q for q in resp.json()["queues"] if q["name"] == QUEUE]
        return dict(found)

    def act(self, path: str, method: str = "PUT", base: str | None = None, **kw: Any) -> int:
        resp = httpx.request(method, f"{base or self.base}/queues/{QUEUE}/{path}", timeout=30, **kw)
        return resp.status_code

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def live(tmp_path: Path, redis_url: str) -> Iterator[Service]:
    service = Service(tmp_path, redis_url).start()
    try:
        yield service
    finally:
        service.proc.stop()


@pytest.fixture
def board(node_tools: Path, redis_url: str, live: Service) -> Iterator[Board]:
    found = Board(node_tools, redis_url)
    try:
        yield found
    finally:
        found.stop()


def assert_consistent(service: Service, r: redis.Redis) -> None:
    """No duplicate send, no orphaned count, true backlogs, answers that agree."""
    sends = Counter((m["jobId"], m["phone"]) for m in service.outbox())
    assert not [key for key, n in sends.items() if n > 1], f"duplicate sends: {sends}"
    per_code: Counter[str] = Counter()
    open_by_account: Counter[str] = Counter()
    for cid in r.zrange("wq:campaigns", 0, -1):
        meta = r.hgetall(f"wq:c:{cid}")
        status = r.get(f"wq:c:{cid}:s") or ""
        for code, n in Counter(status).items():
            assert int(meta.get(f"n:{code}", 0)) == n, (cid, code, meta)
        per_code.update({k[2:]: int(v) for k, v in meta.items() if k.startswith("n:")})
        open_by_account[meta.get("account", "default")] += sum(status.count(c) for c in OPEN)
        job_exists = r.exists(f"bull:{QUEUE}:{cid}")
        if not job_exists and sum(status.count(c) for c in OPEN):
            # Open recipients with no job: only an instant send its live request is sending.
            assert meta.get("mode") == "instant" and r.exists(f"wq:c:{cid}:lease"), (cid, meta)
    counted = {k: int(v) for k, v in r.hgetall("wq:stats:msgs").items() if int(v)}
    assert counted == {k: v for k, v in per_code.items() if v}, "message counts drifted"
    for key in r.keys("wq:acct:*:backlog"):
        account = key.split(":")[2]
        assert int(r.get(key) or 0) == open_by_account[account], f"backlog of {account}"
    stats = service.data("/api/queue/stats")
    states = ("waiting", "active", "completed", "failed", "delayed", "paused", "canceled")
    assert stats["total"] == sum(stats[s] for s in (*states, "foreign"))
    for row in service.data("/api/queue/jobs")["jobs"]:
        detail = service.job(row["id"])
        if detail["status"] not in ("active", "waiting", "delayed"):  # may move in between
            assert detail["status"] == row["status"], (row, detail)


def test_bull_board_lists_our_queue_sees_our_workers_and_pauses_it(
    live: Service, board: Board, r: redis.Redis
) -> None:
    job_id = live.queue(12)
    live.wait_job(job_id, "completed")
    shown = board.queue()
    assert shown["hasWorkers"] is True, "Bull Board must see waqtor's workers"
    assert shown["counts"]["completed"] == 1
    assert [j["id"] for j in shown["jobs"]] == [job_id]
    # Pause and resume from the board: our API sees the same queue state.
    assert board.act("pause") == 200
    assert live.data("/api/queue/health")["queue"]["paused"] is True
    small = {"recipients": recipients(2), "message": "Hi"}
    paused = live.call("POST", "/api/messages/send-bulk", json=small)
    assert paused.json()["mode"] == "queue" and "paused" in paused.json()["data"]["reason"]
    assert board.act("resume") == 200
    assert live.data("/api/queue/health")["queue"]["paused"] is False
    live.wait_job(paused.json()["data"]["jobId"], "completed")
    # The read-only board refuses every action and changes nothing.
    for path in ("pause", f"{job_id}/retry", f"{job_id}/clean", "clean/completed"):
        assert board.act(path, base=board.read_only) >= 400, path
    assert live.data("/api/queue/health")["queue"]["paused"] is False
    assert live.job(job_id)["status"] == "completed"
    assert_consistent(live, r)


def test_bull_board_with_a_hash_tag_prefix_sees_the_tagged_queue(
    node_tools: Path, tmp_path: Path, redis_url: str
) -> None:
    """With REDIS_KEY_TAG (as on a Cluster) bullmq's prefix is ``{tag}``: a board set up as
    docs/interop.md says (the same prefix) lists the jobs and the workers; one left on
    ``bull`` sees an empty queue."""
    service = Service(tmp_path, redis_url, redis_key_tag="waqtor").start()
    tagged = Board(node_tools, redis_url, prefix="{waqtor}")
    plain: Board | None = None
    try:
        job_id = service.queue(12)
        service.wait_job(job_id, "completed")
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        assert r.exists(f"{{waqtor}}:waqtor:{job_id}") and r.exists(f"{{waqtor}}:wq:c:{job_id}")
        assert not r.keys("bull:*") and not r.keys("wq:*")
        r.close()
        shown = tagged.queue()
        assert shown["hasWorkers"] is True, "Bull Board must see waqtor's workers"
        assert [j["id"] for j in shown["jobs"]] == [job_id]
        plain = Board(node_tools, redis_url)
        assert plain.queue()["jobs"] == []
    finally:
        tagged.stop()
        if plain is not None:
            plain.stop()
        service.proc.stop()


def test_bull_board_promote_and_retry_keep_answers_honest(
    live: Service, board: Board, r: redis.Redis
) -> None:
    # Promote an instant send's safety-net job while its request is still sending.
    live.faults(latencyMs=150)
    reply: dict[str, Any] = {}

    def send() -> None:
        body = {"recipients": recipients(10, 500), "message": "Hi {name}"}
        reply.update(live.call("POST", "/api/messages/send-bulk", json=body).json())

    sender = threading.Thread(target=send)
    sender.start()
    net = wait_until(lambda: r.zrange(f"bull:{QUEUE}:delayed", 0, -1), 10, "the safety net")
    assert board.act(f"{net[0]}/promote") == 204
    sender.join()
    data = reply["data"]
    assert reply["mode"] == "instant", reply
    assert (data["successful"], data["failed"], data["pending"]) == (10, 0, 0), data
    assert all(row["success"] is True for row in data["results"])
    assert len(live.outbox()) == 10
    assert "left by a dead worker" not in live.log.read_text()
    # Retry from the board a campaign whose job failed (the provider was down on every try).
    live.faults(unavailable=1.0)
    failed_id = live.queue(11, 100)
    failed = live.wait_job(failed_id, "failed")
    assert failed["recipients"]["failed"] == 11
    live.faults()
    assert board.act(f"{failed_id}/retry") == 204
    done = live.wait_job(failed_id, "completed", "failed")
    assert done["status"] == "completed" and done["failedReason"] is None
    assert done["recipients"]["sent"] == 11 and done["recipients"]["failed"] == 0
    assert_consistent(live, r)


def test_bull_board_remove_clean_and_add_are_reconciled(
    live: Service, board: Board, r: redis.Redis
) -> None:
    finished = live.queue(11, 300)
    live.wait_job(finished, "completed")
    finished_at = time.monotonic()
    # A paused campaign (scheduled for later): paused everywhere, though bullmq keeps its job
    # in *delayed*.
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body = {"recipients": recipients(40, 1000), "message": "Hi", "sendAt": later}
    held = live.call("POST", "/api/messages/send-bulk", json=body).json()["data"]["jobId"]
    assert live.call("POST", f"/api/queue/jobs/{held}/pause").json()["data"]["changed"] == 1
    assert board.queue("delayed")["counts"]["delayed"] == 1
    listed = {j["id"]: j["status"] for j in live.data("/api/queue/jobs")["jobs"]}
    assert listed[held] == "paused" and live.job(held)["status"] == "paused"
    stats = live.data("/api/queue/stats")
    assert (stats["paused"], stats["delayed"]) == (1, 0)
    backlog_before = live.data("/api/accounts/default")["today"]["backlog"]
    assert backlog_before > 0
    # Remove it from the board: the reconciler closes it after the grace period.
    assert board.act(f"{held}/clean") == 204
    # Gone from bullmq: 404 until the grace period is over, then its ledger answers.
    assert live.call("GET", f"/api/queue/jobs/{held}").status_code == 404
    closed = wait_until(lambda: _orphan(live, held), 15, "the reconciler")
    assert closed["status"] == "canceled"
    assert closed["removedOutside"] == "job removed outside waqtor"
    rows = live.data(f"/api/queue/jobs/{held}/recipients", params={"status": "canceled"})
    assert rows["total"] > 0 and rows["recipients"][0]["error"] == "job removed outside waqtor"
    assert live.data("/api/queue/stats")["messages"]["pending"] == 0
    assert live.data("/api/accounts/default")["today"]["backlog"] == 0
    fixed = live.data("/api/queue/health")["reconciler"]
    assert fixed["orphansClosed"] == 1 and fixed["recent"][0]["campaign"] == held
    after = live.call(
        "POST", "/api/messages/send-bulk", json={"recipients": recipients(12, 2000), "message": "x"}
    )
    assert after.json()["data"]["backlogAhead"] == 0
    live.wait_job(after.json()["data"]["jobId"], "completed")
    # A job added from the board has no campaign: it fails with a reason, counted apart.
    assert board.act("add", "POST", json={"name": "hello", "data": {"x": 1}, "options": {}}) == 200
    foreign = wait_until(lambda: live.data("/api/queue/stats")["foreign"], 10, "foreign job")
    assert foreign == 1 and live.data("/api/queue/stats")["failed"] == 0
    (failed,) = board.queue("failed")["jobs"]
    assert "not a waqtor campaign" in failed["failedReason"]
    # Clean completed jobs from the board (it keeps 5 s of them): their ledgers are kept for
    # the report, and our own clean removes them afterwards.
    time.sleep(max(0.0, finished_at + 5.5 - time.monotonic()))
    assert board.act("clean/completed") == 200
    gone = wait_until(lambda: _orphan(live, finished), 15, "the reconciler")
    assert (gone["status"], gone["removedOutside"]) == ("completed", "job removed outside waqtor")
    report = live.call("GET", f"/api/queue/jobs/{finished}/report.csv")
    assert report.status_code == 200 and report.text.count("\n") == 12
    assert_consistent(live, r)
    cleaned = live.call("POST", "/api/queue/clean", json={"grace": 0}).json()["data"]
    assert {finished, held} <= set(cleaned["jobs"])
    assert live.call("GET", f"/api/queue/jobs/{held}").status_code == 404
    assert live.call("GET", f"/api/queue/jobs/{finished}/report.csv").status_code == 404
    assert_consistent(live, r)


def seed_client(tools: Path, service: Service, plan: list[list[Any]]) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["node", "seed_client.js", service.base, KEY, json.dumps(plan)],
        cwd=tools,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    found: list[dict[str, Any]] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def test_the_seed_dashboards_client_gets_honest_answers(
    node_tools: Path, live: Service, r: redis.Redis
) -> None:
    small = [{"phone": f"96650000{i:04d}", "message": f"Hello {i}"} for i in range(3)]
    small.append({"phone": "+966 50 000 0009", "message": "Spaced"})
    bulk = [{"phone": f"9665011{i:05d}", "message": "Bulk {name}"} for i in range(15)]
    templated = [{"phone": "966502220001", "variables": {"name": "Amal", "order": "A-17"}}]
    calls = seed_client(
        node_tools,
        live,
        [
            ["getHealth"],
            ["sendBulk", small],
            ["sendBulk", bulk],
            ["sendBulkWithVariables", templated, "Hi {name}, order {order}"],
            ["getStats"],
            ["getJobs"],
            ["getJobs", 5],
            ["pause"],
            ["getHealth"],
            ["resume"],
        ],
    )
    by = {c["call"]: c for c in calls}
    assert all(c["status"] == 200 for c in calls), calls
    health = calls[0]["body"]
    for field in ("waiting", "active", "completed", "failed", "delayed", "total"):
        assert isinstance(health["data"][field], int), field  # WaQtor's clients read these
    instant = calls[1]["body"]
    assert instant["mode"] == "instant"
    assert [row["phone"] for row in instant["data"]["results"]] == [s["phone"] for s in small]
    assert instant["data"]["results"][-1]["normalizedPhone"] == "+966500000009"
    assert instant["data"]["successful"] == 4 and instant["data"]["failed"] == 0
    job_id = calls[2]["body"]["data"]["jobId"]
    assert calls[2]["body"]["mode"] == "queue"
    assert calls[3]["body"]["data"]["successful"] == 1
    assert any(m["text"] == "Hi Amal, order A-17" for m in live.outbox())
    jobs = by["getJobs"]["body"]["data"]
    assert job_id in [j["id"] for j in jobs["jobs"]] and jobs["count"] == len(jobs["jobs"])
    assert calls[8]["body"]["data"]["queue"]["paused"] is True
    live.wait_job(job_id, "completed")
    later = seed_client(
        node_tools,
        live,
        [["getJobStatus", job_id], ["getStats"], ["clean", 0], ["getJobs"], ["getStats"]],
    )
    assert later[0]["status"] == 404, "WaQtor's /queue/jobs/{id} (no /api) stays unaliased"
    stats = later[1]["body"]["data"]
    assert stats["completed"] == 1 and stats["messages"]["sent"] == 4 + 15 + 1
    assert stats["messages"]["pending"] == 0
    assert job_id in later[2]["body"]["data"]["jobs"]
    assert later[3]["body"]["data"]["jobs"] == []
    assert later[4]["body"]["data"]["total"] == 0
    assert_consistent(live, r)
