"""Typed bodies of every route, named as the server names their fields (camelCase, as on the
wire), so a field reads the same in the API docs, in JSON and here.

Responses accept fields this version does not know yet (``extra="allow"``), so a newer server
never breaks an older client; ``tests/test_client_contract.py`` checks against a live server
and its ``/openapi.json`` that no field is unknown or missing, so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Request(BaseModel):
    """A request body: unknown fields are a mistake here, and the server refuses most."""

    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------- requests
class Span(Request):
    start: str
    end: str
    timezone: str | None = None


class TemplateSpec(Request):
    name: str
    language: str
    parameters: list[str] | None = None
    components: list[dict[str, Any]] | None = None


class MediaSpec(Request):
    type: Literal["image", "document"]
    link: str
    filename: str | None = None


class SendBulkRequest(Request):
    recipients: list[Any] = Field(min_length=1)
    message: str | None = None
    template: TemplateSpec | None = None
    media: MediaSpec | None = None
    callbackUrl: str | None = None
    account: str | None = None
    accounts: list[str] | None = None
    sendAt: datetime | None = None
    validUntil: datetime | None = None
    ttl: int | None = None
    window: Span | None = None
    quietHours: Span | None = None
    dedupeHours: float | None = None


class QuietHours(Request):
    start: str
    end: str


Tier = Literal["new", "regular", "trusted", "business"]


class AccountChange(Request):
    """``PATCH /api/accounts/{name}``: only the fields given change."""

    tier: Tier | None = None
    hourlyCap: int | None = None
    dailyCap: int | None = None
    metaDailyLimit: int | None = None
    delayMs: int | None = None
    jitter: float | None = None
    warmup: bool | None = None
    startDate: date | None = None
    timezone: str | None = None
    quietHours: QuietHours | None = None
    provider: str | None = None
    phoneNumberId: str | None = None
    accessTokenEnv: str | None = None
    gateway: str | None = None
    session: str | None = None
    newContactsDailyCap: int | None = None
    callbackUrl: str | None = None
    paused: bool | None = None
    pausedReason: str | None = None
    reducedUntilMs: int | None = None


class AccountRequest(AccountChange):
    """``POST /api/accounts`` (the server's ``Account`` schema)."""

    name: str


class RetryRequest(Request):
    errorCodes: list[str] = Field(default_factory=list)


class ResolveRequest(Request):
    action: Literal["sent", "resend"]
    messageId: str = ""


class SuppressRequest(Request):
    phones: list[Any] = Field(min_length=1)


class PairRequest(Request):
    #: Link by pairing code for this number instead of a QR code.
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9]{8,15}$")


class CleanRequest(Request):
    grace: int | None = None


class FaultsRequest(Request):
    transient: float = 0.0
    rate_limited: float = 0.0
    permanent: float = 0.0
    ambiguous: float = 0.0
    unavailable: float = 0.0
    spam: float = 0.0
    throttled: float = 0.0
    latencyMs: int | None = None
    phones: dict[str, str] = Field(default_factory=dict)
    lookup: bool = True


# ---------------------------------------------------------------- responses
class RecipientCounts(Model):
    pending: int = 0
    sending: int = 0
    retry: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    failed: int = 0
    unknown: int = 0
    canceled: int = 0
    suppressed: int = 0
    expired: int = 0
    skipped: int = 0

    @property
    def open(self) -> int:
        """Recipients not settled yet."""
        return self.pending + self.sending + self.retry

    @property
    def total(self) -> int:
        return sum(int(v) for v in self.model_dump().values() if isinstance(v, int))


class JobSummary(Model):
    """A row of ``GET /api/queue/jobs``."""

    id: str
    status: str
    progress: int | float | dict[str, Any] | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    processedOn: int | None = None
    finishedOn: int | None = None
    failedReason: str | None = None
    timestamp: int | None = None
    removedOutside: str | None = None


class Job(JobSummary):
    """``GET /api/queue/jobs/{id}``: the campaign, its recipients' counts and why it waits."""

    returnvalue: Any = None
    attemptsMade: int = 0
    recipients: RecipientCounts = Field(default_factory=RecipientCounts)
    waitingFor: str | None = None
    #: Recipients who replied (WhatsApp Web gateways), and their share of those reached.
    replies: int = 0
    replyRate: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "canceled")


class JobList(Model):
    jobs: list[JobSummary]
    count: int


class Alert(Model):
    account: str | None = None
    type: str | None = None
    message: str | None = None


class QueueStats(Model):
    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    paused: int
    canceled: int
    foreign: int
    total: int
    messages: RecipientCounts
    alerts: list[dict[str, Any]]


class InvalidRecipient(Model):
    index: int
    phone: Any = None
    error: str


class InstantResult(Model):
    phone: str
    normalizedPhone: str | None = None
    index: int
    success: bool
    status: str
    messageId: str | None = None
    error: str | None = None
    errorCode: str | None = None


class SendResult(Model):
    """``POST /api/messages/send-bulk``: ``mode`` is ``instant`` or ``queue``; ``jobId`` names
    the campaign to follow (instant sends have one only when some are still pending)."""

    mode: str
    total: int
    jobId: str | None = None
    status: str | None = None
    estimatedTime: str | None = None
    estimatedMs: int | None = None
    backlogAhead: int | None = None
    limitedBy: Any = None
    accounts: list[str] | None = None
    skippedAccounts: list[dict[str, str]] | None = None
    reason: str | None = None
    successful: int | None = None
    failed: int | None = None
    pending: int | None = None
    results: list[InstantResult] | None = None
    invalid: list[InvalidRecipient] = Field(default_factory=list)
    suppressed: list[Any] = Field(default_factory=list)
    suppressedCount: int = 0
    warnings: list[Any] = Field(default_factory=list)
    #: True when the server replayed an earlier answer for the same Idempotency-Key.
    replayed: bool = False


class Sample(Model):
    index: int
    phone: str
    text: str


class AccountEta(Model):
    recipients: int
    estimatedTime: str
    estimatedMs: int
    backlogAhead: int
    capWait: Any = None
    quietHoursDeferred: int = 0


class Preview(Model):
    """``send-bulk?dryRun=true`` and ``POST /api/messages/preview``: nothing is sent."""

    dryRun: bool
    sendMode: str
    total: int
    invalid: list[InvalidRecipient] = Field(default_factory=list)
    duplicates: int = 0
    suppressed: list[Any] = Field(default_factory=list)
    suppressedCount: int = 0
    warnings: list[Any] = Field(default_factory=list)
    samples: list[Sample] = Field(default_factory=list)
    schedule: dict[str, AccountEta] = Field(default_factory=dict)


class Recipient(Model):
    index: int
    phone: str
    status: str
    attempts: int = 0
    messageId: str | None = None
    errorCode: str | None = None
    error: str | None = None
    worker: str | None = None


class RecipientPage(Model):
    recipients: list[Recipient]
    total: int
    offset: int
    limit: int


class Changed(Model):
    """Pause, resume, cancel, retry, promote, remove, resolve: how many recipients changed
    (canceled, retried ...), and the server's message."""

    changed: int = 0
    message: str | None = None


class Cleaned(Model):
    removed: int
    jobs: list[str]
    grace: int


class AccountToday(Model):
    hourly: int | None = None
    daily: int | None = None
    warmingUp: bool = False
    reduced: bool = False
    sentLastHour: int = 0
    sentLast24h: int = 0
    coolingUntilMs: int | None = None
    backlog: int = 0
    #: Gateway accounts: first messages to new contacts today, and their cap.
    newContacts: int | None = None
    newContactsCap: int | None = None


class Account(Model):
    name: str
    tier: str | None = None
    hourlyCap: int | None = None
    dailyCap: int | None = None
    metaDailyLimit: int | None = None
    delayMs: int | None = None
    jitter: float | None = None
    warmup: bool = False
    startDate: date | None = None
    timezone: str | None = None
    quietHours: dict[str, Any] | None = None
    provider: str | None = None
    phoneNumberId: str | None = None
    accessTokenEnv: str | None = None
    gateway: str | None = None
    session: str | None = None
    newContactsDailyCap: int | None = None
    callbackUrl: str | None = None
    paused: bool = False
    pausedReason: str | None = None
    reducedUntilMs: int | None = None
    today: AccountToday | None = None
    #: WhatsApp Web gateway accounts: the session as last seen.
    sessionState: dict[str, Any] | None = None


class WebSession(Model):
    """A WhatsApp Web account's session (``"provider": "web"``)."""

    state: str
    detail: str = ""
    qr: str = ""
    pairCode: str = ""
    untilMs: int = 0
    holder: str | None = None
    updatedMs: int = 0
    me: str = ""


class SuppressionPage(Model):
    phones: list[str]
    cursor: int
    total: int


class Unsuppressed(Model):
    #: The number taken off the list (E.164).
    removed: str


class Suppressed(Model):
    added: int
    invalid: list[InvalidRecipient] = Field(default_factory=list)


class SimulatorMessage(Model):
    ts: int
    account: str
    phone: str
    text: str
    jobId: str | None = None
    attemptId: str | None = None
    messageId: str | None = None


class SimulatorMessages(Model):
    messages: list[SimulatorMessage]
    total: int
    offset: int


class Faults(Model):
    rates: dict[str, float]
    latencyMs: int
    phones: dict[str, str]
    lookup: bool


class CallbackDelivery(Model):
    id: str
    state: str | None = None


class CallbackPage(Model):
    deliveries: list[dict[str, Any]]
    count: int
    total: int
    offset: int


class CallbackStats(Model):
    pending: int
    failed: int
    recentlyDelivered: int
    signing: bool
    webhooks: dict[str, int]


class Health(Model):
    """``GET /api/queue/health``; ``healthy`` false comes with a 503 that the client returns
    rather than raises, since it is an answer, not a failure."""

    success: bool
    healthy: bool
    data: dict[str, Any]


class Liveness(Model):
    success: bool
    status: str
    version: str
