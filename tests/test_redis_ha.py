"""Beyond one Redis: a Sentinel failover mid-campaign, the core flow on a Redis Cluster, and
the replica-acknowledgement guard. Every server is started here, on free loopback ports in the
test's own folder."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from bench._redis_child import RedisChild
from bench._topology import MASTER, NODE_ARGS, ClusterGroup, SentinelGroup
from tests.conftest import (
    HEADERS,
    KEY,
    App,
    Proc,
    env_for,
    free_port,
    make_settings,
    recipients,
    wait_for_job,
    wait_http,
)
from tests.dashboard_support import Browser, csrf_in
from tests.fake_cloud_api import TOKEN, TOKEN_ENV, FakeCloudApi, cloud_account
from waqtor.config import ConfigError, Settings, redis_label
from waqtor.domain.status import TERMINAL, RecipientStatus
from waqtor.runtime.services import build
from waqtor.store.connection import connect, sentinel_parts
from waqtor.store.keys import Keys
from waqtor.store.replicas import ReplicaGuard


# ----------------------------------------------------------------- settings and keys
def test_connection_settings_name_each_way_to_connect_and_keep_old_keys() -> None:
    single = Settings(redis_url="redis://127.0.0.1:7000/0", api_key=KEY)
    assert single.key_prefixes("redis://127.0.0.1:7000/0") == ("wq", "bull")  # unchanged
    sentinel = Settings(
        redis_sentinels="10.0.0.1:26379, 10.0.0.2:26379",
        redis_sentinel_master="main",
        redis_password="data p@ss",
        redis_sentinel_password="sentinel-pass",
        api_key=KEY,
    )
    url = sentinel.external_redis_url()
    assert url is not None and url.startswith("redis+sentinel://:data%20p%40ss@10.0.0.1:26379,")

    assert "pass" not in redis_label(url) and "main" in redis_label(url)
    hosts, master, auth, sentinel_auth = sentinel_parts(url)
    assert hosts == [("10.0.0.1", 26379), ("10.0.0.2", 26379)] and master == "main"
    assert auth == {"password": "data p@ss"} and sentinel_auth == {"password": "sentinel-pass"}
    cluster = Settings(redis_cluster_url="redis://10.0.0.5:7000", api_key=KEY)
    curl = cluster.external_redis_url()
    assert curl == "redis+cluster://10.0.0.5:7000"
    assert cluster.key_prefixes(curl) == ("{waqtor}:wq", "{waqtor}")
    flagged = Settings(redis_url="redis://10.0.0.5:7000", redis_cluster=True, api_key=KEY)
    assert flagged.external_redis_url() == curl
    tagged = Settings(redis_url="redis://h:1", redis_key_tag="shard-a", api_key=KEY)
    assert tagged.key_prefixes("redis://h:1") == ("{shard-a}:wq", "{shard-a}")

    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER"):
        Settings(redis_sentinels="h:1", api_key=KEY).external_redis_url()


# ----------------------------------------------------------------- Sentinel failover
class Serve:
    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = Proc(["serve", "--port", str(self.port)], env, tmp / "serve.log")

    def start(self) -> Serve:
        self.proc.start()
        wait_http(self.base + "/health", timeout=30)
        return self

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.base + path, headers=HEADERS, timeout=15, **kw)


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(tmp_path / "redis").start()
    yield group
    group.cleanup()


def _wait_job(serve: Serve, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = serve.call("GET", f"/api/queue/jobs/{job_id}").json()
            if last.get("data", {}).get("status") == "completed":
                return dict(last["data"])
        except (httpx.HTTPError, ValueError):
            pass  # the API answers 503 while Redis fails over: that is allowed
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not completed: {last}")


def test_sentinel_failover_mid_campaign_sends_each_recipient_at_most_once(
    sentinels: SentinelGroup, tmp_path: Path, fake_server: FakeCloudApi
) -> None:
    """The primary is SIGKILLed mid-campaign; the Sentinels promote the replica; nothing is
    sent until the old primary is back as a replica; the API, the dashboard and both workers
    follow it. Counted at the provider (a fake Cloud API outside
    Redis, so a write lost with the primary cannot hide a second send): no recipient twice,
    every recipient terminal."""
    fake = fake_server
    fake.reset()
    env = {
        **env_for(message_delay=15, send_lease_ms=1500),
        "API_KEY": KEY,
        "WAQTOR_DATA_DIR": str(tmp_path / "data"),
        "REDIS_SENTINELS": sentinels.hosts,
        "REDIS_SENTINEL_MASTER": MASTER,
        "CLOUD_API_BASE_URL": fake.url,
        TOKEN_ENV: TOKEN,
    }
    serve = Serve(tmp_path, env).start()
    worker = Proc(["worker"], env, tmp_path / "worker.log").start()
    try:
        resp = serve.call("POST", "/api/accounts", json=cloud_account(delayMs=15))
        assert resp.status_code == 201, resp.text
        n = 240
        resp = serve.call(
            "POST",
            "/api/messages/send-bulk",
            json={"recipients": recipients(n), "message": "Hi {name}", "account": "cloud"},
        )
        assert resp.status_code == 200, resp.text
        job_id = resp.json()["data"]["jobId"]
        deadline = time.monotonic() + 30
        while len(fake.sent) < 50:
            assert time.monotonic() < deadline, "the campaign did not start"
            time.sleep(0.02)
        old = sentinels.kill_primary()
        killed_at = time.monotonic()
        new = sentinels.wait_failover(old)
        promoted_s = time.monotonic() - killed_at
        # The Sentinels still list a replica for the primary (the old primary, down, once
        # they have switched; the new one, before): so by default each claim waits for it, and
        # none goes out on the new primary's word alone (a second failover would lose it).
        # Sends still under way at the kill end at once.
        listed = sentinels.sentinels[0].client().sentinel_slaves(MASTER)
        assert len(listed) >= 1, listed
        time.sleep(0.3)
        held = len(fake.sent)
        time.sleep(1.5)
        assert len(fake.sent) == held, "sent with no replica to acknowledge the claims"
        sentinels.restart_as_replica(old)  # as a supervisor would; Sentinel re-attaches it
        while len(fake.sent) <= held:  # sending goes on, through the new primary
            assert time.monotonic() - killed_at < 30, "nothing sent after the failover"
            time.sleep(0.05)
        resumed_s = time.monotonic() - killed_at
        job = _wait_job(serve, job_id, timeout=60)
        counts = Counter(m.to for m in fake.sent)
        duplicates = {to: c for to, c in counts.items() if c > 1}
        assert duplicates == {}, duplicates
        rows = serve.call(
            "GET", f"/api/queue/jobs/{job_id}/recipients", params={"limit": 1000}
        ).json()["data"]["recipients"]
        statuses = Counter(r["status"] for r in rows)
        assert len(rows) == n
        assert all(RecipientStatus(r["status"]) in TERMINAL for r in rows), statuses
        # Sent means it reached the provider; the few in flight at the kill may stay unknown.
        sent_phones = {r["phone"].lstrip("+") for r in rows if r["status"] == "sent"}
        assert sent_phones <= set(counts)
        assert statuses["sent"] + statuses["unknown"] == n and statuses["unknown"] <= 5
        assert job["status"] == "completed"
        # The dashboard (same process as the API) reads the new primary too.
        with httpx.Client(base_url=serve.base, timeout=15) as browser:
            form = browser.get("/admin/login")

            login = browser.post(
                "/admin/login",
                data={"csrf": csrf_in(form.text), "key": KEY, "next": "/admin/queues"},
            )
            assert login.status_code == 303
            page = browser.get("/admin/queues")
            assert page.status_code == 200 and "Queue overview" in page.text
        print(
            f"failover: primary {old} -> {new} promoted in {promoted_s:.1f} s, sending again "
            f"after {resumed_s:.1f} s; {dict(statuses)}"
        )
    finally:
        worker.stop()
        serve.proc.stop()


# ----------------------------------------------------------------- Redis Cluster
@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterGroup]:
    group = ClusterGroup(tmp_path_factory.mktemp("cluster")).start()
    yield group
    group.cleanup()


def _cluster_url(group: ClusterGroup) -> str:
    return "redis+cluster" + group.url.removeprefix("redis")


def _outbox(group: ClusterGroup, keys: Keys) -> list[str]:
    client = redis.Redis(port=group.node_of(keys.sim_outbox), decode_responses=True)
    import json

    return [json.loads(raw)["phone"] for raw in client.lrange(keys.sim_outbox, 0, -1)]


async def test_cluster_core_flow_with_one_hash_tag(cluster: ClusterGroup, tmp_path: Path) -> None:
    """send-bulk (instant and queued), stats, pause and resume, the dashboard's overview and a
    worker killed mid-campaign, on a 3-master Cluster: every key carries the ``{waqtor}`` tag,
    so every script and MULTI stays in one slot."""
    url = _cluster_url(cluster)
    flush = [redis.Redis(port=n.port, decode_responses=True) for n in cluster.nodes]
    for node in flush:
        node.flushall()
    settings = make_settings(url, tmp_path, message_delay=20)
    keys = Keys(prefix="{waqtor}:wq")
    async with App(settings, run_worker=False) as app:
        # Instant: sent within the request, no worker needed.
        resp = await app.post(
            "/api/messages/send-bulk", json={"recipients": recipients(3), "message": "Hi {name}"}
        )
        assert resp.status_code == 200 and resp.json()["mode"] == "instant", resp.text
        # Queued, paced: a worker process sends it, is killed, another finishes it.
        worker_env = {
            **env_for(message_delay=20),
            "API_KEY": KEY,
            "REDIS_CLUSTER_URL": cluster.url,
        }
        resp = await app.post(
            "/api/messages/send-bulk",
            json={"recipients": recipients(120, start=100), "message": "Hi {name}"},
        )
        assert resp.status_code == 200 and resp.json()["mode"] == "queue", resp.text
        job_id = resp.json()["data"]["jobId"]
        first = Proc(["worker"], worker_env, tmp_path / "w1.log").start()
        second: Proc | None = None
        try:
            deadline = time.monotonic() + 30
            while len(_outbox(cluster, keys)) < 30:
                assert time.monotonic() < deadline, (tmp_path / "w1.log").read_text()[-2000:]
                await asyncio.sleep(0.05)
            # Pause and resume the campaign while it runs.
            assert (await app.post(f"/api/queue/jobs/{job_id}/pause")).status_code == 200
            await wait_for_job(app.get, job_id, ("paused", "delayed"), timeout=15)
            paused_at = len(_outbox(cluster, keys))
            await asyncio.sleep(0.5)
            assert len(_outbox(cluster, keys)) <= paused_at + 1
            assert (await app.post(f"/api/queue/jobs/{job_id}/resume")).status_code == 200
            while len(_outbox(cluster, keys)) < paused_at + 20:
                assert time.monotonic() < deadline + 30
                await asyncio.sleep(0.05)
            first.signal(signal.SIGKILL)
            first.wait()
            second = Proc(["worker"], worker_env, tmp_path / "w2.log").start()
            await wait_for_job(app.get, job_id, timeout=60)
        finally:
            first.stop()
            if second is not None:
                second.stop()
        sent = _outbox(cluster, keys)
        assert len(sent) == len(set(sent)), "a recipient was sent twice"
        stats = (await app.get("/api/queue/stats")).json()["data"]
        assert stats["messages"]["sent"] + stats["messages"].get("unknown", 0) == 123
        assert stats["messages"]["sent"] >= 120
        # The list of jobs reads every job's state in one script over the tag's keys.
        listing = (await app.get("/api/queue/jobs", params={"limit": 50})).json()["data"]
        assert {j["id"]: j["status"] for j in listing["jobs"]}.get(job_id) == "completed", listing
        async with Browser(app) as b:
            assert (await b.login()).status_code == 303
            page = await b.get("/admin/queues")
            assert page.status_code == 200 and "Queue overview" in page.text
        # Every key the deployment wrote is under the one tag (bullmq's and ours).
        written = [str(k) for node in flush for k in node.keys("*")]
        assert written and all(k.startswith("{waqtor}") for k in written), written[:5]


async def test_two_deployments_with_different_tags_share_a_cluster_on_different_nodes(
    cluster: ClusterGroup, tmp_path: Path
) -> None:
    url = _cluster_url(cluster)
    for node in cluster.nodes:
        redis.Redis(port=node.port).flushall()
    a = make_settings(url, tmp_path / "a", redis_key_tag="waqtor")
    b = make_settings(url, tmp_path / "b", redis_key_tag="other")
    assert cluster.node_of("{waqtor}") != cluster.node_of("{other}")
    for settings, start in ((a, 0), (b, 500)):
        s = build(settings, url)
        try:
            await s.accounts.get("default")
        finally:
            await s.close()
        async with App(settings) as app:
            resp = await app.post(
                "/api/messages/send-bulk",
                json={"recipients": recipients(15, start), "message": "Hi {name}"},
            )
            assert resp.status_code == 200 and resp.json()["mode"] == "queue", resp.text
            await wait_for_job(app.get, resp.json()["data"]["jobId"], timeout=30)
    by_node = {
        n.port: {
            str(k).split("}")[0] + "}"
            for k in redis.Redis(port=n.port, decode_responses=True).keys("*")
        }
        for n in cluster.nodes
    }
    assert by_node[cluster.node_of("{waqtor}")] == {"{waqtor}"}
    assert by_node[cluster.node_of("{other}")] == {"{other}"}


# ----------------------------------------------------------------- replica acknowledgement
@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[tuple[RedisChild, RedisChild]]:
    primary = RedisChild(tmp_path / "primary", appendonly=False, extra=NODE_ARGS)
    primary.dir.mkdir()
    primary.start()
    replica = RedisChild(
        tmp_path / "replica",
        appendonly=False,
        extra=["--replicaof", "127.0.0.1", str(primary.port)],
    )
    replica.dir.mkdir()
    replica.start()
    client = redis.Redis(port=primary.port, decode_responses=True)
    deadline = time.monotonic() + 10
    while client.info("replication").get("slave0", {}).get("state") != "online":
        assert time.monotonic() < deadline, "the replica did not come online"
        time.sleep(0.05)
    yield primary, replica
    if replica.proc is not None and replica.proc.poll() is None:
        replica.proc.send_signal(signal.SIGCONT)
    replica.stop()
    primary.stop()


async def test_no_claim_is_sent_until_a_replica_acknowledges_it(
    replicated: tuple[RedisChild, RedisChild], tmp_path: Path
) -> None:
    """The replica is frozen (SIGSTOP: ``CLIENT PAUSE`` would not stop replication). The
    claims after that are never acknowledged, so nothing more is sent; they go back to
    pending. SIGCONT: the campaign goes on and completes, every recipient once."""
    primary, replica = replicated
    settings = make_settings(primary.url, tmp_path, message_delay=20, redis_ack_timeout_ms=300)
    async with App(settings) as app:
        resp = await app.post(
            "/api/messages/send-bulk",
            json={"recipients": recipients(80), "message": "Hi {name}"},
        )
        assert resp.status_code == 200 and resp.json()["mode"] == "queue", resp.text
        job_id = resp.json()["data"]["jobId"]

        async def outbox() -> list[str]:
            got = await app.get("/api/simulator/messages", params={"limit": 1000})
            return [m["phone"] for m in got.json()["data"]["messages"]]

        deadline = time.monotonic() + 20
        while len(await outbox()) < 10:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert replica.proc is not None
        replica.proc.send_signal(signal.SIGSTOP)
        # A claim acknowledged just before the stop may still go out; nothing after it.
        await asyncio.sleep(1.0)
        frozen = len(await outbox())
        await asyncio.sleep(2.0)
        assert len(await outbox()) == frozen, "sent while the replica could not acknowledge"
        rows = (
            await app.get(f"/api/queue/jobs/{job_id}/recipients", params={"limit": 200})
        ).json()["data"]["recipients"]
        # Put back, or claimed again just now (and waiting for its acknowledgement again).
        put_back = [r for r in rows if r["errorCode"] == "replica_ack"]
        assert put_back and all(r["status"] in ("retry", "sending") for r in put_back)
        # No attempt used up by being put back: only the claim under way, if any, counts.
        assert all(r["attempts"] == (1 if r["status"] == "sending" else 0) for r in put_back)
        replica.proc.send_signal(signal.SIGCONT)
        await wait_for_job(app.get, job_id, timeout=40)
        sent = await outbox()
        assert len(sent) == 80 and len(set(sent)) == 80


async def test_a_primary_refusing_writes_for_want_of_replicas_is_an_outage(tmp_path: Path) -> None:
    """``min-replicas-to-write`` (the second fence): the primary answers NOREPLICAS; the API
    says 503 with the cause, as when Redis is away, not a 500."""
    server = RedisChild(
        tmp_path / "fenced", appendonly=False, extra=["--min-replicas-to-write", "1"]
    )
    server.dir.mkdir()
    server.start()
    try:
        async with App(make_settings(server.url, tmp_path), run_worker=False) as app:
            resp = await app.post(
                "/api/messages/send-bulk",
                json={"recipients": recipients(20), "message": "Hi {name}"},
            )
            assert resp.status_code == 503, resp.text
            assert "replicas" in resp.json()["error"]
    finally:
        server.stop()


async def test_sentinel_with_passwords_on_the_nodes_and_the_sentinels(tmp_path: Path) -> None:
    """REDIS_PASSWORD reaches the data nodes and REDIS_SENTINEL_PASSWORD the Sentinels; with a
    wrong Sentinel password no primary is found (and the message names no password)."""
    group = SentinelGroup(
        tmp_path / "redis", password="data-pass-0123", sentinel_password="sentinel-pass-0123"
    ).start()
    try:
        values: dict[str, Any] = {
            "redis_sentinels": group.hosts,
            "redis_sentinel_master": MASTER,
            "redis_password": "data-pass-0123",
            "api_key": KEY,
        }
        good = Settings(**values, redis_sentinel_password="sentinel-pass-0123")
        url = good.external_redis_url()
        assert url is not None
        s = build(good, url)
        try:
            await s.accounts.get("default")
            assert await s.store.redis.set("wq:probe", "1")
            assert group.data_client(group.primary_port()).get("wq:probe") == "1"
        finally:
            await s.close()
        bad = Settings(**values, redis_sentinel_password="wrong-pass-0123")
        bad_url = bad.external_redis_url()
        assert bad_url is not None
        s = build(bad, bad_url)
        try:
            with pytest.raises(redis.exceptions.ConnectionError) as failed:
                await s.store.redis.ping()
            assert "no Sentinel answered" in str(failed.value) and "pass" not in str(failed.value)
        finally:
            await s.close()
    finally:
        group.cleanup()


async def test_on_a_cluster_with_replicas_the_claims_wait_for_the_tags_replica(
    tmp_path: Path,
) -> None:
    """The same guard on a Cluster (3 primaries, a replica each): the WAIT goes to the node
    that holds the ``{waqtor}`` slot, on the connection of the write. Freezing that node's
    replica stops the sends; SIGCONT lets the campaign finish, each recipient once."""
    group = ClusterGroup(tmp_path / "cluster", masters=3, replicas=1).start()
    try:
        url = _cluster_url(group)
        replica = group.child(group.node_of("{waqtor}", replica=True))
        settings = make_settings(url, tmp_path, message_delay=20, redis_ack_timeout_ms=300)
        keys = Keys(prefix="{waqtor}:wq")
        async with App(settings) as app:
            resp = await app.post(
                "/api/messages/send-bulk",
                json={"recipients": recipients(60), "message": "Hi {name}"},
            )
            assert resp.status_code == 200 and resp.json()["mode"] == "queue", resp.text
            job_id = resp.json()["data"]["jobId"]
            deadline = time.monotonic() + 20
            while len(_outbox(group, keys)) < 10:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            assert replica.proc is not None
            replica.proc.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(1.0)
                frozen = len(_outbox(group, keys))
                await asyncio.sleep(2.0)
                assert len(_outbox(group, keys)) == frozen, "sent without the replica's ack"
            finally:
                replica.proc.send_signal(signal.SIGCONT)
            await wait_for_job(app.get, job_id, timeout=40)
        sent = _outbox(group, keys)
        assert len(sent) == 60 and len(set(sent)) == 60
    finally:
        group.cleanup()


async def test_the_default_count_follows_the_replicas_the_primary_has(tmp_path: Path) -> None:
    """Unset, the count is what the primary reports, a replica still copying included, and a
    fixed count stays put: with none attached, a fixed 1 is never acknowledged."""

    primary = RedisChild(tmp_path / "p", appendonly=False, extra=NODE_ARGS)
    primary.dir.mkdir()
    primary.start()
    replica = RedisChild(
        tmp_path / "r", appendonly=False, extra=["--replicaof", "127.0.0.1", str(primary.port)]
    )
    client = connect(primary.url)
    try:
        script = client.register_script("return redis.call('SET', KEYS[1], ARGV[1])")
        auto, fixed = ReplicaGuard(client, None, 200), ReplicaGuard(client, 1, 200)
        assert await auto.wanted() == 0
        done = await fixed.run(script, ["k"], ["v"])
        assert not done.ok and done.acks == 0 and fixed.timeouts == 1
        replica.dir.mkdir()
        replica.start()
        deadline = time.monotonic() + 5
        while await auto.wanted() != 1:  # re-read within REFRESH_S, in any state
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + 10
        while not (done := await fixed.run(script, ["k"], ["w"])).ok:
            assert time.monotonic() < deadline, "the replica never acknowledged"
        assert done.acks == 1 and (await auto.run(script, ["k"], ["x"])).ok
    finally:
        await client.aclose()
        replica.stop()
        primary.stop()
