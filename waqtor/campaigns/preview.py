"""Dry run: validate and render every message, report what would happen; send and store nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from waqtor.campaigns import hygiene
from waqtor.campaigns import submission as campaigns
from waqtor.domain.recipients import Parsed
from waqtor.domain.schedule import Daily, Schedule, recipient_zone
from waqtor.domain.templates import TemplateError, builtin_values, render
from waqtor.runtime import offload
from waqtor.runtime.parts import (
    HasAccounts,
    HasClock,
    HasHeartbeats,
    HasJobIndex,
    HasPacer,
    HasProviders,
    HasSettings,
    HasSuppressions,
)


class Previews(
    HasSettings,
    HasClock,
    HasPacer,
    HasAccounts,
    HasSuppressions,
    HasJobIndex,
    HasProviders,
    HasHeartbeats,
    Protocol,
):
    """What a dry run reads (it writes nothing)."""


SAMPLES = 5


async def dry_run(
    s: Previews,
    parsed: Parsed,
    account: str,
    accounts: list[str] | None = None,
    meta: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``accounts`` spreads the list (recipient i on accounts[i % k]); ``meta`` carries the
    request's timing (quiet hours, window, sendAt delay is the caller's). Rendering every
    message is CPU work in proportion to the list: it runs on the CPU pool, off the loop."""
    invalid = [r.as_dict() for r in parsed.rejected]
    suppressed = await hygiene.drop_suppressed(s, account, parsed)
    try:
        zone = ZoneInfo(s.settings.timezone)
    except Exception:
        zone = ZoneInfo("UTC")
    senders = accounts or [account]
    quiet = await _quiet_rules(s, senders, Schedule.from_meta(meta or {}))
    work = await offload.run(
        _render_all,
        parsed,
        s.settings.signature,
        datetime.now(zone),
        s.settings.identical_text_warn,
        senders,
        quiet,
        s.clock.now_ms(),
    )
    valid = len(parsed.accepted) - len(work.render_errors)
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
            "quietHoursDeferred": work.quiet_now.get(name, 0),
        }
    # The response's top-level ``mode`` says how this request was handled ("preview"); this
    # says how the same request would be sent for real.
    send_mode = "instant" if campaigns.small_enough(s, valid) else "queue"
    return {
        "dryRun": True,
        "sendMode": send_mode,
        "total": valid,
        "invalid": invalid + work.render_errors,
        "duplicates": sum(1 for r in parsed.rejected if r.error.startswith("duplicate")),
        "suppressed": suppressed,
        "suppressedCount": len(suppressed),
        "warnings": work.warnings,
        "samples": work.samples,
        "schedule": plan,
    }


@dataclass
class _Rendered:
    samples: list[dict[str, Any]] = field(default_factory=list)
    render_errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    quiet_now: dict[str, int] = field(default_factory=dict)


def _render_all(
    parsed: Parsed,
    signature: str,
    now: datetime,
    identical_warn: int,
    senders: list[str],
    quiet: dict[str, Daily],
    now_ms: int,
) -> _Rendered:
    """Every message rendered (render errors by index, the first SAMPLES texts), the
    identical-text warning and the recipients inside their quiet hours now (CPU pool)."""
    out = _Rendered()
    for rec, idx in zip(parsed.accepted, parsed.indexes, strict=True):
        try:
            text = render(
                rec.message or parsed.template,
                rec.variables,
                builtin_values(rec.phone, signature, now),
                seed=f"preview:{idx}",
            )
        except TemplateError as exc:
            out.render_errors.append({"index": idx, "phone": rec.phone, "error": exc.reason})
            continue
        if len(out.samples) < SAMPLES:
            out.samples.append({"index": idx, "phone": rec.phone, "text": text})
    out.warnings = hygiene.identical_text(parsed, identical_warn)
    for lane, name in enumerate(senders):
        rule = quiet.get(name)
        if rule is None:
            continue
        zones: dict[str, bool] = {}
        count = 0
        for rec in parsed.accepted[lane :: len(senders)]:
            zone = recipient_zone(rec.phone, rule.zone)
            if zone not in zones:
                zones[zone] = rule.inside(now_ms, zone)[0]
            count += zones[zone]
        out.quiet_now[name] = count
    return out


async def _quiet_rules(
    s: Previews, senders: list[str], schedule: Schedule | None
) -> dict[str, Daily]:
    """Per account: the quiet hours in force (the request's, else the account's own)."""
    out: dict[str, Daily] = {}
    for name in senders:
        quiet = schedule.quiet if schedule and schedule.quiet else None
        if quiet is None:
            account = await s.accounts.get(name)
            if account is not None and account.quietHours is not None:
                hours = account.quietHours
                quiet = Daily(hours.start, hours.end, account.timezone or s.settings.timezone)
        if quiet is not None:
            out[name] = quiet
    return out
