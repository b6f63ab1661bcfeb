"""Honest estimates of when a campaign will finish."""

from __future__ import annotations

import math


def mean_gap_ms(delay_ms: int, jitter: float, observed_send_ms: float) -> float:
    """Average time per message on one account: the paced gap (delay plus mean jitter) or the
    provider's observed send time, whichever is longer."""
    return max(delay_ms * (1.0 + jitter / 2.0), observed_send_ms, 0.0)


def estimate_ms(recipients: int, backlog_ahead: int, gap_ms: float, wait_ms: float = 0.0) -> float:
    """Time until the last of ``recipients`` is sent, after ``backlog_ahead`` messages already
    queued on the same account and a ``wait_ms`` before the account's next free slot."""
    return max(wait_ms, 0.0) + (backlog_ahead + recipients) * gap_ms


def humanise(ms: float) -> str:
    """``~3 minutes`` in the seed's style; never rounds a real wait down to nothing."""
    seconds = ms / 1000.0
    if seconds < 60:
        return f"~{max(1, math.ceil(seconds))} seconds"
    minutes = seconds / 60.0
    if minutes < 90:
        value = math.ceil(minutes)
        return f"~{value} minute" + ("s" if value != 1 else "")
    hours = minutes / 60.0
    if hours < 48:
        return f"~{hours:.1f} hours"
    return f"~{hours / 24.0:.1f} days"
