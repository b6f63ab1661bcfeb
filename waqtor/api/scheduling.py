"""send-bulk's timing fields: sendAt, validUntil/ttl, a sending window, quiet hours, dedupe."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from waqtor.api.errors import ApiError
from waqtor.domain.numbers import numbers_only
from waqtor.domain.schedule import ZONE_NAMES, Daily, Schedule

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class Span(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=HHMM, examples=["09:00"])
    end: str = Field(pattern=HHMM, examples=["18:00"])
    timezone: str | None = Field(
        default=None, max_length=64, json_schema_extra={"enum": [*ZONE_NAMES, None]}
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        from zoneinfo import ZoneInfo

        if value is not None:
            try:
                ZoneInfo(value)
            except Exception:
                raise ValueError(f"unknown time zone {value!r}") from None
        return value


class Timing(BaseModel):
    """Mixed into the send-bulk body."""

    sendAt: AwareDatetime | None = Field(
        default=None, description="Start then (ISO 8601 with a zone); delayed until then."
    )
    validUntil: AwareDatetime | None = Field(
        default=None, description="Recipients not sent by then become expired."
    )
    ttl: int | None = Field(
        default=None,
        ge=1,
        le=30 * 86400,
        description="Like validUntil, in seconds from now.",
    )
    window: Span | None = Field(
        default=None, description="Send only between start and end each day, spread to fit."
    )
    quietHours: Span | None = Field(
        default=None,
        description="Defer recipients while it is quiet time in their own zone (from the number; "
        "timezone is the fallback for regions with several zones).",
    )
    dedupeHours: float | None = Field(
        default=None,
        gt=0,
        le=24 * 7,
        description="Skip a recipient who got the same text from the same account this recently.",
    )

    _numbers = numbers_only("ttl", "dedupeHours")


def plan(timing: Timing, now_ms: int, default_zone: str) -> tuple[dict[str, str], int]:
    """The campaign meta fields and the start delay (ms) for these timing fields."""
    start_ms = int(timing.sendAt.timestamp() * 1000) if timing.sendAt else now_ms
    expires: int | None = None
    if timing.validUntil is not None:
        expires = int(timing.validUntil.timestamp() * 1000)
    elif timing.ttl is not None:
        expires = now_ms + timing.ttl * 1000
    if expires is not None and expires <= max(now_ms, start_ms):
        raise ApiError(400, "validUntil: must be after now and after sendAt")
    schedule = Schedule(
        expires_ms=expires,
        window=_daily(timing.window, default_zone),
        quiet=_daily(timing.quietHours, default_zone),
        dedupe_ms=int((timing.dedupeHours or 0) * 3_600_000),
    )
    return schedule.to_meta(), max(0, start_ms - now_ms)


def _daily(span: Span | None, default_zone: str) -> Daily | None:
    if span is None:
        return None
    return Daily(span.start, span.end, span.timezone or default_zone)


def timing_fields(body: Any) -> Timing:
    return Timing.model_validate(
        {name: getattr(body, name) for name in Timing.model_fields if hasattr(body, name)}
    )
