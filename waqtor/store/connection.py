"""Redis clients built from settings: a single Redis, a Sentinel-managed primary, a Cluster.

All three are named by one URL (``config.Settings.external_redis_url``), so every process
passes one string around: ``redis://`` / ``rediss://`` / ``unix://``,
``redis+sentinel://[user:pass@]host:port,host:port/<master>[?sentinel_password=...]`` and
``redis+cluster://[user:pass@]host:port`` (any node). Each gives a client with the API of
``redis.asyncio.Redis``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from redis._parsers.base import BaseParser
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from waqtor.config import CLUSTER_SCHEMES, SENTINEL_SCHEME

POOL_SIZE = 64


class NoReplicasError(RedisConnectionError):
    """``NOREPLICAS``: a primary with ``min-replicas-to-write`` refuses writes because too few
    replicas acknowledge it (it may have been cut off; see docs/deployment.md). Nothing was
    written, so it is handled like Redis being away: clients retry, the API answers 503."""


# redis-py maps an error's first word to its exception class in this table; without this entry
# NOREPLICAS is a plain ResponseError (a 500, a failed job) instead of an outage.
BaseParser.EXCEPTION_CLASSES["NOREPLICAS"] = NoReplicasError


def client_options(url: str) -> dict[str, Any]:
    """Options for redis-py (and for bullmq, which takes the same dict).

    ``socket_timeout=None``: redis-py's default read timeout equals bullmq's blocking wait, so an
    idle worker would keep silently reconnecting and pick new jobs up late.
    """
    parts = urlsplit(url)
    opts: dict[str, Any] = {"socket_timeout": None, "socket_connect_timeout": 2.0}
    if parts.scheme == "unix":
        opts["unix_socket_path"] = parts.path
    else:
        opts["host"] = parts.hostname or "localhost"
        opts["port"] = parts.port or 6379
        db = parts.path.lstrip("/")
        opts["db"] = int(db) if db else 0
        if parts.password:
            opts["password"] = parts.password
        if parts.username:
            opts["username"] = parts.username
        if parts.scheme == "rediss":
            opts["ssl"] = True
    return opts


def connect(url: str, *, patient: bool = False, client_name: str | None = None) -> Redis:
    """A pooled client.

    The API's client retries briefly, then lets errors surface as 503s. A worker's client is
    ``patient``: it rides out a Redis restart (about a minute of retries) instead of abandoning
    a campaign halfway. ``client_name`` names every connection (``CLIENT SETNAME``), again
    after each reconnect.
    """
    retry = (
        Retry(ExponentialBackoff(cap=2.0, base=0.1), 40)
        if patient
        else Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)
    )
    scheme = url.partition("://")[0]
    if scheme == SENTINEL_SCHEME:
        return _sentinel(url, retry, client_name)
    if scheme in CLUSTER_SCHEMES:
        return _cluster(url, retry, client_name)
    opts = client_options(url)
    if client_name:
        opts["client_name"] = client_name
    kind: type[Connection] | type[UnixDomainSocketConnection] = Connection
    if "unix_socket_path" in opts:
        opts["path"] = opts.pop("unix_socket_path")
        kind = UnixDomainSocketConnection
    elif opts.pop("ssl", False):
        kind = SSLConnection
    # Blocking: a burst of requests waits for a free connection instead of failing.
    pool = BlockingConnectionPool(
        max_connections=POOL_SIZE,
        timeout=10,
        connection_class=kind,
        decode_responses=True,
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=10,
        **opts,
    )
    return Redis(connection_pool=pool)


class _FollowingConnection(SentinelManagedConnection):
    """Asks the Sentinels for the primary before each connect attempt, retries included.

    redis-py 8's own connection asks only on its first connect: after the primary dies, its
    reconnects keep dialling the dead address until the retries run out."""

    async def connect(self) -> None:
        try:
            await super().connect()  # type: ignore[no-untyped-call]
        except MasterNotFoundError:
            # redis-py's message lists every Sentinel client's repr: a screenful per 503.
            name = self.connection_pool.service_name
            raise MasterNotFoundError(f"no Sentinel answered with a primary for {name!r}") from None

    async def _connect(self) -> None:
        if self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super()._connect()  # type: ignore[no-untyped-call]


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (asks the Sentinels for the primary on every new connection, drops
    connections to a demoted one) that also waits for a free connection, like ``connect``'s."""


def _common(retry: Retry, client_name: str | None) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "socket_timeout": None,
        "socket_connect_timeout": 2.0,
        "decode_responses": True,
        "retry": retry,
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 10,
    }
    if client_name:
        opts["client_name"] = client_name
    return opts


def _auth(parts: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if parts.password:
        out["password"] = unquote(parts.password)
    if parts.username:
        out["username"] = unquote(parts.username)
    return out


def sentinel_parts(url: str) -> tuple[list[tuple[str, int]], str, dict[str, Any], dict[str, Any]]:
    """``(sentinels, master name, the data nodes' auth, the Sentinels' auth)``."""
    rest = url.partition("://")[2]
    userinfo, _, hostpart = rest.rpartition("@")
    hosts, _, tail = hostpart.partition("/")
    master, _, query = tail.partition("?")
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.strip().rpartition(":")
        sentinels.append((name.strip("[]"), int(port)))
    auth = _auth(urlsplit(f"redis://{userinfo}@x")) if userinfo else {}
    q = {k: v[0] for k, v in parse_qs(query).items()}
    sentinel_auth = {
        k: q[f"sentinel_{k}"] for k in ("username", "password") if q.get(f"sentinel_{k}")
    }
    return sentinels, unquote(master), auth, sentinel_auth


def _sentinel(url: str, retry: Retry, client_name: str | None) -> Redis:
    sentinels, master, auth, sentinel_auth = sentinel_parts(url)
    manager = Sentinel(  # type: ignore[no-untyped-call]
        sentinels,
        # Short, and no retries of its own (redis-py's default backs off for seconds per
        # Sentinel): a dead or refusing Sentinel must not hold up asking the next one, and the
        # connection that asks retries the whole round.
        sentinel_kwargs={
            "socket_timeout": 1.0,
            "socket_connect_timeout": 1.0,
            "retry": Retry(NoBackoff(), 0),
            **sentinel_auth,
        },
    )
    client: Redis = manager.master_for(
        master,
        redis_class=Redis,
        connection_pool_class=_BlockingSentinelPool,
        connection_class=_FollowingConnection,
        max_connections=POOL_SIZE,
        timeout=10,
        **auth,
        **_common(retry, client_name),
    )
    return client


def _cluster(url: str, retry: Retry, client_name: str | None) -> Redis:
    scheme, _, rest = url.partition("://")
    parts = urlsplit("redis://" + rest)
    opts = _common(retry, client_name)
    opts.pop("retry_on_error")  # RedisCluster retries (and follows MOVED) on its own
    opts.pop("health_check_interval")
    cluster = _Cluster(
        host=parts.hostname or "localhost",
        port=parts.port or 6379,
        ssl=scheme.startswith("rediss"),
        max_connections=POOL_SIZE,
        **_auth(parts),
        **opts,
    )
    # The cluster client answers the same commands (every key of a deployment shares one hash
    # tag, so each script and MULTI stays on one node); the code above it is written once.
    return cast(Redis, cluster)


class _Cluster(RedisCluster):
    """redis-py's Cluster client, with scripts allowed in pipelines and MULTI: bullmq adds a job
    with a script inside the MULTI that also writes the campaign (``Engine.add_campaign``), and
    redis-py refuses EVALSHA in a cluster pipeline outright. Each script such a pipeline uses
    is loaded on the primaries first, so a node that lost its scripts (restarted) cannot make
    EVALSHA fail halfway through a MULTI."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sources: dict[str, Any] = {}
        #: A key of the deployment (``services.build`` sets it): its node answers INFO.
        self.home: str | None = None

    def home_node(self) -> Any:
        return self.get_node_from_key(self.home) if self.home else self.get_random_node()

    def register_script(self, script: Any) -> Any:
        registered = super().register_script(script)
        self.sources[registered.sha] = registered.script
        return registered

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if shard_hint:
            raise ValueError("shard_hint is not supported in cluster mode")
        return _ClusterPipeline(self, transaction)  # type: ignore[abstract]


class _ClusterPipeline(ClusterPipeline):
    def __init__(self, client: _Cluster, transaction: bool | None = None) -> None:
        super().__init__(client, transaction)
        self._owner = client
        self._shas: set[str] = set()

    def __await__(self) -> Generator[Any, None, ClusterPipeline]:
        # redis-py's Script awaits what ``evalsha`` returns; awaiting a ClusterPipeline would
        # initialize it again and drop every command queued so far.
        async def itself() -> ClusterPipeline:
            return self

        return itself().__await__()

    def info(self, section: Any = None, *args: Any, **kwargs: Any) -> ClusterPipeline:  # type: ignore[override]
        """INFO of the node that holds the deployment's keys (redis-py refuses it here)."""
        sections = [section, *args] if section else []
        return self.execute_command("INFO", *sections, target_nodes=self._owner.home_node())

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> ClusterPipeline:
        self._shas.add(sha)
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        shas, self._shas = self._shas, set()
        for sha in shas:
            await self._owner.script_load(self._owner.sources[sha])
        return await super().execute(raise_on_error, allow_redirections)


def set_home(client: Redis, key: str) -> None:
    """On a Cluster, name a key of the deployment: INFO then reads the node that holds it."""
    if isinstance(client, _Cluster):
        client.home = key
