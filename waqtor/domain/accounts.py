"""Sender accounts: one WhatsApp number each, with WaQtor's limits by account age.

| tier     | hourly | daily                       |
|----------|--------|-----------------------------|
| new      | 20     | 50                          |
| regular  | 50     | 250                         |
| trusted  | 100    | 1,000                       |
| business | none   | the Meta tier's 24 h limit  |

Warm-up ("start small, increase slowly"): from the account's start date the daily cap starts at
a fifth of the tier's (at least 10) and grows 20 % a day until it reaches it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from waqtor.domain.clock import day_of
from waqtor.domain.numbers import numbers_only
from waqtor.domain.schedule import ZONE_NAMES

PHONE_NUMBER_ID = re.compile(r"[0-9]{1,32}")
#: An http(s) URL with a host name or IPv4 address, an optional port (1-65535) and printable
#: ASCII after it: what every regex dialect (the API schema's, pydantic's) and ``urlsplit`` read
#: the same way. Non-ASCII is %- or IDNA-encoded; no user:password@.
_PORT = r"(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
HTTP_URL = r"^https?://[A-Za-z0-9._~%-]+" + _PORT + r"(?:[/?#][!-~]*)?$"


class Tier(StrEnum):
    NEW = "new"
    REGULAR = "regular"
    TRUSTED = "trusted"
    BUSINESS = "business"


#: (hourly, daily) per tier; None is no cap.
TIER_CAPS: dict[Tier, tuple[int | None, int | None]] = {
    Tier.NEW: (20, 50),
    Tier.REGULAR: (50, 250),
    Tier.TRUSTED: (100, 1000),
    Tier.BUSINESS: (None, None),
}
WARMUP_GROWTH = 1.2  # +20 % a day
WARMUP_START_FRACTION = 0.2
WARMUP_MIN_START = 10
REDUCED_FACTOR = 0.5  # after a breaker trip, resumed accounts run at half their caps

#: Providers that send from an ordinary WhatsApp number through a WhatsApp Web gateway.
GATEWAY_PROVIDERS = frozenset({"waha", "evolution"})
#: Every provider that sends from an ordinary WhatsApp number: the gateways, and WhatsApp Web
#: built in (``web``). They share the new-contact cap, reply counting and session state.
ORDINARY_NUMBER_PROVIDERS = GATEWAY_PROVIDERS | {"web"}
GATEWAY_NAME = re.compile(r"[A-Za-z0-9_]{1,32}")
#: New contacts (numbers the account never messaged) per 24 h, per tier, on gateway accounts:
#: cold outreach is what draws WhatsApp's reach-out limits (error 463) and bans.
NEW_CONTACT_CAPS: dict[Tier, int | None] = {
    Tier.NEW: 10,
    Tier.REGULAR: 40,
    Tier.TRUSTED: 150,
    Tier.BUSINESS: None,
}


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["21:00"])
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["09:00"])


class Account(BaseModel):
    """What the API stores and returns (never a secret: tokens are read from env or files)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    tier: Tier | None = Field(default=Tier.NEW, description="None: no caps (the default account)")
    # Numbers are numbers (``true`` is not 1, ``"5"`` is not 5) and flags are flags.
    hourlyCap: int | None = Field(
        default=None, ge=0, le=10_000_000, description="Overrides the tier's"
    )
    dailyCap: int | None = Field(
        default=None, ge=0, le=100_000_000, description="Overrides the tier's"
    )
    metaDailyLimit: int | None = Field(
        default=None, ge=0, le=100_000_000, description="business tier: 24 h cap"
    )
    delayMs: int | None = Field(
        default=None, ge=0, le=86_400_000, description="Overrides MESSAGE_DELAY"
    )
    jitter: float | None = Field(default=None, ge=0, le=5, description="Overrides MESSAGE_JITTER")
    warmup: bool = Field(default=True, strict=True)
    # No bounds: JSON Schema cannot state them for a date, and warm-up counts 365 days at most.
    startDate: date | None = Field(default=None, description="Warm-up starts here (YYYY-MM-DD)")
    timezone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA zone",
        json_schema_extra={"enum": [*ZONE_NAMES, None]},
    )
    quietHours: QuietHours | None = None
    provider: str | None = Field(default=None, max_length=32)
    phoneNumberId: str | None = Field(
        default=None,
        max_length=32,
        description="Meta's phone-number ID: digits only",
        json_schema_extra={"pattern": "^[0-9]{1,32}$"},
    )
    accessTokenEnv: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="The environment variable holding the access token: WA_TOKEN_*, or one "
        "CLOUD_API_TOKEN_ENVS lists",
        json_schema_extra={"pattern": "^WA_TOKEN_[A-Z0-9_]+$"},
    )
    gateway: str | None = Field(
        default=None,
        max_length=32,
        pattern=r"^[A-Za-z0-9_]{1,32}$",
        description="waha / evolution: the gateway's name; its URL and key are read from "
        "GATEWAY_<NAME>_URL and GATEWAY_<NAME>_KEY (never from the API)",
    )
    session: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="waha: the session (Core has only 'default'); evolution: the instance",
    )
    newContactsDailyCap: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Gateway accounts: numbers never messaged before, per 24 h (overrides the "
        "tier's)",
    )
    callbackUrl: str | None = Field(default=None, max_length=2048, pattern=HTTP_URL)
    paused: bool = Field(default=False, strict=True)
    pausedReason: str | None = Field(default=None, max_length=500)
    reducedUntilMs: int | None = Field(default=None, ge=0, le=10**15)

    _numbers = numbers_only(
        "hourlyCap",
        "dailyCap",
        "metaDailyLimit",
        "delayMs",
        "jitter",
        "reducedUntilMs",
        "newContactsDailyCap",
    )

    @model_validator(mode="after")
    def _gateway_fields(self) -> Account:
        if self.provider in GATEWAY_PROVIDERS:
            if not self.gateway:
                raise ValueError(f"gateway: provider {self.provider} needs the gateway's name")
            if not self.session:
                if self.provider == "evolution":
                    raise ValueError("session: provider evolution needs the instance name")
                self.session = "default"  # WAHA Core's only session
        return self

    @field_validator("startDate", mode="before")
    @classmethod
    def _date_text(cls, value: object) -> object:
        # "YYYY-MM-DD" (or a date): lax pydantic would also read 0 as 1970-01-01.
        if value is not None and not isinstance(value, (str, date)):
            raise ValueError("a date, written YYYY-MM-DD")
        return value

    @field_validator("phoneNumberId")
    @classmethod
    def _digits(cls, value: str | None, info: ValidationInfo) -> str | None:
        # It becomes a path segment of the Graph API's URL: anything but digits could change
        # the path (``../../x?``). Accounts stored before this rule still load (context
        # ``stored``), so they can be listed and fixed; the Cloud API refuses to use them.
        stored = bool(info.context and info.context.get("stored"))
        if value is not None and not stored and not PHONE_NUMBER_ID.fullmatch(value):
            raise ValueError("Meta's phone-number ID is digits only")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value


@dataclass(frozen=True)
class Caps:
    hourly: int | None
    daily: int | None
    warming: bool
    reduced: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "hourly": self.hourly,
            "daily": self.daily,
            "warmingUp": self.warming,
            "reduced": self.reduced,
        }


def effective_caps(account: Account, today: date, now_ms: int) -> Caps:
    """The caps in force today: tier, overrides, warm-up and a post-breaker reduction."""
    hourly, daily = TIER_CAPS[account.tier] if account.tier else (None, None)
    if account.tier is Tier.BUSINESS:
        daily = account.metaDailyLimit
    if account.hourlyCap is not None:
        hourly = account.hourlyCap
    if account.dailyCap is not None:
        daily = account.dailyCap
    warming = False
    if account.warmup and daily is not None and account.startDate is not None:
        days = min(max(0, (today - account.startDate).days), 365)
        start = max(WARMUP_MIN_START, math.ceil(daily * WARMUP_START_FRACTION))
        ramped = math.ceil(min(start, daily) * WARMUP_GROWTH**days)
        if ramped < daily:
            daily, warming = ramped, True
    reduced = bool(account.reducedUntilMs and now_ms < account.reducedUntilMs)
    if reduced:
        hourly = None if hourly is None else max(1, int(hourly * REDUCED_FACTOR))
        daily = None if daily is None else max(1, int(daily * REDUCED_FACTOR))
    if hourly is not None and daily is not None:
        hourly = min(hourly, daily)
    return Caps(hourly, daily, warming, reduced)


def caps_on(account: Account, now_ms: int) -> Caps:
    """The caps in force at ``now_ms`` (the injected clock's time): every caller goes
    through here, so the day the warm-up counts is never the machine's calendar."""
    return effective_caps(account, day_of(now_ms), now_ms)


def gap_ms(account: Account, default_delay_ms: int, now_ms: int) -> int:
    delay = account.delayMs if account.delayMs is not None else default_delay_ms
    if account.reducedUntilMs and now_ms < account.reducedUntilMs:
        delay = max(delay * 2, 1000)
    return delay


def new_contact_cap(account: Account, now_ms: int) -> int | None:
    """New contacts per 24 h in force (gateway accounts; None: no cap), halved like the other
    caps after a breaker resume."""
    if account.newContactsDailyCap is not None:
        cap: int | None = account.newContactsDailyCap
    else:
        cap = NEW_CONTACT_CAPS[account.tier] if account.tier else None
    if cap is not None and account.reducedUntilMs and now_ms < account.reducedUntilMs:
        cap = max(1, int(cap * REDUCED_FACTOR)) if cap else 0
    return cap
