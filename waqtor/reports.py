"""Reading a campaign's recipients back: pages of JSON and a streamed CSV report."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from waqtor.domain.status import RecipientStatus
from waqtor.domain.templates import TemplateError, builtin_values, render
from waqtor.services import Services

CHUNK = 2000
MAX_PHONE_MATCHES = 10_000
CSV_COLUMNS = (
    "index",
    "phone",
    "text",
    "status",
    "attempts",
    "errorCode",
    "error",
    "messageId",
    "worker",
    "sendingAt",
    "sentAt",
    "failedAt",
    "unknownAt",
    "canceledAt",
)
_TIMES = {"D": "sentAt", "F": "failedAt", "U": "unknownAt", "C": "canceledAt"}


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except Exception:
        return ZoneInfo("UTC")


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _expand(row: dict[str, Any], detail: dict[str, Any]) -> dict[str, Any]:
    row["sendingAt"] = _iso(detail.get("ts"))
    for code, name in _TIMES.items():
        row[name] = _iso(detail.get("t" + code))
    return row


async def recipient_page(
    s: Services,
    cid: str,
    *,
    statuses: Collection[RecipientStatus] = (),
    search: str = "",
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int | None]:
    """Recipients matching a status filter and a phone fragment, in request order.

    Returns the page and the total count of matches (None when a phone search stopped early).
    """
    meta = await s.ledger.meta(cid)
    total = int(meta.get("total", "0"))
    codes = {st.code for st in statuses}
    digits = "".join(ch for ch in search if ch.isdigit())
    if not codes and not digits:
        rows = await s.ledger.recipient_rows(cid, offset, min(total, offset + limit) - 1)
        return rows, total
    if codes and not digits:
        # The status string is one byte per recipient: filter it here, fetch only the page.
        status = str(await s.redis.get(s.keys.status(cid)) or "")
        matches = [i for i, c in enumerate(status) if c in codes]
        return await s.ledger.rows_at(cid, matches[offset : offset + limit]), len(matches)
    _, hits = await s.ledger.find_phone(cid, digits, MAX_PHONE_MATCHES)
    if codes:
        status = str(await s.redis.get(s.keys.status(cid)) or "")
        hits = [i for i in hits if i < len(status) and status[i] in codes]
    rows = await s.ledger.rows_at(cid, hits[offset : offset + limit])
    return rows, len(hits) if len(hits) < MAX_PHONE_MATCHES else None


async def csv_report(s: Services, cid: str) -> AsyncIterator[str]:
    """One CSV row per recipient, streamed in chunks; the text is re-rendered exactly as sent
    (``{date}``/``{time}`` at the moment it was sent)."""
    meta = await s.ledger.meta(cid)
    total = int(meta.get("total", "0"))
    template = meta.get("template", "")
    zone = _zone(s.settings.timezone)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    yield buf.getvalue()
    for start in range(0, total, CHUNK):
        buf.seek(0)
        buf.truncate()
        for row, rec, detail in await s.ledger.recipient_details(
            cid, start, min(total, start + CHUNK) - 1
        ):
            when = detail.get("tD") or detail.get("ts") or s.clock.now_ms()
            try:
                row["text"] = render(
                    rec.message or template,
                    rec.variables,
                    builtin_values(
                        rec.phone,
                        s.settings.signature,
                        datetime.fromtimestamp(when / 1000, zone),
                    ),
                    seed=f"{cid}:{row['index']}",
                )
            except TemplateError as exc:
                row["text"] = ""
                row["error"] = row.get("error") or exc.reason
            writer.writerow(_expand(row, detail))
        yield buf.getvalue()
