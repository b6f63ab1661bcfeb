"""Why an account cannot send right now, in one place: the worker stores this reason on the
campaign it parks (the API's ``waitingFor``), and the dashboard shows the same words for the
account, so both always say the same thing at the same moment."""

from __future__ import annotations

from waqtor.domain.eta import clock_text

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def cap_reached(
    *,
    hourly: int | None,
    daily: int | None,
    sent_last_hour: int,
    sent_last_day: int,
    first_in_hour_ms: int | None,
    first_in_day_ms: int | None,
    now_ms: int,
) -> tuple[str, int] | None:
    """``("daily" | "hourly", reopens_ms)`` when a sliding cap stops the account, else None.
    The same rule as the claim script (``claim.lua``): the daily cap is checked first, since
    when both are reached it is the one that holds longer."""
    if daily is not None and sent_last_day >= daily:
        return "daily", (first_in_day_ms if first_in_day_ms is not None else now_ms) + DAY_MS
    if hourly is not None and sent_last_hour >= hourly:
        return "hourly", (first_in_hour_ms if first_in_hour_ms is not None else now_ms) + HOUR_MS
    return None


def wait_reason(kind: str, detail: str | None, account: str, until_ms: int) -> str:
    """``waiting for the hourly cap of account shop-1 until 14:05 UTC``: what the job status,
    the ETA and the dashboard say. ``kind`` is ``capped`` (``detail``: which cap),
    ``cooling`` or ``account_paused`` (``detail``: why)."""
    at = clock_text(until_ms)
    if kind == "capped":
        return f"waiting for the {detail or 'hourly'} cap of account {account} until {at}"
    if kind == "account_paused" and detail and detail.startswith("WhatsApp "):
        return f"account {account} waits: {detail}; checking again at {at}"
    if kind == "cooling":
        return f"account {account} is cooling down after a ban signal until {at}"
    return f"account {account} is paused ({detail}); checking again at {at}"
