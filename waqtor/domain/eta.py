"""Honest estimates of when a campaign will finish."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def mean_gap_ms(delay_ms: int, jitter: float, observed_send_ms: float) -> float:
    """Average time per message on one account: the paced gap (delay plus mean jitter) or the
    provider's observed send time, whichever is longer."""
    return max(delay_ms * (1.0 + jitter / 2.0), observed_send_ms, 0.0)


#: Until an account has run a campaign, what a run costs besides its sends (ms): the job's
#: wait for a worker (bullmq's wake-up), its start (recovery, settling, the "active" event) and
#: its end. Measured here: 35 to 55 ms on an idle 2-core machine, several times that on a busy
#: one; the worker measures the real figure on every run (``JobIndex.record_run``).
COLD_FIXED_MS = 100.0
#: ... and the round trips of one claim of recipients and the record of their outcomes (ms),
#: shared by the sends of that claim: 12 to 15 ms a batch of 200 on the simulator, idle.
COLD_CLAIM_MS = 15.0


def unpaced_gap_ms(
    achieved_ms: float | None,
    observed_send_ms: float,
    parallel: int,
    *,
    claim_ms: float = COLD_CLAIM_MS,
    interval_ms: float = 0.0,
) -> float:
    """Average time per message on an account with no pacing delay: what its campaigns really
    achieved lately (``achieved_ms``), else the provider's send time and a claim's round trips
    shared by the sends that go out side by side (a batch, or requests in flight): not one
    request's latency per message, which said "~3 minutes" for a list sent in 4 seconds. Never
    faster than the provider's declared rate (``interval_ms`` between messages)."""
    if achieved_ms is not None and achieved_ms > 0:
        return max(achieved_ms, interval_ms)
    shared = (max(observed_send_ms, 0.0) + max(claim_ms, 0.0)) / max(1, parallel)
    return max(shared, interval_ms)


def estimate_ms(recipients: int, backlog_ahead: int, gap_ms: float, wait_ms: float = 0.0) -> float:
    """Time until the last of ``recipients`` is sent, after ``backlog_ahead`` messages already
    queued on the same account and a ``wait_ms`` before the account's next free slot."""
    return max(wait_ms, 0.0) + (backlog_ahead + recipients) * gap_ms


def humanise(ms: float) -> str:
    """``~3 minutes`` in WaQtor's style; never rounds a real wait down to nothing."""
    seconds = ms / 1000.0
    if seconds < 60:
        value = max(1, math.ceil(seconds))
        return f"~{value} second" + ("s" if value != 1 else "")
    minutes = seconds / 60.0
    if minutes < 90:
        value = math.ceil(minutes)
        return f"~{value} minute" + ("s" if value != 1 else "")
    hours = minutes / 60.0
    if hours < 48:
        return f"~{hours:.1f} hours"
    return f"~{hours / 24.0:.1f} days"


def estimate_capped_ms(
    messages: int,
    gap_ms: float,
    *,
    wait_ms: float = 0.0,
    hourly: int | None = None,
    daily: int | None = None,
    sent_last_hour: int = 0,
    sent_last_day: int = 0,
) -> float:
    """Like :func:`estimate_ms` for ``messages`` (backlog included), but an account with caps
    sends at most ``hourly`` per hour and ``daily`` per day: the rest waits for the windows."""
    if hourly is None and daily is None:
        return max(wait_ms, 0.0) + messages * gap_ms
    hour_left = math.inf if hourly is None else max(0, hourly - sent_last_hour)
    day_left = math.inf if daily is None else max(0, daily - sent_last_day)
    t = max(wait_ms, 0.0)
    hour_start = day_start = 0.0
    remaining = messages
    for _ in range(100_000):  # bounded: a year of hours
        batch = int(min(remaining, hour_left, day_left))
        t += batch * gap_ms
        remaining -= batch
        hour_left -= batch
        day_left -= batch
        if remaining <= 0:
            break
        if day_left <= 0:
            day_start = t = max(t, day_start + DAY_MS)
            hour_start = t
            day_left = math.inf if daily is None else daily
            hour_left = math.inf if hourly is None else hourly
        elif hour_left <= 0:
            hour_start = t = max(t, hour_start + HOUR_MS)
            hour_left = math.inf if hourly is None else hourly
    return t


def clock_text(ms: int, zone_name: str = "UTC") -> str:
    """``14:05`` today, or ``2026-11-30 14:05`` further out (for "until ..." messages)."""
    try:
        zone = ZoneInfo(zone_name)
    except Exception:
        zone = ZoneInfo("UTC")
    when = datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone)
    now = datetime.now(UTC).astimezone(zone)
    suffix = "" if zone_name == "UTC" else f" {zone_name}"
    if when.date() == now.date():
        return when.strftime("%H:%M") + (" UTC" if not suffix else suffix)
    return when.strftime("%Y-%m-%d %H:%M") + (" UTC" if not suffix else suffix)
