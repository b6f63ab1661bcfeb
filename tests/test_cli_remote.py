"""``waqtor send|jobs|job|pause|resume|cancel|report`` run as a user runs them: a real process
with ``WAQTOR_URL`` and ``WAQTOR_API_KEY`` set, against a live ``waqtor serve``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_service import LiveService, phones, write_csv


@pytest.fixture(scope="module")
def live() -> Iterator[LiveService]:
    service = LiveService(message_delay=0, instant_threshold=0).start()
    yield service
    service.stop()


def waqtor(
    live: LiveService, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "waqtor", *args],
        env=env if env is not None else live.cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_send_waits_and_exits_0_and_a_rerun_never_sends_twice(
    live: LiveService, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "list.csv", phones(8, 0))
    first = waqtor(live, "send", str(csv), "--message", "Hi {name}", "--wait")
    assert first.returncode == 0, first.stderr
    assert "8 recipients will be sent" in first.stdout and "Hi Guest 0" in first.stdout
    assert "campaign " in first.stdout and "sent" in first.stdout
    again = waqtor(live, "send", str(csv), "--message", "Hi {name}", "--wait", "--json")
    assert again.returncode == 0, again.stderr
    job = as_json(again)
    assert job["status"] == "completed" and job["recipients"]["sent"] == 8
    sent = Counter(m["phone"] for m in live.outbox() if m["text"].startswith("Hi Guest"))
    assert sorted(sent) == sorted("+" + p for p in phones(8, 0)) and set(sent.values()) == {1}


def test_exit_2_when_some_recipients_failed(live: LiveService, tmp_path: Path) -> None:
    numbers = phones(4, 100)
    live.faults(phones={"+" + numbers[1]: "permanent"})
    try:
        csv = write_csv(tmp_path / "list.csv", numbers)
        done = waqtor(live, "send", str(csv), "-m", "Two {name}", "--wait", "--json")
    finally:
        live.faults()
    assert done.returncode == 2, done.stderr
    job = as_json(done)
    assert (job["recipients"]["sent"], job["recipients"]["failed"]) == (3, 1)


def test_exit_1_when_the_campaign_failed(tmp_path: Path) -> None:
    service = LiveService(message_delay=0, instant_threshold=0, max_retries=0).start()
    try:
        service.faults(unavailable=1.0)
        csv = write_csv(tmp_path / "list.csv", phones(3, 200))
        done = waqtor(service, "send", str(csv), "-m", "x", "--wait", "--json")
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert as_json(done)["status"] == "failed"
    finally:
        service.stop()


def test_dry_run_sends_nothing(live: LiveService, tmp_path: Path) -> None:
    before = len(live.outbox())
    csv = write_csv(tmp_path / "list.csv", [*phones(3, 300), "12"])
    done = waqtor(live, "send", str(csv), "-m", "Dry {name}", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    preview = as_json(done)
    assert preview["total"] == 3 and preview["invalid"][0]["index"] == 3
    assert len(live.outbox()) == before


class Recorder(ThreadingHTTPServer):
    """A plain HTTP hop in front of the service that notes every request (method, path with
    its query, body size) before passing it on: what the CLI really sends over the wire."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.seen: list[tuple[str, str, int]] = []
        super().__init__(("127.0.0.1", 0), _Hop)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Hop(BaseHTTPRequestHandler):
    server: Recorder

    def _pass(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, len(body)))
        skip = {"host", "content-length", "connection", "transfer-encoding"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        got = httpx.request(
            self.command, self.server.target + self.path, content=body, headers=headers, timeout=30
        )
        self.send_response(got.status_code)
        for k, v in got.headers.items():
            if k.lower() not in skip | {"content-encoding"}:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(got.content)))
        self.end_headers()
        self.wfile.write(got.content)

    do_GET = do_POST = _pass

    def log_message(self, *args: Any) -> None:
        pass


def test_send_json_uploads_the_list_once(live: LiveService, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "list.csv", phones(12, 600))
    size = csv.stat().st_size
    hop = Recorder(live.url)
    try:
        env = {**live.cli_env(), "WAQTOR_URL": hop.url}
        done = waqtor(live, "send", str(csv), "-m", "Once {name}", "--json", env=env)
        assert done.returncode == 0, done.stderr
        assert as_json(done)["total"] == 12
        uploads = [(path, n) for method, path, n in hop.seen if method == "POST"]
        assert uploads == [("/api/messages/send-bulk?message=Once+%7Bname%7D", size)], hop.seen
        # Shown to a person, the preview still comes first: the list goes up twice.
        hop.seen.clear()
        shown = waqtor(live, "send", str(csv), "-m", "Twice {name}", env=env)
        assert shown.returncode == 0 and "12 recipients will be sent" in shown.stdout
        posts = [path for method, path, _ in hop.seen if method == "POST"]
        assert len(posts) == 2 and "dryRun=true" in posts[0], hop.seen
    finally:
        hop.shutdown()
        hop.server_close()


def test_several_accounts_share_a_csv(live: LiveService, tmp_path: Path) -> None:
    for name in ("a1", "a2"):
        assert live.api("POST", "/api/accounts", json={"name": name, "tier": "business"}).is_success
    csv = write_csv(tmp_path / "list.csv", phones(6, 400), delimiter=";")
    done = waqtor(live, "send", str(csv), "-m", "Multi {name}", "--account", "a1,a2", "--wait")
    assert done.returncode == 0, done.stderr
    by_account = Counter(m["account"] for m in live.outbox() if m["text"].startswith("Multi"))
    assert by_account == {"a1": 3, "a2": 3}


def _queue_later(live: LiveService, csv: Path) -> str:
    queued = waqtor(live, "send", str(csv), "-m", "Later", "--send-at", "2099-01-01T00:00:00Z")
    assert queued.returncode == 0, queued.stderr
    return queued.stdout.split("campaign ")[1].split(":")[0]


def test_jobs_job_control_and_report(live: LiveService, tmp_path: Path) -> None:
    job_id = _queue_later(live, write_csv(tmp_path / "later.csv", phones(5, 500)))
    listed = as_json(waqtor(live, "jobs", "--state", "delayed", "--json"))
    assert [j["id"] for j in listed] == [job_id]
    table = waqtor(live, "jobs")
    assert job_id in table.stdout and "delayed" in table.stdout

    assert waqtor(live, "pause", job_id).returncode == 0
    assert as_json(waqtor(live, "job", job_id, "--json"))["status"] == "paused"
    shown = waqtor(live, "job", job_id)
    assert "paused" in shown.stdout and "pending" in shown.stdout
    cancel = waqtor(live, "cancel", job_id, "--json")
    assert cancel.returncode == 0 and as_json(cancel)["changed"] == 5
    refused = waqtor(live, "resume", job_id)
    assert refused.returncode == 3 and "409" in refused.stderr

    out = tmp_path / "report.csv"
    report = waqtor(live, "report", job_id, "-o", str(out), "--json")
    assert report.returncode == 0, report.stderr
    assert as_json(report)["rows"] == 5 and len(out.read_text().splitlines()) == 6
    assert "phone" in out.read_text().splitlines()[0]

    other = _queue_later(live, write_csv(tmp_path / "other.csv", phones(2, 600)))
    assert waqtor(live, "pause", other).returncode == 0
    resumed = waqtor(live, "resume", other, "--json")
    assert resumed.returncode == 0 and as_json(resumed)["message"]
    assert as_json(waqtor(live, "job", other, "--json"))["status"] != "paused"


def test_errors_exit_3_and_bad_usage_64(live: LiveService, tmp_path: Path) -> None:
    missing = waqtor(live, "job", "no-such-job")
    assert missing.returncode == 3 and "404: Job not found" in missing.stderr
    wrong = waqtor(live, "jobs", "--key", "wrong-key-0123456789")
    assert wrong.returncode == 3 and "403" in wrong.stderr
    assert "wrong-key-0123456789" not in wrong.stderr + wrong.stdout
    env = {k: v for k, v in live.cli_env().items() if k != "WAQTOR_API_KEY"}
    nokey = waqtor(live, "jobs", env=env)
    assert nokey.returncode == 3 and "WAQTOR_API_KEY" in nokey.stderr
    usage = waqtor(live, "send")
    assert usage.returncode == 64 and "usage:" in usage.stderr
    nofile = waqtor(live, "send", str(tmp_path / "none.csv"), "-m", "x")
    assert nofile.returncode == 3 and "no such file" in nofile.stderr


def test_a_small_list_is_sent_at_once(tmp_path: Path) -> None:
    service = LiveService(message_delay=0).start()  # INSTANT_THRESHOLD: 10
    try:
        numbers = phones(3, 700)
        service.faults(phones={"+" + numbers[2]: "permanent"})
        csv = write_csv(tmp_path / "small.csv", numbers)
        done = waqtor(service, "send", str(csv), "-m", "Hi {name}", "--wait")
        assert done.returncode == 2, done.stderr
        assert "instant" in done.stdout and "2 sent, 1 failed" in done.stdout
        assert f"failed #2 +{numbers[2]}" in done.stdout
    finally:
        service.stop()
