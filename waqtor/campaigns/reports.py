"""Reading a campaign's recipients back: pages of JSON and a streamed CSV report."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from waqtor.domain.phones import search_digits
from waqtor.domain.status import RecipientStatus
from waqtor.domain.templates import TemplateError, builtin_values, render
from waqtor.runtime import offload
from waqtor.runtime.parts import HasClock, HasLedger, HasSettings


class Reports(HasSettings, HasClock, HasLedger, Protocol):
    """What the CSV report reads."""


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
    s: HasLedger,
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
    digits = search_digits(search)
    if not codes and not digits:
        rows = await s.ledger.recipient_rows(cid, offset, min(total, offset + limit) - 1)
        return rows, total
    if codes and not digits:
        # The status string is one byte per recipient: filter it here, fetch only the page.
        status = await s.ledger.status_codes(cid)
        matches = [i for i, c in enumerate(status) if c in codes]
        return await s.ledger.rows_at(cid, matches[offset : offset + limit]), len(matches)
    _, hits = await s.ledger.find_phone(cid, digits, MAX_PHONE_MATCHES)
    if codes:
        status = await s.ledger.status_codes(cid)
        hits = [i for i in hits if i < len(status) and status[i] in codes]
    rows = await s.ledger.rows_at(cid, hits[offset : offset + limit])
    return rows, len(hits) if len(hits) < MAX_PHONE_MATCHES else None


#: A cell starting with one of these is read as a formula by Excel, LibreOffice and Google
#: Sheets (OWASP's "CSV injection"); tab and carriage return hide the sign from a glance.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


def safe_cell(value: object) -> object:
    """``value`` as a spreadsheet shows it, never runs it: a text that starts like a formula
    gets a leading ``'`` (OWASP's advice). Plain numbers (``+966501234567``, ``-3``) are left
    as they are: a spreadsheet reads them as numbers, not formulas."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def _chunk_rows(
    rows: list[tuple[dict[str, Any], Any, dict[str, Any]]],
    template: str,
    cid: str,
    signature: str,
    zone: ZoneInfo,
    now_ms: int,
) -> str:
    """One chunk of the report as CSV text: every text re-rendered (CPU pool)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    for row, rec, detail in rows:
        when = detail.get("tD") or detail.get("ts") or now_ms
        try:
            row["text"] = render(
                rec.message or template,
                rec.variables,
                builtin_values(rec.phone, signature, datetime.fromtimestamp(when / 1000, zone)),
                seed=f"{cid}:{row['index']}",
            )
        except TemplateError as exc:
            row["text"] = ""
            row["error"] = row.get("error") or exc.reason
        expanded = _expand(row, detail)
        writer.writerow({name: safe_cell(value) for name, value in expanded.items()})
    return buf.getvalue()


async def csv_report(s: Reports, cid: str) -> AsyncIterator[str]:
    """One CSV row per recipient, streamed in chunks; the text is re-rendered exactly as sent
    (``{date}``/``{time}`` at the moment it was sent). Cells that a spreadsheet would run as a
    formula are neutralised (``safe_cell``)."""
    meta = await s.ledger.meta(cid)
    total = int(meta.get("total", "0"))
    template = meta.get("template", "")
    zone = _zone(s.settings.timezone)
    yield ",".join(CSV_COLUMNS) + "\r\n"
    for start in range(0, total, CHUNK):
        rows = await s.ledger.recipient_details(cid, start, min(total, start + CHUNK) - 1)
        yield await offload.run(
            _chunk_rows, rows, template, cid, s.settings.signature, zone, s.clock.now_ms()
        )
