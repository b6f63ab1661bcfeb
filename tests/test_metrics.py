"""``/metrics`` scraped from a live ``waqtor serve`` and read with prometheus_client's own
parser: the figures match what the API says, the route is protected, and no phone number, key
or unbounded label leaks into it."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.conftest import KEY, App, Proc, make_settings, wait_http
from tests.live_service import METRICS_TOKEN, LiveService, phones
from waqtor.api import metrics as metrics_route
from waqtor.client import Client
from waqtor.sending.breaker import Breaker

BEARER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture(scope="module")
def live() -> Iterator[LiveService]:
    service = LiveService(
        message_delay=0, instant_threshold=0, callback_secret="callback-secret-0123456789abcdef"
    ).start()
    yield service
    service.stop()


def scrape(live: LiveService, headers: dict[str, str] | None = None) -> str:
    resp = httpx.get(live.url + "/metrics", headers=headers or BEARER, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return resp.text


def samples(text: str) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(found: dict[str, list[Sample]], name: str, **labels: str) -> float:
    matching = [
        s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matching) == 1, (name, labels, found.get(name))
    return matching[0]


def test_figures_match_the_api_after_a_campaign(live: LiveService) -> None:
    bad = "+" + phones(1, 5)[0]
    with Client(live.url, live.key) as c:
        c.create_account("shop-1", tier="regular", hourlyCap=100, delayMs=0)
        c.set_faults(phones={bad: "permanent"})
        sent = c.send(phones(6, 0), "Hi", account="shop-1")
        assert sent.jobId
        job = c.wait(sent.jobId, timeout=30)
        (failed,) = c.recipients(sent.jobId, status="failed").recipients
        code = failed.errorCode
        assert code
        account = c.account("shop-1")
    assert (job.recipients.sent, job.recipients.failed) == (5, 1)

    found = samples(scrape(live))
    assert value(found, "waqtor_redis_up") == 1
    assert value(found, "waqtor_queue_jobs", state="completed") == 1
    assert value(found, "waqtor_messages", status="sent") == 5
    assert value(found, "waqtor_messages", status="failed") == 1
    # Per process: serve's own worker made the requests (a batch of several counts once).
    assert value(found, "waqtor_provider_request_seconds_count", provider="simulator") >= 1
    assert value(found, "waqtor_provider_request_seconds_sum", provider="simulator") > 0
    assert value(found, "waqtor_provider_errors_total", provider="simulator", code=code) == 1
    sent_by = {"provider": "simulator", "account": "shop-1"}
    assert value(found, "waqtor_provider_messages_total", **sent_by, outcome="sent") == 5
    assert value(found, "waqtor_provider_messages_total", **sent_by, outcome="PermanentError") == 1
    hour = value(found, "waqtor_account_sent_last_hour", account="shop-1")
    assert account.today is not None and hour == account.today.sentLastHour >= 5
    # The cap in force, as the API shows it (warm-up lowers the 100 asked for).
    cap = account.today.hourly
    assert cap and value(found, "waqtor_account_cap", account="shop-1", window="hour") == cap
    assert value(found, "waqtor_account_cap_usage_ratio", account="shop-1", window="hour") == (
        hour / cap
    )
    assert value(found, "waqtor_account_breaker_state", account="shop-1", state="ok") == 1
    assert value(found, "waqtor_account_pacing_gap_seconds", account="shop-1") == 0
    assert value(found, "waqtor_account_backlog", account="shop-1") == 0
    assert value(found, "waqtor_account_messages", account="shop-1", status="sent") == 5
    assert value(found, "waqtor_account_messages", account="shop-1", status="failed") == 1
    assert value(found, "waqtor_callbacks_pending") == 0
    assert value(found, "waqtor_workers_alive") >= 1
    assert value(found, "waqtor_worker_heartbeat_age_seconds") < 5

    with Client(live.url, live.key) as c:
        c.pause_account("shop-1")
    found = samples(scrape(live))
    assert value(found, "waqtor_account_breaker_state", account="shop-1", state="paused") == 1
    assert value(found, "waqtor_account_breaker_state", account="shop-1", state="ok") == 0


class Receiver(BaseHTTPRequestHandler):
    """A status-callback receiver: 200 on /ok, 400 (given up at once) anywhere else."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200 if self.path == "/ok" else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_callback_deliveries_by_outcome(live: LiveService) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with Client(live.url, live.key) as c:
            for path, start in (("/ok", 20), ("/refuse", 30)):
                sent = c.send(phones(2, start), "cb", callbackUrl=base + path)
                assert sent.jobId
                c.wait(sent.jobId, timeout=30)
            deadline = time.monotonic() + 20
            while True:
                found = samples(scrape(live))
                counts = {
                    s.labels["outcome"]: s.value
                    for s in found.get("waqtor_callback_attempts_total", [])
                }
                stats = c.callback_stats()
                # The outbox moves between the scrape and the API read: wait until both agree.
                if (
                    counts.get("delivered", 0) >= 3
                    and counts.get("failed", 0) >= 3
                    and value(found, "waqtor_callbacks_failed") == stats.failed
                    and value(found, "waqtor_callbacks_pending") == stats.pending
                ):
                    break
                assert time.monotonic() < deadline, (counts, stats)
                time.sleep(0.2)
        # The outbox's own figures, read from Redis, agree with the API.
        assert value(found, "waqtor_callbacks_failed") == stats.failed >= 3
        assert value(found, "waqtor_callbacks_pending") == stats.pending
    finally:
        server.shutdown()


def test_no_secrets_or_phone_numbers_and_bounded_labels(live: LiveService) -> None:
    text = scrape(live)
    assert KEY not in text and METRICS_TOKEN not in text
    assert "callback-secret" not in text and "127.0.0.1" not in text
    labels = re.findall(r'="([^"]*)"', text)
    assert labels and not [v for v in labels if re.search(r"\d{7,}", v)], "phone-like label"
    fixed = {
        "state": {"waiting", "active", "completed", "failed", "delayed", "paused", "canceled"}
        | {"foreign", "ok", "cooling"},
        "window": {"hour", "day"},
        "by": {"breaker", "operator"},
        "status": {
            "pending", "sending", "retry", "sent", "delivered", "read", "failed", "unknown",
            "canceled", "suppressed", "expired", "skipped",
        },
        "provider": {"simulator", "cloud_api", "waha", "evolution"},
    }  # fmt: skip
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for label, allowed in fixed.items():
                if label in sample.labels:
                    assert sample.labels[label] in allowed, (sample.name, sample.labels)
            assert set(sample.labels) <= {
                "state", "status", "account", "window", "provider", "code", "outcome", "le", "by"
            }, sample  # fmt: skip


def test_the_route_wants_the_metrics_token_or_an_api_key(live: LiveService) -> None:
    url = live.url + "/metrics"
    missing = httpx.get(url)
    assert missing.status_code == 401 and "METRICS_TOKEN" in missing.json()["error"]
    assert httpx.get(url, headers={"Authorization": "Bearer wrong-token-000000"}).status_code == 403
    assert httpx.get(url, headers={"X-API-Key": "wrong-key-00000000000"}).status_code == 403
    assert httpx.get(url, headers={"Authorization": f"Basic {METRICS_TOKEN}"}).status_code == 401
    assert "waqtor_redis_up" in scrape(live, {"X-API-Key": KEY})


async def test_accounts_beyond_the_cap_are_counted_not_labelled(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_route, "MAX_ACCOUNTS", 3)
    async with App(make_settings(redis_url, tmp_path), run_worker=False) as app:
        for i in range(5):
            resp = await app.post("/api/accounts", json={"name": f"acct-{i}", "tier": "new"})
            assert resp.status_code in (200, 201), resp.text
        resp = await app.get("/metrics")
        assert resp.status_code == 200
        found = samples(resp.text)
    labelled = {s.labels["account"] for s in found["waqtor_account_backlog"]}
    assert len(labelled) == 3  # "default" and the first two by name
    assert value(found, "waqtor_accounts_unlisted") == 3


def _alerting(rule_expr: str, found: dict[str, list[Sample]]) -> set[str]:
    """Accounts an alert of the shape ``name{label="v", ...} == 1`` fires for (only that
    shape: enough for the paused-account rule, and it fails loudly on any other)."""
    match = re.fullmatch(r"(waqtor_[a-z_]+)\{([^}]*)\} == 1", rule_expr.strip())
    assert match, rule_expr
    wanted = dict(re.findall(r'([a-z_]+)="([^"]*)"', match[2]))
    return {
        s.labels["account"]
        for s in found[match[1]]
        if s.value == 1 and all(s.labels.get(k) == v for k, v in wanted.items())
    }


async def test_a_breaker_pause_is_told_from_an_operators_and_only_it_alerts(
    redis_url: str, tmp_path: Path
) -> None:
    root = Path(__file__).resolve().parent.parent / "deploy"
    rules = yaml.safe_load((root / "prometheus-alerts.yml").read_text())
    (rule,) = [
        r for g in rules["groups"] for r in g["rules"] if r["alert"] == "WaqtorAccountPaused"
    ]
    async with App(make_settings(redis_url, tmp_path), run_worker=False) as app:
        for name in ("by-hand", "tripped", "web-ban", "running"):
            resp = await app.post("/api/accounts", json={"name": name, "tier": "new"})
            assert resp.status_code in (200, 201), resp.text
        resp = await app.post("/api/accounts/by-hand/pause")
        assert resp.status_code == 200, resp.text
        # Created paused, with the operator's own words: still the operator's pause.
        resp = await app.post(
            "/api/accounts",
            json={"name": "on-hold", "tier": "new", "paused": True, "pausedReason": "holiday"},
        )
        assert resp.status_code in (200, 201), resp.text
        assert resp.json()["data"]["pausedReason"] == "paused by an operator: holiday"
        breaker = Breaker(app.app.state.services)
        await breaker.pause("tripped", "breaker: 3 ban signals (131048) within an hour")
        # A refused WhatsApp Web session pauses through the breaker, in the gateway's words.
        await breaker.pause("web-ban", "WhatsApp Web logged out (device removed)")
        found = samples((await app.get("/metrics")).text)
        assert _alerting(rule["expr"], found) == {"tripped", "web-ban"}
        expected = {
            "by-hand": "operator",
            "on-hold": "operator",
            "tripped": "breaker",
            "web-ban": "breaker",
        }
        for name in (*expected, "running"):
            by = expected.get(name)
            assert value(found, "waqtor_account_breaker_state", account=name, state="paused") == (
                1 if by else 0
            )
            for each in metrics_route.PAUSERS:
                assert value(found, "waqtor_account_paused", account=name, by=each) == (
                    1 if each == by else 0
                ), (name, each)
        # Resumed, nothing fires any more.
        for name in expected:
            resp = await app.post(f"/api/accounts/{name}/resume")
            assert resp.status_code == 200, resp.text
        found = samples((await app.get("/metrics")).text)
        assert _alerting(rule["expr"], found) == set()


def test_shipped_dashboard_and_alert_rules_name_real_series(live: LiveService) -> None:
    """Every series the Grafana dashboard and the alert rules query is one /metrics serves."""
    root = Path(__file__).resolve().parent.parent / "deploy"
    dashboard = json.loads((root / "grafana-dashboard.json").read_text())
    rules = yaml.safe_load((root / "prometheus-alerts.yml").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert {"WaqtorAccountPaused", "WaqtorUnknownOutcomes", "WaqtorCallbacksFailing"} <= {
        r["alert"] for r in alerts
    } and "WaqtorNoWorkerAlive" in {r["alert"] for r in alerts}
    for rule in alerts:
        assert rule["expr"] and rule["labels"]["severity"] and rule["annotations"]["summary"]
    exprs += [r["expr"] for r in alerts]
    served: set[str] = set()
    for family in text_string_to_metric_families(scrape(live)):
        # A family with no sample yet (no webhook received) still names its series.
        suffixes = ("", "_total", "_bucket", "_count", "_sum")
        served |= {family.name + s for s in suffixes} | {s.name for s in family.samples}
    for expr in exprs:
        for name in re.findall(r"waqtor_[a-z_]+", expr):
            assert name in served, f"{name} (in {expr!r}) is not served by /metrics"


def test_redis_down_is_a_figure_not_an_error(live: LiveService) -> None:
    live.redis.stop()
    try:
        found = samples(scrape(live))
        assert value(found, "waqtor_redis_up") == 0
        assert "waqtor_queue_jobs" not in found
    finally:
        live.redis.start()
    deadline = time.monotonic() + 10
    while value(samples(scrape(live)), "waqtor_redis_up") != 1:
        assert time.monotonic() < deadline, "Redis did not come back in the figures"
        time.sleep(0.2)


def test_multiprocess_mode_adds_up_a_separate_workers_figures(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, a ``serve --no-worker`` shows the provider figures of a
    ``waqtor worker`` process on the same host, which serves no HTTP itself."""
    shared = tmp_path / "prom"
    shared.mkdir()
    service = LiveService(message_delay=0, instant_threshold=0)
    service.env["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    service.redis.start()
    service.env["REDIS_URL"] = service.redis.url
    serve = Proc(["serve", "--port", str(service.port), "--no-worker"], service.env, service.log)
    worker = Proc(["worker"], dict(service.env), tmp_path / "worker.log")
    try:
        serve.start()
        wait_http(service.url + "/health")
        worker.start()
        with Client(service.url, service.key) as c:
            sent = c.send(phones(4, 800), "Hi")
            assert sent.jobId
            assert c.wait(sent.jobId, timeout=30).recipients.sent == 4
        found = samples(scrape(service))
        sent_by = {"provider": "simulator", "account": "default", "outcome": "sent"}
        assert value(found, "waqtor_provider_messages_total", **sent_by) == 4
        assert value(found, "waqtor_provider_request_seconds_count", provider="simulator") >= 1
    finally:
        worker.stop()
        serve.stop()
        service.stop()  # Redis and the service's files


def _by_account(c: Client, jobs: dict[str, list[str]]) -> dict[tuple[str, str], int]:
    """(account, status) -> recipients, from the API's own recipient listing: recipient i of a
    campaign over k accounts is sent by account i mod k."""
    out: dict[tuple[str, str], int] = {}
    for job_id, accounts in jobs.items():
        for r in c.iter_recipients(job_id):
            key = (accounts[r.index % len(accounts)], r.status)
            out[key] = out.get(key, 0) + 1
    return out


def _scraped_by_account(live: LiveService, accounts: set[str]) -> dict[tuple[str, str], int]:
    found = samples(scrape(live))
    return {
        (s.labels["account"], s.labels["status"]): int(s.value)
        for s in found.get("waqtor_account_messages", [])
        if s.labels["account"] in accounts
    }


def test_messages_by_status_and_account_follow_every_change() -> None:
    """waqtor_account_messages, kept by the ledger scripts, equals what the API lists per lane
    account after sends, failures, unknowns, an operator retry and resolve, a cancel, and a
    delete (which takes the recipients out again)."""
    service = LiveService(message_delay=0, instant_threshold=0).start()
    names = {"lane-a", "lane-b"}
    try:
        with Client(service.url, service.key) as c:
            for name in sorted(names):
                c.create_account(name, tier="regular", delayMs=0)
            numbers = phones(9, 300)
            c.set_faults(
                phones={
                    "+" + numbers[1]: "permanent",
                    "+" + numbers[4]: "permanent",
                    "+" + numbers[6]: "ambiguous",
                },
                lookup=False,
            )
            both = c.send(numbers, "Hi", accounts=["lane-a", "lane-b"])
            assert both.jobId
            c.wait(both.jobId, timeout=30)
            jobs = {both.jobId: ["lane-a", "lane-b"]}
            first = _by_account(c, jobs)
            assert first[("lane-a", "failed")] == 1 and first[("lane-b", "failed")] == 1
            assert first[("lane-a", "unknown")] == 1 and first[("lane-a", "sent")] == 3
            assert _scraped_by_account(service, names) == first

            c.set_faults(phones={}, lookup=False)
            assert c.retry(both.jobId).changed == 2
            c.resolve(both.jobId, 6, "sent", "checked-by-hand")
            c.wait(both.jobId, timeout=30)
            later = c.send(
                phones(3, 320), "Later", account="lane-b", send_at="2099-01-01T00:00:00Z"
            )
            assert later.jobId
            assert c.cancel(later.jobId).changed == 3
            jobs[later.jobId] = ["lane-b"]
            second = _by_account(c, jobs)
            assert second == {
                ("lane-a", "sent"): 5,
                ("lane-b", "sent"): 4,
                ("lane-b", "canceled"): 3,
            }
            assert _scraped_by_account(service, names) == second

            for job_id in jobs:
                c.remove_job(job_id)
            assert _scraped_by_account(service, names) == {}
    finally:
        service.stop()


def test_the_scripts_name_an_accounts_message_counts_as_keys_py_does() -> None:
    """The ledger scripts derive an account's counts key from its backlog key (the key they
    already hold): that swap must give the name keys.py gives, whatever the prefix."""
    from waqtor.store.keys import Keys
    from waqtor.store.scripts import source

    lua = source("_account_messages")
    assert "string.sub(backlog, 1, -8) .. 'msgs'" in lua
    for keys in (Keys(), Keys(prefix="{tag}:wq")):
        for account in ("default", "shop-1", "a.b_c"):
            backlog = keys.backlog(account)
            assert backlog.endswith("backlog")
            assert backlog[: -len("backlog")] + "msgs" == keys.account_messages(account)
