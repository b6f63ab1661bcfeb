"""Dry run: validate and render every message, report what would happen; send and store nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from waqtor import campaigns, hygiene
from waqtor.domain.recipients import Parsed
from waqtor.domain.templates import TemplateError, builtin_values, render
from waqtor.services import Services

SAMPLES = 5


async def dry_run(s: Services, parsed: Parsed, account: str) -> dict[str, Any]:
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
    eta = await campaigns.estimate(s, account, valid)
    mode = "instant" if 0 < valid <= s.settings.instant_threshold else "queue"
    return {
        "dryRun": True,
        "mode": mode,
        "total": valid,
        "invalid": invalid + render_errors,
        "duplicates": sum(1 for r in parsed.rejected if r.error.startswith("duplicate")),
        "suppressed": suppressed,
        "suppressedCount": len(suppressed),
        "warnings": hygiene.identical_text(parsed, s.settings.identical_text_warn),
        "samples": samples,
        "schedule": {
            account: {
                "recipients": valid,
                "estimatedTime": eta.text,
                "estimatedMs": int(eta.ms),
                "backlogAhead": eta.backlog_ahead,
            }
        },
    }
