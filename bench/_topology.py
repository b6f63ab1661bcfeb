"""Throwaway Redis deployments beyond one server, on free loopback ports in one folder:
a primary with replicas watched by Sentinels, and a Redis Cluster.

Used by the suite (``tests/test_redis_ha.py``) and ``python -m bench.chaos --failovers``.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from bench._redis_child import RedisChild, free_port

MASTER = "waqtor-primary"
#: Every node may be promoted: none waits Redis's default 5 s before feeding a new replica.
NODE_ARGS = ["--repl-diskless-sync-delay", "0"]
#: Sentinel's view of a dead primary: down after this long without an answer (ms).
DOWN_AFTER_MS = 1000


class SentinelChild:
    """``redis-server --sentinel`` (Debian's ``redis-sentinel`` is the same binary)."""

    def __init__(
        self, folder: Path, primary_port: int, quorum: int, password: str = "", own: str = ""
    ) -> None:
        """``password``: the data nodes' (``auth-pass``); ``own``: the Sentinel's own
        ``requirepass``."""
        self.dir = folder
        self.port = free_port()
        self.primary_port = primary_port
        self.quorum = quorum
        self.password = password
        self.own = own
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "sentinel.conf"  # Sentinel rewrites its file: one each
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary_port} {self.quorum}\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} 10000\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
            + (f"sentinel auth-pass {MASTER} {self.password}\n" if self.password else "")
            + (f"requirepass {self.own}\n" if self.own else "")
        )
        log = (self.dir / "sentinel.log").open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"sentinel on {self.port} did not start")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=0.5, password=self.own or None)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class SentinelGroup:
    """One primary, ``replicas`` replicas and ``sentinels`` Sentinels (quorum: a majority)."""

    def __init__(
        self,
        folder: Path,
        *,
        replicas: int = 1,
        sentinels: int = 3,
        password: str = "",
        sentinel_password: str = "",
    ) -> None:
        """``password``: ``requirepass`` and ``masterauth`` of the data nodes;
        ``sentinel_password``: the Sentinels' own ``requirepass``."""
        self.dir = folder
        self.password = password
        self.sentinel_password = sentinel_password
        self.node_args = [*NODE_ARGS]
        if password:
            self.node_args += ["--requirepass", password, "--masterauth", password]
        self.nodes = [RedisChild(folder / "node0", appendonly=False, extra=self.node_args)]
        self.replica_count = replicas
        self.sentinel_count = sentinels
        self.sentinels: list[SentinelChild] = []

    def start(self) -> SentinelGroup:
        primary = self.nodes[0]
        primary.dir.mkdir(parents=True, exist_ok=True)
        primary.start()
        for n in range(1, self.replica_count + 1):
            node = RedisChild(
                self.dir / f"node{n}",
                appendonly=False,
                extra=[*self.node_args, "--replicaof", "127.0.0.1", str(primary.port)],
            )
            node.dir.mkdir(parents=True, exist_ok=True)
            node.start()
            self.nodes.append(node)
        self.wait_replicas(self.replica_count)
        quorum = self.sentinel_count // 2 + 1
        for n in range(self.sentinel_count):
            sentinel = SentinelChild(
                self.dir / f"sentinel{n}",
                primary.port,
                quorum,
                self.password,
                self.sentinel_password,
            )
            sentinel.start()
            self.sentinels.append(sentinel)
        self.wait_sentinels_know_replicas()
        return self

    @property
    def hosts(self) -> str:
        """REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def primary_port(self) -> int:
        for s in self.sentinels:
            try:
                addr: Any = s.client().sentinel_get_master_addr_by_name(MASTER)
                return int(addr[1])
            except (redis.RedisError, TypeError):
                continue
        raise RuntimeError("no Sentinel answers")

    def data_client(self, port: int) -> redis.Redis:
        return redis.Redis(
            port=port, socket_timeout=0.5, decode_responses=True, password=self.password or None
        )

    def node(self, port: int) -> RedisChild:
        return next(n for n in self.nodes if n.port == port)

    def wait_replicas(self, count: int, timeout: float = 15, port: int | None = None) -> None:
        """Until the primary (the first node, or the one on ``port``) has ``count`` replicas
        online."""
        client = self.data_client(port or self.nodes[0].port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = client.info("replication")
            online = [
                v for k, v in info.items() if k.startswith("slave") and v.get("state") == "online"
            ]
            if len(online) >= count:
                return
            time.sleep(0.05)
        raise RuntimeError("replicas did not come online")

    def wait_sentinels_know_replicas(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            known = 0
            for s in self.sentinels:
                try:
                    if len(s.client().sentinel_slaves(MASTER)) >= self.replica_count:
                        known += 1
                except redis.RedisError:
                    pass
            if known == len(self.sentinels):
                return
            time.sleep(0.1)
        raise RuntimeError("Sentinels did not find the replicas")

    def kill_primary(self) -> int:
        """SIGKILL the primary (no goodbye to anyone); returns its port."""
        port = self.primary_port()
        self.node(port).stop(signal.SIGKILL)
        return port

    def wait_failover(self, old_port: int, timeout: float = 30) -> int:
        """The new primary's port, once the Sentinels have promoted a replica and it says so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                port = self.primary_port()
                if port != old_port:
                    role = self.data_client(port).info("replication")
                    if role.get("role") == "master":
                        return port
            except (redis.RedisError, RuntimeError):
                pass
            time.sleep(0.1)
        raise RuntimeError("no failover")

    def restart_as_replica(self, port: int) -> None:
        """Start a killed node again; Sentinel makes it a replica of the new primary."""
        node = self.node(port)
        node.extra = [*self.node_args, "--replicaof", "127.0.0.1", str(self.primary_port())]
        node.start()

    def stop(self) -> None:
        for s in self.sentinels:
            s.stop()
        for n in self.nodes:
            n.stop()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class ClusterGroup:
    """A Redis Cluster of ``masters`` primaries (no replicas), made with
    ``redis-cli --cluster create``."""

    def __init__(self, folder: Path, masters: int = 3, replicas: int = 0) -> None:
        """``replicas``: per primary (``--cluster-replicas``)."""
        self.dir = folder
        self.replicas = replicas
        self.nodes = [
            RedisChild(
                folder / f"node{n}",
                appendonly=False,
                extra=[*NODE_ARGS, "--cluster-enabled", "yes"],
            )
            for n in range(masters * (1 + replicas))
        ]

    def start(self) -> ClusterGroup:
        for node in self.nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
            node.extra += ["--cluster-config-file", str(node.dir / "nodes.conf")]
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [
                *("redis-cli", "--cluster", "create", *addresses, "--cluster-yes"),
                *("--cluster-replicas", str(self.replicas)),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [_raw(n.port, "CLUSTER", "INFO") for n in self.nodes]
            if all("cluster_state:ok" in str(s) or _ok(s) for s in states):
                if self.replicas:
                    self.wait_replicas_online()
                return self
            time.sleep(0.1)
        raise RuntimeError("the cluster did not come up")

    @property
    def url(self) -> str:
        """REDIS_CLUSTER_URL: any one node."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def node_of(self, key: str, replica: bool = False) -> int:
        """The port of the node that holds ``key``'s slot (or of its first replica)."""
        slot = int(_raw(self.nodes[0].port, "CLUSTER", "KEYSLOT", key))
        for start, end, primary, *_ in _raw(self.nodes[0].port, "CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return self._replica_of(int(primary[1])) if replica else int(primary[1])
        raise RuntimeError(f"no node holds slot {slot}")

    def _replica_of(self, port: int, timeout: float = 10) -> int:
        # From CLUSTER NODES: CLUSTER SLOTS leaves out a replica that has no data yet. A node
        # learns of its replica by gossip, a moment after the replica has attached.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = [line.split() for line in str(_raw(port, "CLUSTER", "NODES")).splitlines()]
            own = next(r[0] for r in rows if "myself" in r[2])
            for row in rows:
                if "slave" in row[2] and row[3] == own:
                    return int(row[1].split("@")[0].rsplit(":", 1)[1])
            time.sleep(0.1)
        raise RuntimeError(f"the node on {port} has no replica")

    def child(self, port: int) -> RedisChild:
        return next(n for n in self.nodes if n.port == port)

    def wait_replicas_online(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            roles = [redis.Redis(port=n.port).info("replication") for n in self.nodes]
            online = sum(
                1
                for info in roles
                for k, v in info.items()
                if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
            )
            if online >= len(self.nodes) - len(self.nodes) // (1 + self.replicas):
                return
            time.sleep(0.1)
        raise RuntimeError("the Cluster's replicas did not come online")

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _raw(port: int, *command: str) -> Any:
    client = redis.Redis(port=port, decode_responses=True)
    return client.execute_command(*command)  # type: ignore[no-untyped-call]


def _ok(state: object) -> bool:
    return isinstance(state, dict) and state.get("cluster_state") == "ok"
