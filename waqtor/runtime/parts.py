"""The parts of ``Services``, one read-only property each, for callers to compose.

Interface segregation: above the store no function takes the whole ``Services`` bag. Each
consumer module composes the parts it reads into its own ``Protocol`` (``control.Controls`` is
``HasClock, HasEngine, HasLedger, HasJobIndex``), so mypy proves that a function touches only
what it declares, a reader sees at the signature what a function can reach, and a test can pass
a small object with just those attributes. A module's protocol lists ``Has*`` parts only, in
this module's order, never another protocol: typing is structural, so a wider protocol already
satisfies every narrower one it covers, and flat bases cannot clash in the method resolution
order. ``Services`` satisfies every one of them (fields and properties alike, since each is
declared as a read-only property); only the composition roots (``runtime/services.py``,
``api/deps.py``, the app factories, ``cli/``, the worker's process entry) name ``Services``
itself, which ``tests/test_layers.py`` checks.
"""

from __future__ import annotations

from typing import Protocol

from waqtor.config import Settings
from waqtor.domain.clock import Clock
from waqtor.engine import Engine
from waqtor.providers.registry import ProviderRegistry
from waqtor.providers.simulator import SimulatorProvider
from waqtor.providers.web.hub import WebHub
from waqtor.store.accounts import AccountStore
from waqtor.store.bundle import Store
from waqtor.store.callback_queue import CallbackQueue
from waqtor.store.gateways import GatewayStore
from waqtor.store.heartbeats import Heartbeats
from waqtor.store.idempotency import IdempotencyStore
from waqtor.store.job_index import JobIndex
from waqtor.store.ledger import Ledger
from waqtor.store.pacing import Pacer
from waqtor.store.reconcile_state import ReconcileState
from waqtor.store.suppressions import Suppressions
from waqtor.store.webhook_index import WebhookIndex


class HasSettings(Protocol):
    @property
    def settings(self) -> Settings: ...


class HasRedisUrl(Protocol):
    """Where Redis is: for the health route's label, and the worker's own connections."""

    @property
    def redis_url(self) -> str: ...


class HasClock(Protocol):
    @property
    def clock(self) -> Clock: ...


class HasEngine(Protocol):
    @property
    def engine(self) -> Engine: ...


class HasStore(Protocol):
    """The whole store: for the few readers that span many of its parts (metrics, overview)."""

    @property
    def store(self) -> Store: ...


class HasLedger(Protocol):
    @property
    def ledger(self) -> Ledger: ...


class HasPacer(Protocol):
    @property
    def pacer(self) -> Pacer: ...


class HasAccounts(Protocol):
    @property
    def accounts(self) -> AccountStore: ...


class HasSuppressions(Protocol):
    @property
    def suppressions(self) -> Suppressions: ...


class HasHeartbeats(Protocol):
    @property
    def heartbeats(self) -> Heartbeats: ...


class HasCallbackQueue(Protocol):
    @property
    def callback_queue(self) -> CallbackQueue: ...


class HasIdempotency(Protocol):
    @property
    def idempotency(self) -> IdempotencyStore: ...


class HasJobIndex(Protocol):
    @property
    def job_index(self) -> JobIndex: ...


class HasWebhookIndex(Protocol):
    @property
    def webhook_index(self) -> WebhookIndex: ...


class HasReconcileState(Protocol):
    @property
    def reconcile_state(self) -> ReconcileState: ...


class HasGateways(Protocol):
    @property
    def gateways(self) -> GatewayStore: ...


class HasProviders(Protocol):
    @property
    def providers(self) -> ProviderRegistry: ...


class HasSimulator(Protocol):
    @property
    def simulator(self) -> SimulatorProvider: ...


class HasWeb(Protocol):
    @property
    def web(self) -> WebHub: ...


class Every(
    HasSettings,
    HasRedisUrl,
    HasClock,
    HasEngine,
    HasStore,
    HasLedger,
    HasPacer,
    HasAccounts,
    HasSuppressions,
    HasHeartbeats,
    HasCallbackQueue,
    HasIdempotency,
    HasJobIndex,
    HasWebhookIndex,
    HasReconcileState,
    HasGateways,
    HasProviders,
    HasSimulator,
    HasWeb,
    Protocol,
):
    """Every part: what ``Services`` must satisfy (checked in ``services.py``)."""
