"""Every reader and writer of the store over one Redis client, built once per process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from redis.asyncio import Redis

from waqtor.store.accounts import AccountStore
from waqtor.store.auth_failures import FailedAttempts
from waqtor.store.callback_queue import CallbackQueue
from waqtor.store.dashboard_reads import DashboardReads
from waqtor.store.gateways import GatewayStore
from waqtor.store.heartbeats import Heartbeats
from waqtor.store.idempotency import IdempotencyStore
from waqtor.store.job_index import JobIndex
from waqtor.store.keys import Keys
from waqtor.store.ledger import Ledger
from waqtor.store.pacing import Pacer
from waqtor.store.queue_stats import JobShapes, QueueStatsReader
from waqtor.store.reconcile_state import ReconcileState
from waqtor.store.replicas import ReplicaGuard
from waqtor.store.scrape import ScrapeReader
from waqtor.store.scripts import Scripts
from waqtor.store.server import eviction_policy
from waqtor.store.sessions import SessionStore
from waqtor.store.simulator import SimulatorStore
from waqtor.store.suppressions import Suppressions
from waqtor.store.web_sessions import WebSessions
from waqtor.store.webhook_index import WebhookIndex

#: Names one of bullmq's keys (``Engine.key``): the engine passes it in, so the store never
#: writes bullmq's key layout down itself.
BullKey = Callable[[str], str]


class Store:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        bull_key: BullKey,
        *,
        job_shapes: JobShapes,
        delay_ms: int,
        jitter: float,
        default_tier: str | None,
        today: Callable[[], date],
        replicas_ack: int | None = 0,
        ack_timeout_ms: int = 1000,
    ) -> None:
        """``replicas_ack``: replicas that must acknowledge claims and outcomes (None: as many
        as the primary reports; ``store.replicas``)."""
        self.redis = redis
        self.keys = keys
        self.bull_key = bull_key
        self.job_shapes = job_shapes
        self.scripts = scripts = Scripts(redis)
        guard = ReplicaGuard(redis, replicas_ack, ack_timeout_ms, home=keys.message_counts)
        self.ledger = Ledger(redis, keys, scripts, bull_key, guard)
        self.pacer = Pacer(redis, keys, scripts, delay_ms=delay_ms, jitter=jitter)
        self.accounts = AccountStore(redis, keys, default_tier, today)
        self.suppressions = Suppressions(redis, keys)
        self.heartbeats = Heartbeats(redis, keys)
        self.callback_queue = CallbackQueue(redis, keys, scripts)
        self.idempotency = IdempotencyStore(redis, keys, scripts)
        self.job_index = JobIndex(redis, keys)
        self.simulator = SimulatorStore(redis, keys)
        self.dashboard = DashboardReads(redis, keys)
        self.webhook_index = WebhookIndex(redis, keys, scripts)
        self.reconcile_state = ReconcileState(redis, keys, scripts, bull_key)
        self.web_sessions = WebSessions(redis, keys)
        self.gateways = GatewayStore(redis, keys, scripts)
        #: What ``/metrics`` reads besides the queue figures.
        self.scrape = ScrapeReader(redis, keys)

    def queue_stats(self) -> QueueStatsReader:
        """For the API only (its script is not registered elsewhere)."""
        return QueueStatsReader(self.redis, self.keys, self.job_shapes)

    def failed_attempts(self, *, limit: int, window_s: int) -> FailedAttempts:
        return FailedAttempts(self.redis, self.keys, self.scripts, limit=limit, window_s=window_s)

    def sessions(self) -> SessionStore:
        return SessionStore(self.redis, self.keys, self.scripts)

    async def ping(self) -> None:
        await self.redis.ping()

    async def eviction_policy(self) -> str:
        return await eviction_policy(self.redis)

    async def close(self) -> None:
        await self.redis.aclose()
