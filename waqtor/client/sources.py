"""What ``send`` accepts (a list, rows, or a CSV file) turned into one request body, and the
``Idempotency-Key`` derived from exactly what is sent: the same list, message, accounts and
timing give the same key, so running the same send again after a crash never sends twice."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

#: What ``send`` takes: phone strings, rows ({"phone", "message"?, ...variables}), or a CSV file.
Recipients = str | Path | Iterable[str | Mapping[str, Any]]


@dataclass(frozen=True)
class Body:
    """One send-bulk request: a CSV upload (``csv``) or a JSON body (``json``)."""

    params: dict[str, str]
    json: dict[str, Any] | None = None
    csv: bytes | None = None
    #: sha256 of the CSV file or of the recipients' canonical JSON.
    digest: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def idempotency_key(digest: str, options: Mapping[str, Any]) -> str:
    """``waqtor-<sha256>`` of the recipients' digest and every option that changes the send."""
    canonical = json.dumps(options, sort_keys=True, separators=(",", ":"), default=str)
    return "waqtor-" + hashlib.sha256(f"{digest}\0{canonical}".encode()).hexdigest()[:48]


def csv_rows(raw: bytes) -> list[dict[str, str]]:
    """A CSV file's rows as the server reads them: UTF-8 with or without a BOM, a header row,
    comma or semicolon. For sends the server cannot take as CSV (several accounts, timing)."""
    text = raw.decode("utf-8-sig")
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    rows = []
    for row in reader:
        clean = {str(k).strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if any(clean.values()):
            rows.append(clean)
    return rows


def build(
    recipients: Recipients,
    *,
    message: str | None,
    account: str | None,
    accounts: list[str] | None,
    send_at: datetime | str | None,
    extra: Mapping[str, Any],
) -> Body:
    """The request for ``recipients``. A CSV file goes up as CSV (streamed and parsed by the
    server) unless the send needs the JSON body: several accounts, ``sendAt`` or other fields."""
    if accounts is not None and len(accounts) == 1:
        account, accounts = accounts[0], None
    options: dict[str, Any] = {
        "message": message,
        "account": account,
        "accounts": accounts,
        "sendAt": send_at.isoformat() if isinstance(send_at, datetime) else send_at,
        **extra,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(recipients, str | Path):
        raw = Path(recipients).read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        json_only = bool(accounts and len(accounts) > 1) or bool(send_at) or bool(extra)
        if not json_only:
            params: dict[str, str] = {
                k: str(options[k]) for k in ("message", "account") if k in options
            }
            return Body(params=params, csv=raw, digest=digest)
        rows: list[Any] = list(csv_rows(raw))
    else:
        rows = [r if isinstance(r, str) else dict(r) for r in recipients]
        canonical = json.dumps(rows, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(canonical.encode()).hexdigest()
    body = {"recipients": rows, **options}
    return Body(params={}, json=body, digest=digest)


def key_for(body: Body) -> str:
    options = dict(body.params)
    if body.json is not None:
        options.update({k: v for k, v in body.json.items() if k != "recipients"})
    return idempotency_key(body.digest, options)
