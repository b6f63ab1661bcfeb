"""One page of a campaign's recipient table: the core's page plus each row's timestamps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from waqtor.campaigns import reports
from waqtor.dashboard import search
from waqtor.dashboard.fixes import fix_for
from waqtor.domain.status import TERMINAL, RecipientStatus
from waqtor.runtime.parts import HasLedger

PAGE = 50
MAX_MATCHES = 10_000  # a phone search counts matches up to this many
_ENDED = tuple(st.code for st in TERMINAL)


@dataclass(frozen=True)
class Filter:
    status: str = ""  # one RecipientStatus value, or "" for all
    search: str = ""
    page: int = 0
    reveal: bool = False

    def query(self, **changes: Any) -> str:
        values = {
            "status": self.status,
            "q": self.search,
            "page": self.page,
            "reveal": "1" if self.reveal else "",
        }
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v not in ("", 0, None)})


@dataclass(frozen=True)
class Row:
    index: int
    phone: str
    status: str
    attempts: int
    error_code: str
    error: str
    fix: str
    message_id: str
    sending_ms: int
    ended_ms: int
    worker: str = ""  # the worker that claimed it last ("api": an instant send)


@dataclass(frozen=True)
class Table:
    rows: list[Row]
    total: int | None  # None: a phone search stopped early, more may follow
    filter: Filter

    @property
    def has_next(self) -> bool:
        if self.total is None:
            return len(self.rows) >= PAGE
        return (self.filter.page + 1) * PAGE < self.total


def parse_status(raw: str) -> str:
    try:
        return RecipientStatus(raw).value
    except ValueError:
        return ""


async def _by_phone(
    s: HasLedger, cid: str, digits: str, status: str, offset: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Rows whose phone contains ``digits``: matched inside Redis by a Lua scan of the list."""
    _, hits = await s.ledger.find_phone(cid, digits, MAX_MATCHES)
    indexes = list(hits)
    if status:
        code = RecipientStatus(status).code
        codes = await s.ledger.status_codes(cid)
        indexes = [i for i in indexes if i < len(codes) and codes[i] == code]
    total = len(indexes) if len(hits) < MAX_MATCHES else None
    return await s.ledger.rows_at(cid, indexes[offset : offset + PAGE]), total


async def table(s: HasLedger, cid: str, flt: Filter) -> Table:
    digits = search.digits_of(flt.search)
    if digits:
        found, total = await _by_phone(s, cid, digits, flt.status, flt.page * PAGE)
    else:
        statuses = [RecipientStatus(flt.status)] if flt.status else []
        found, total = await reports.recipient_page(
            s, cid, statuses=statuses, offset=flt.page * PAGE, limit=PAGE
        )
    indexes = [int(r["index"]) for r in found]
    details = await s.ledger.details(cid, indexes)
    rows = []
    for row, raw in zip(found, details, strict=True):
        detail: dict[str, Any] = json.loads(raw) if raw else {}
        ended = max((int(detail.get("t" + c, 0) or 0) for c in _ENDED), default=0)
        rows.append(
            Row(
                index=int(row["index"]),
                phone=str(row["phone"]),
                status=str(row["status"]),
                attempts=int(row.get("attempts") or 0),
                error_code=str(row.get("errorCode") or ""),
                error=str(row.get("error") or ""),
                fix=fix_for(row.get("errorCode")) if row["status"] != "sent" else "",
                message_id=str(row.get("messageId") or ""),
                sending_ms=int(detail.get("ts", 0) or 0),
                ended_ms=ended,
                worker=str(detail.get("w") or ""),
            )
        )
    return Table(rows, total, flt)
