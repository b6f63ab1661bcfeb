"""Dry run: validate and render every message, report what would happen; send and store nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from waqtor import campaigns, hygiene
from waqtor.domain.recipients import Parsed
from waqtor.domain.schedule import Daily, Schedule, recipient_zone
from waqtor.domain.templates import TemplateError, builtin_values, render
from waqtor.services import Services

SAMPLES = 5


async def dry_run(
    s: Services,
    parsed: Parsed,
    account: str,
    accounts: list[str] | None = None,
    meta: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``accounts`` spreads the list (recipient i on accounts[i % k]); ``meta`` carries the
    request's timing (quiet hours, window, sendAt delay is the caller's)."""
    invalid = [r.as_dict() for r in parsed.rejected]
    suppressed = await hygiene.drop_suppressed(s, account, parsed)
    try:
        zone = ZoneInfo(s.settings.timezone)
    except Exception:
        zone = ZoneInfo("UTC")
    now = datetime.now(zone)
    samples: list[dict[str, Any]] = []
    render_errors: list[dict[str, Any]] = []
    for rec, idx in zip(parsed.accepted, parsed.indexes, strict=True):
        try:
            text = render(
                rec.message or parsed.template,
                rec.variables,
                builtin_values(rec.phone, s.settings.signature, now),
                seed=f"preview:{idx}",
            )
        except TemplateError as exc:
            render_errors.append({"index": idx, "phone": rec.phone, "error": exc.reason})
            continue
        if len(samples) < SAMPLES:
            samples.append({"index": idx, "phone": rec.phone, "text": text})
    valid = len(parsed.accepted) - len(render_errors)
    senders = accounts or [account]
    schedule = Schedule.from_meta(meta or {})
    quiet_now = await _quiet_now(s, parsed, senders, schedule)
    plan: dict[str, Any] = {}
    for lane, name in enumerate(senders):
        share = len(range(lane, valid, len(senders)))
        eta = await campaigns.estimate(s, name, share)
        plan[name] = {
            "recipients": share,
            "estimatedTime": eta.text,
            "estimatedMs": int(eta.ms),
            "backlogAhead": eta.backlog_ahead,
            "capWait": eta.limited_by,  # None unless caps make the campaign wait
            "quietHoursDeferred": quiet_now.get(name, 0),
        }
    # The response's top-level ``mode`` says how this request was handled ("preview"); this
    # says how the same request would be sent for real.
    send_mode = "instant" if 0 < valid <= s.settings.instant_threshold else "queue"
    return {
        "dryRun": True,
        "sendMode": send_mode,
        "total": valid,
        "invalid": invalid + render_errors,
        "duplicates": sum(1 for r in parsed.rejected if r.error.startswith("duplicate")),
        "suppressed": suppressed,
        "suppressedCount": len(suppressed),
        "warnings": hygiene.identical_text(parsed, s.settings.identical_text_warn),
        "samples": samples,
        "schedule": plan,
    }


async def _quiet_now(
    s: Services, parsed: Parsed, senders: list[str], schedule: Schedule | None
) -> dict[str, int]:
    """Per account: recipients who are inside their quiet hours right now (deferred)."""
    out: dict[str, int] = {}
    now = s.clock.now_ms()
    for lane, name in enumerate(senders):
        quiet = schedule.quiet if schedule and schedule.quiet else None
        if quiet is None:
            account = await s.accounts.get(name)
            if account is not None and account.quietHours is not None:
                hours = account.quietHours
                quiet = Daily(hours.start, hours.end, account.timezone or s.settings.timezone)
        if quiet is None:
            continue
        zones: dict[str, bool] = {}
        count = 0
        for rec in parsed.accepted[lane :: len(senders)]:
            zone = recipient_zone(rec.phone, quiet.zone)
            if zone not in zones:
                zones[zone] = quiet.inside(now, zone)[0]
            count += zones[zone]
        out[name] = count
    return out
