"""When a campaign may send: a start time, an expiry, a daily window, and quiet hours in each
recipient's own time zone (derived from the number)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

import phonenumbers
from phonenumbers import timezone as number_zones

DAY_MS = 86_400_000
#: The IANA zone names this machine knows, for the API schema (``enum``): a name outside it is
#: refused, so the schema says exactly what is accepted.
ZONE_NAMES = sorted(available_timezones())


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except Exception:
        return ZoneInfo("UTC")


def _hm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


@dataclass(frozen=True)
class Daily:
    """A daily span ``start``-``end`` (``HH:MM``) in a zone; it may cross midnight."""

    start: str
    end: str
    zone: str = "UTC"

    def _span_at(self, now_ms: int, zone: ZoneInfo) -> tuple[bool, int]:
        """(inside now, the ms when that changes next)."""
        now = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(zone)
        start, end = _hm(self.start), _hm(self.end)
        today = now.date()
        for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
            begin = datetime.combine(day, start, zone)
            finish = datetime.combine(day if end > start else day + timedelta(days=1), end, zone)
            if begin <= now < finish:
                return True, int(finish.timestamp() * 1000)
        upcoming = [
            datetime.combine(d, start, zone)
            for d in (today, today + timedelta(days=1))
            if datetime.combine(d, start, zone) > now
        ]
        return False, int(min(upcoming).timestamp() * 1000)

    def inside(self, now_ms: int, zone_name: str | None = None) -> tuple[bool, int]:
        return self._span_at(now_ms, _zone(zone_name or self.zone))


def recipient_zone(phone: str, fallback: str) -> str:
    """The number's zone when its region has one; else ``fallback`` (the account's zone)."""
    try:
        zones = number_zones.time_zones_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return fallback
    if len(zones) == 1 and zones[0] != "Etc/Unknown":
        return str(zones[0])
    return fallback


@dataclass(frozen=True)
class Schedule:
    expires_ms: int | None = None
    window: Daily | None = None
    quiet: Daily | None = None  # in each recipient's zone; ``zone`` is the fallback
    dedupe_ms: int = 0

    def to_meta(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.expires_ms:
            out["expires_ms"] = str(self.expires_ms)
        if self.window:
            out["window"] = json.dumps(self.window.__dict__)
        if self.quiet:
            out["quiet"] = json.dumps(self.quiet.__dict__)
        if self.dedupe_ms:
            out["dedupe_ms"] = str(self.dedupe_ms)
        return out

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> Schedule | None:
        if not any(k in meta for k in ("expires_ms", "window", "quiet", "dedupe_ms")):
            return None
        return cls(
            expires_ms=int(meta["expires_ms"]) if "expires_ms" in meta else None,
            window=Daily(**json.loads(meta["window"])) if "window" in meta else None,
            quiet=Daily(**json.loads(meta["quiet"])) if "quiet" in meta else None,
            dedupe_ms=int(meta.get("dedupe_ms", "0")),
        )
