"""Replica acknowledgement (``WAIT``) of the writes that guard at-most-once.

Redis replicates asynchronously: a primary that dies can take its last acknowledged writes with
it, and the replica Sentinel promotes then shows a claimed recipient as ``pending`` again. So a
claim (``sending`` and the attempt id) and a recorded outcome are followed by ``WAIT n
timeout`` on the same connection, in the same round trip (the timeout cut into growing steps:
``steps``), and a claim whose acknowledgement does not come is not sent (``Ledger`` /
``batches`` put it back to pending).

That is also the fence: a worker still connected to a primary that has been cut off from its
replicas gets no acknowledgement and sends nothing.

How many replicas: REDIS_MIN_REPLICAS_ACK, or by default as many as the primary reports
(``INFO replication``, any state: a replica still syncing can be promoted too) or, under
Sentinel, as many as the Sentinels list, down ones included (whichever is more), re-read every
``REFRESH_S`` so that a process follows a failover or a replica added later.

WAIT counts replicas whose acknowledged offset covers this connection's last write;
replication is one stream, so an acknowledged claim also covers every earlier write of the
primary, other connections' included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import AskError, MovedError, NoScriptError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger("waqtor.store.replicas")

#: How often the default (auto) replica count is read again from the primary (s): a replica
#: that has just attached is waited for within this long.
REFRESH_S = 0.5
#: The first WAIT's timeout (ms); each further one is this many times longer.
FIRST_STEP_MS = 20
STEP_GROWTH = 2.5


def steps(timeout_ms: int) -> list[int]:
    """The timeout cut into growing WAITs, sent one after another in the same round trip.

    Redis 7.0 now and then leaves a WAIT waiting for the replica's once-a-second ACK instead of
    asking for one (seen here on loopback: about 1 WAIT in 400 took its whole 1 s timeout).
    Each WAIT asks the replicas again (``REPLCONF GETACK``), so a missed ask costs 20 ms, not
    the whole timeout; once the write is acknowledged the later WAITs return at once."""
    out: list[int] = []
    step = float(FIRST_STEP_MS)
    while sum(out) < timeout_ms:
        out.append(max(1, min(round(step), timeout_ms - sum(out))))
        step *= STEP_GROWTH
    return out


@dataclass(frozen=True, slots=True)
class Acked:
    """A script's reply, and whether enough replicas acknowledged it."""

    reply: Any
    ok: bool
    acks: int = 0
    wanted: int = 0


class ReplicaGuard:
    """``wanted``: replicas to wait for (None: as many as the primary reports; 0: no wait)."""

    def __init__(
        self, redis: Redis, wanted: int | None, timeout_ms: int, home: str | None = None
    ) -> None:
        """``home``: on a Cluster, a key of the deployment: its node is asked how many replicas
        it has (every key shares one hash tag, so one node holds them all)."""
        self.redis = redis
        self.home = home
        self.fixed = wanted
        self.timeout_ms = timeout_ms
        self._steps = steps(timeout_ms)
        self._auto = 0
        self._read_at = float("-inf")
        #: Writes whose acknowledgement timed out, since start (for logs and tests).
        self.timeouts = 0
        self.waits = 0

    async def wanted(self) -> int:
        if self.fixed is not None:
            return self.fixed
        now = time.monotonic()
        if now - self._read_at >= REFRESH_S:
            self._read_at = now
            try:
                if isinstance(self.redis, RedisCluster) and self.home:
                    info = await self.redis.info("replication", target_nodes=self._node(self.home))
                else:
                    info = await self.redis.info("replication")
            except Exception as exc:  # the write itself will say what is wrong
                log.debug("INFO replication failed: %s", exc)
                return self._auto
            # Every replica the primary has, in whatever state: one still loading its first copy
            # can be promoted too, so a claim waits for it as well (and is put back if it
            # cannot answer in time) rather than go out on the primary's word alone.
            known = sum(
                1
                for name, value in info.items()
                if name.startswith("slave") and isinstance(value, dict)
            )
            # Under Sentinel, also every replica the Sentinels know, down ones included. Just
            # after a failover the new primary has no replica attached (the old primary is
            # down), so its own count is 0; claims acknowledged by nobody would be lost by the
            # next failover and sent again (seen in the chaos runs). Sentinel still lists the
            # old primary, as a replica that is down: sending waits for it to come back.
            known = max(known, await self._sentinel_replicas())
            if known != self._auto:
                log.info("replicas that acknowledge each claim: %d (was %d)", known, self._auto)
            self._auto = known
        return self._auto

    async def _sentinel_replicas(self) -> int:
        """Replicas the Sentinels list for this primary, in any state; 0 without Sentinel."""
        pool = getattr(self.redis, "connection_pool", None)  # a Cluster client has none
        manager = getattr(pool, "sentinel_manager", None)
        service = getattr(pool, "service_name", None)
        if manager is None or service is None:
            return 0
        for sentinel in manager.sentinels:
            try:
                replicas = await sentinel.sentinel_slaves(service)
            except Exception as exc:  # another Sentinel may answer
                log.debug("SENTINEL REPLICAS failed: %s", exc)
                continue
            return len(replicas)
        return 0

    async def run(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Acked:
        """Run ``script``, then WAIT for the replicas on the same connection."""
        wanted = await self.wanted()
        if wanted <= 0:
            return Acked(await script(keys=list(keys), args=list(args)), True)
        if isinstance(self.redis, RedisCluster):
            return await self._run_on_node(script, keys, args, wanted)
        for _ in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                for step in self._steps:
                    pipe.execute_command("WAIT", wanted, step)
                reply, *answers = await pipe.execute(raise_on_error=False)
            if isinstance(reply, NoScriptError):  # a new primary, or SCRIPT FLUSH: load, again
                await self.redis.script_load(script.script)
                continue
            if isinstance(reply, Exception):
                raise reply
            for answer in answers:
                if isinstance(answer, Exception):
                    raise answer
            self.waits += 1
            acks = max(int(a) for a in answers)
            ok = acks >= wanted
            if not ok:
                self.timeouts += 1
                await self._rediscover()
            return Acked(reply, ok, acks, wanted)
        raise NoScriptError("script could not be loaded")

    def _node(self, key: str) -> ClusterNode:
        node = self.redis.get_node_from_key(key)  # type: ignore[attr-defined]
        if node is None:
            raise RedisConnectionError(f"no Cluster node holds {key!r}")
        found: ClusterNode = node
        return found

    async def _run_on_node(
        self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any], wanted: int
    ) -> Acked:
        """On a Cluster: the script and its WAITs on one connection to the node that holds the
        keys' slot (the Cluster client would send a keyless WAIT to every primary)."""
        cluster: Any = self.redis
        if not cluster.nodes_manager.slots_cache:
            await cluster.initialize()
        for _ in range(2):
            commands = [PipelineCommand(0, "EVALSHA", script.sha, len(keys), *keys, *args)]
            commands += [
                PipelineCommand(n + 1, "WAIT", wanted, step) for n, step in enumerate(self._steps)
            ]
            await self._node(str(keys[0])).execute_pipeline(commands)
            reply, *answers = [c.result for c in commands]
            if isinstance(reply, NoScriptError):
                await cluster.script_load(script.script)
                continue
            if isinstance(reply, (MovedError, AskError, TryAgainError)):
                # The slot moved (a Cluster failover): nothing ran. Learn the new layout; the
                # caller tries again later, as after any outage.
                await cluster.nodes_manager.initialize()
                raise RedisConnectionError(f"the Cluster moved the slot: {reply}")
            if isinstance(reply, Exception):
                raise reply
            return self._acked(reply, answers, wanted)
        raise NoScriptError("script could not be loaded")

    def _acked(self, reply: Any, answers: list[Any], wanted: int) -> Acked:
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        self.waits += 1
        acks = max(int(a) for a in answers)
        if acks < wanted:
            self.timeouts += 1
        return Acked(reply, acks >= wanted, acks, wanted)

    async def _rediscover(self) -> None:
        """After a timeout, ask Sentinel for the primary again: if this one has been replaced,
        idle connections to it are dropped now, not when it is demoted."""
        pool = self.redis.connection_pool
        find = getattr(pool, "get_master_address", None)
        if find is not None:
            try:
                await find()
            except Exception as exc:
                log.warning("Sentinel did not name a primary: %s", exc)
        self._read_at = float("-inf")
