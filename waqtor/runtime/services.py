"""The parts one process needs, built once from settings and shared by the API and workers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from waqtor.config import Settings
from waqtor.domain.clock import Clock, SystemClock, day_of
from waqtor.engine import Engine
from waqtor.providers import cloud_api, evolution, waha
from waqtor.providers.registry import ProviderRegistry
from waqtor.providers.simulator import SimulatorProvider
from waqtor.providers.web import provider as web_provider
from waqtor.providers.web.hub import WebHub
from waqtor.runtime import shutdown
from waqtor.runtime.parts import Every
from waqtor.store.accounts import AccountStore
from waqtor.store.bundle import Store
from waqtor.store.callback_queue import CallbackQueue
from waqtor.store.connection import connect, set_home
from waqtor.store.gateways import GatewayStore
from waqtor.store.heartbeats import Heartbeats
from waqtor.store.idempotency import IdempotencyStore
from waqtor.store.job_index import JobIndex
from waqtor.store.keys import Keys
from waqtor.store.ledger import Ledger
from waqtor.store.pacing import Pacer
from waqtor.store.reconcile_state import ReconcileState
from waqtor.store.suppressions import Suppressions
from waqtor.store.webhook_index import WebhookIndex

#: How long closing all parts of ``Services`` may take (s).
CLOSE_S = 5.0


@dataclass
class Services:
    settings: Settings
    redis_url: str
    #: Every reader and writer of Redis; the fields below are its parts, named for callers.
    store: Store
    engine: Engine
    #: The simulator provider (the registry's default): its outbox and fault switches.
    simulator: SimulatorProvider
    #: Which provider sends for which account.
    providers: ProviderRegistry
    #: WhatsApp Web sessions: held and served by workers (``web.start()``), used by all.
    web: WebHub
    clock: Clock = field(default_factory=SystemClock)

    @property
    def gateways(self) -> GatewayStore:
        """What WhatsApp Web gateway accounts keep in Redis."""
        return self.store.gateways

    @property
    def keys(self) -> Keys:
        return self.store.keys

    @property
    def ledger(self) -> Ledger:
        return self.store.ledger

    @property
    def pacer(self) -> Pacer:
        return self.store.pacer

    @property
    def accounts(self) -> AccountStore:
        return self.store.accounts

    @property
    def suppressions(self) -> Suppressions:
        return self.store.suppressions

    @property
    def heartbeats(self) -> Heartbeats:
        return self.store.heartbeats

    @property
    def callback_queue(self) -> CallbackQueue:
        return self.store.callback_queue

    @property
    def idempotency(self) -> IdempotencyStore:
        return self.store.idempotency

    @property
    def job_index(self) -> JobIndex:
        return self.store.job_index

    @property
    def webhook_index(self) -> WebhookIndex:
        return self.store.webhook_index

    @property
    def reconcile_state(self) -> ReconcileState:
        return self.store.reconcile_state

    async def close(self, timeout_s: float = CLOSE_S) -> None:
        """Close every part, all within about ``timeout_s`` (a part that hangs is named in a
        warning and left behind: a shutdown never waits on it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for name, closing in (
            ("WhatsApp Web hub close", self.web.close),
            ("providers close", self.providers.close),
            ("queue (bullmq) close", self.engine.close),
            ("store (Redis) close", self.store.close),
        ):
            await shutdown.step(name, closing(), max(0.05, deadline - loop.time()))


def _every_part(s: Services) -> Every:
    """Never called: mypy checks here that ``Services`` has every part ``runtime.parts``
    declares, since FastAPI's injection of it as ``Parts[...]`` and ``Svc[...]`` is untyped."""
    return s


def build(
    settings: Settings, redis_url: str, *, patient: bool = False, clock: Clock | None = None
) -> Services:
    ticking: Clock = clock or SystemClock()
    prefix, bull_prefix = settings.key_prefixes(redis_url)
    keys = Keys(prefix=prefix)
    engine = Engine(
        connect(redis_url, patient=patient),
        settings.queue_name,
        attempts=settings.max_retries + 1,
        backoff_ms=settings.retry_backoff_ms,
        prefix=bull_prefix,
    )
    redis = connect(redis_url, patient=patient)
    set_home(redis, keys.message_counts)
    store = Store(
        redis,
        keys,
        engine.key,
        job_shapes=engine.job_shapes(),
        delay_ms=settings.message_delay,
        jitter=settings.message_jitter,
        default_tier=settings.default_account_tier,
        today=lambda: day_of(ticking.now_ms()),
        replicas_ack=settings.redis_min_replicas_ack,
        ack_timeout_ms=settings.redis_ack_timeout_ms,
    )
    simulator = SimulatorProvider(
        store.simulator,
        latency_ms=settings.sim_latency_ms,
        batch_size=settings.sim_batch_size,
        max_in_flight=settings.sim_max_in_flight,
    )
    providers = ProviderRegistry(simulator)
    providers.register(cloud_api.NAME, cloud_api.factory(settings))
    providers.register(waha.NAME, waha.factory(settings))
    providers.register(evolution.NAME, evolution.factory(settings))
    web = WebHub(settings, store.web_sessions, store.accounts, ticking)
    providers.register(web_provider.NAME, web_provider.factory(settings, web))
    return Services(
        settings=settings,
        redis_url=redis_url,
        store=store,
        engine=engine,
        simulator=simulator,
        providers=providers,
        web=web,
        clock=ticking,
    )
