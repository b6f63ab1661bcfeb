"""The parts one process needs, built once from settings and shared by the API and workers."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis

from waqtor.config import ConfigError, Settings, is_cluster
from waqtor.domain.clock import Clock, SystemClock
from waqtor.engine import Engine
from waqtor.providers import cloud_api
from waqtor.providers.base import Provider
from waqtor.providers.registry import ProviderRegistry
from waqtor.providers.simulator import SimulatorProvider
from waqtor.store.accounts import AccountStore
from waqtor.store.connection import connect, set_home
from waqtor.store.keys import Keys
from waqtor.store.ledger import Ledger
from waqtor.store.pacing import Pacer
from waqtor.store.replicas import ReplicaGuard
from waqtor.store.scripts import Scripts


@dataclass
class Services:
    settings: Settings
    redis_url: str
    redis: Redis
    keys: Keys
    ledger: Ledger
    pacer: Pacer
    provider: Provider
    engine: Engine
    providers: ProviderRegistry
    accounts: AccountStore
    scripts: Scripts
    clock: Clock = field(default_factory=SystemClock)

    @property
    def simulator(self) -> SimulatorProvider | None:
        return self.provider if isinstance(self.provider, SimulatorProvider) else None

    async def close(self) -> None:
        await self.providers.close()
        await self.engine.close()
        await self.redis.aclose()


def build(
    settings: Settings, redis_url: str, *, patient: bool = False, clock: Clock | None = None
) -> Services:
    redis = connect(redis_url, patient=patient)
    prefix, bull_prefix = settings.key_prefixes(redis_url)
    keys = Keys(prefix=prefix, bull_prefix=bull_prefix, queue=settings.queue_name)
    set_home(redis, keys.message_counts)
    scripts = Scripts(redis)
    provider = SimulatorProvider(
        redis,
        keys,
        latency_ms=settings.sim_latency_ms,
        batch_size=settings.sim_batch_size,
        max_in_flight=settings.sim_max_in_flight,
    )
    providers = ProviderRegistry(provider)
    providers.register(cloud_api.NAME, cloud_api.factory(settings))
    return Services(
        settings=settings,
        redis_url=redis_url,
        redis=redis,
        keys=keys,
        ledger=Ledger(redis, keys, scripts, replica_guard(settings, redis_url, redis)),
        pacer=Pacer(
            redis,
            keys,
            scripts,
            delay_ms=settings.message_delay,
            jitter=settings.message_jitter,
        ),
        provider=provider,
        providers=providers,
        engine=Engine(
            connect(redis_url, patient=patient),
            settings.queue_name,
            prefix=bull_prefix,
            attempts=settings.max_retries + 1,
            backoff_ms=settings.retry_backoff_ms,
        ),
        accounts=AccountStore(redis, keys, settings.default_account_tier),
        scripts=scripts,
        clock=clock or SystemClock(),
    )


def replica_guard(settings: Settings, redis_url: str, redis: Redis) -> ReplicaGuard:
    """The WAIT after claims and outcomes (``store.replicas``). Not on a Cluster yet: there WAIT
    would have to go to the one node that holds the tag's slot, on the write's connection."""
    wanted = settings.redis_min_replicas_ack
    if is_cluster(redis_url):
        if wanted:
            raise ConfigError("REDIS_MIN_REPLICAS_ACK is not supported on a Redis Cluster yet")
        wanted = 0
    return ReplicaGuard(redis, wanted, settings.redis_ack_timeout_ms)
