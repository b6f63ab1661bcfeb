"""Repeated Sentinel failovers under a running campaign: ``python -m bench.chaos --failovers N``.

One primary, one replica, three Sentinels (``bench._topology``); the API (``serve
--no-worker``) and two workers find the primary through the Sentinels. The provider is the
Cloud API against the fake Graph API process (``bench/fake_graph.py``), so every send is
counted outside the Redis being failed over: a claim lost with a primary cannot hide a second
send. Accounts are paced (``--delay-ms``, 10 by default: 100 messages a second). Every process runs
with ``REDIS_MIN_REPLICAS_ACK=1`` (``--ack``; ``--ack auto`` leaves the default count).

N times: SIGKILL the primary; the Sentinels promote the replica; the killed node comes back at
once as the new primary's replica; every process follows. Then it waits for every campaign and
prints one line:

    accepted=N sent=N unknown=N duplicates=N lost=N failovers=N promote_s=avg/max
    resume_s=avg/max sent_at_kills=a,b,... seconds=N

``promote_s``: from the kill until the Sentinels name the new primary; ``resume_s``: until the
fake receives the next message. Exit status 0 only when duplicates = 0, lost = 0, every message
that reached the fake is settled (``unsettled_sent`` = 0) and every campaign finished.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench._redis_child import free_port
from bench._topology import MASTER, SentinelGroup
from bench.chaos import (
    APP_SECRET,
    CLOUD_ACCOUNT,
    CLOUD_MPS,
    GRAPH_LIMIT,
    GRAPH_TOKEN,
    GRAPH_TOKEN_ENV,
    HEADERS,
    KEY,
    _submit,
    _tally_cloud,
    _wait_all,
    recipients,
    spawn,
)


def _sent_count(graph: httpx.Client) -> int:
    return int(graph.get("/_fake/stats").json()["sent"])


def run(
    failovers: int, big: int, small: int, delay_ms: int = 10, ack: str = "1"
) -> dict[str, object]:
    """``ack``: REDIS_MIN_REPLICAS_ACK for every process; ``auto`` leaves it unset (as many as
    the primary reports)."""
    tmp = Path(tempfile.mkdtemp(prefix="waqtor-failover-"))
    group = SentinelGroup(tmp / "redis").start()
    port, graph_port = free_port(), free_port()
    base, graph_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{graph_port}"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDIS_HOST")},
        "REDIS_SENTINELS": group.hosts,
        "REDIS_SENTINEL_MASTER": MASTER,
        **({} if ack == "auto" else {"REDIS_MIN_REPLICAS_ACK": ack}),
        "API_KEY": KEY,
        "WAQTOR_DATA_DIR": str(tmp / "data"),
        "MAX_RETRIES": "10",
        "RETRY_BACKOFF_MS": "20",
        # Longer than a failover (2-4 s), as in production (30 s by default): a job keeps its
        # worker across one, and sending goes on between kills.
        "LOCK_DURATION_MS": "10000",
        "STALLED_INTERVAL_MS": "5000",
        "SEND_LEASE_MS": "1000",
        "HEARTBEAT_MS": "500",
        "CLOUD_API_BASE_URL": graph_url,
        "CLOUD_API_MPS": str(CLOUD_MPS),
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": "chaos-verify-token-0123456789",
        GRAPH_TOKEN_ENV: GRAPH_TOKEN,
    }
    graph_proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_graph", "--port", str(graph_port),
         "--latency-ms", "20", "--mps-limit", str(GRAPH_LIMIT),
         "--webhook-url", f"{base}/webhooks/whatsapp", "--app-secret", APP_SECRET],
        stdout=(tmp / "graph.log").open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    api = spawn(["serve", "--no-worker", "--port", str(port)], env, tmp / "api.log")
    pool = [spawn(["worker"], env, tmp / f"worker{i}.log") for i in range(2)]
    http = httpx.Client(base_url=base, headers=HEADERS, timeout=30)
    graph = httpx.Client(base_url=graph_url, timeout=10)
    promote: list[float] = []
    resume: list[float] = []
    at_kills: list[int] = []  # messages at the fake at each kill: the campaign was running
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if http.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("API did not start")
            time.sleep(0.1)
        http.post("/api/accounts", json={**CLOUD_ACCOUNT, "delayMs": delay_ms}).raise_for_status()
        jobs = [_submit(http, recipients(big, 0), "cloud")]
        jobs += [_submit(http, recipients(15, 100_000 + i * 100), "cloud") for i in range(small)]
        for _ in range(failovers):
            time.sleep(3.0)  # sending under the new replica's watch, before the next kill
            old = group.kill_primary()
            killed = time.monotonic()
            before = _sent_count(graph)
            at_kills.append(before)
            group.wait_failover(old)
            promote.append(time.monotonic() - killed)
            # Back at once as the new primary's replica: with a fixed count, sending waits for
            # it (the new primary has no other replica to acknowledge claims).
            group.restart_as_replica(old)
            while _sent_count(graph) <= before and time.monotonic() - killed < 60:
                time.sleep(0.02)
            resume.append(time.monotonic() - killed)
            group.wait_replicas(1, timeout=30, port=group.primary_port())
        finished = _wait_all(http, jobs, timeout_s=float(os.environ.get("CHAOS_WAIT_S", "300")))
        result: dict[str, object] = dict(_tally_cloud(http, graph_url, jobs, 0, finished))
        if result.get("duplicates"):
            _explain_duplicates(http, graph, jobs, tmp)
        result.pop("kills", None)
        result["failovers"] = failovers
        result["promote_s"] = _avg_max(promote)
        result["resume_s"] = _avg_max(resume)
        result["sent_at_kills"] = ",".join(map(str, at_kills))
        return result
    finally:
        http.close()
        graph.close()
        for proc in [*pool, api, graph_proc]:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        group.stop()
        if os.environ.get("CHAOS_KEEP"):
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _avg_max(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{sum(values) / len(values):.1f}/{max(values):.1f}"


def _explain_duplicates(
    http: httpx.Client, graph: httpx.Client, jobs: list[str], tmp: Path
) -> None:
    """What the ledger says of a few recipients the fake got twice, and when each arrived."""
    sent = graph.get("/_fake/sent").json()
    times: dict[str, list[float]] = {}
    for at, to, _, _ in sent:
        times.setdefault(to, []).append(at)
    twice = {to for to, ts in times.items() if len(ts) > 1}
    lines: list[str] = []
    for job_id in jobs:
        rows = http.get(f"/api/queue/jobs/{job_id}/recipients", params={"limit": 1000}).json()[
            "data"
        ]["recipients"]
        for row in rows:
            if row["phone"].lstrip("+") in twice and len(lines) < 12:
                lines.append(f"{job_id} {row} at {times[row['phone'].lstrip('+')]}")
    (tmp / "duplicates.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), file=sys.stderr)
