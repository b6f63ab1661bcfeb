"""The parts one process needs, built once from settings and shared by the API and workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from redis.asyncio import Redis

from waqtor.config import Settings
from waqtor.domain.clock import Clock, SystemClock
from waqtor.engine import Engine
from waqtor.providers import cloud_api, evolution, waha
from waqtor.providers.base import Provider
from waqtor.providers.registry import ProviderRegistry
from waqtor.providers.simulator import SimulatorProvider
from waqtor.providers.web import provider as web_provider
from waqtor.providers.web.hub import WebHub
from waqtor.store.accounts import AccountStore
from waqtor.store.connection import connect
from waqtor.store.gateways import GatewayStore
from waqtor.store.keys import Keys
from waqtor.store.ledger import Ledger
from waqtor.store.pacing import Pacer
from waqtor.store.scripts import Scripts
from waqtor.store.web_sessions import WebSessions


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
    #: WhatsApp Web sessions: held and served by workers (``web.start()``), used by all.
    web: WebHub
    clock: Clock = field(default_factory=SystemClock)

    @cached_property
    def gateways(self) -> GatewayStore:
        """What WhatsApp Web gateway accounts keep in Redis."""
        return GatewayStore(self.redis, self.keys, self.scripts)

    @property
    def simulator(self) -> SimulatorProvider | None:
        return self.provider if isinstance(self.provider, SimulatorProvider) else None

    async def close(self) -> None:
        await self.web.close()
        await self.providers.close()
        await self.engine.close()
        await self.redis.aclose()


def build(
    settings: Settings, redis_url: str, *, patient: bool = False, clock: Clock | None = None
) -> Services:
    redis = connect(redis_url, patient=patient)
    keys = Keys(prefix=settings.key_prefix, queue=settings.queue_name)
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
    providers.register(waha.NAME, waha.factory(settings))
    providers.register(evolution.NAME, evolution.factory(settings))
    accounts = AccountStore(redis, keys, settings.default_account_tier)
    clock = clock or SystemClock()
    web = WebHub(settings, WebSessions(redis, keys), accounts, clock)
    providers.register(web_provider.NAME, web_provider.factory(settings, web))
    return Services(
        settings=settings,
        redis_url=redis_url,
        redis=redis,
        keys=keys,
        ledger=Ledger(redis, keys, scripts),
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
            attempts=settings.max_retries + 1,
            backoff_ms=settings.retry_backoff_ms,
        ),
        accounts=accounts,
        scripts=scripts,
        web=web,
        clock=clock,
    )
