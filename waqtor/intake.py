"""Recipient lists from CSV, parsed as they stream in.

A header row names the columns: ``phone`` (required), ``message`` (optional, per row) and any
variables. UTF-8 with or without a BOM; comma or semicolon, told apart on the header line. Rows
become recipients as they arrive, so a 100,000-row upload is never held twice in memory.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import AsyncIterator, Iterator

from waqtor.domain.recipients import Parsed, RecipientParser


class CsvError(Exception):
    pass


def _delimiter(header_line: str) -> str:
    return ";" if header_line.count(";") > header_line.count(",") else ","


def _records(lines: list[str], delimiter: str) -> Iterator[list[str]]:
    yield from csv.reader(lines, delimiter=delimiter)


async def parse_csv(
    chunks: AsyncIterator[bytes],
    message: str | None,
    *,
    default_region: str | None = None,
    max_rows: int = 100_000,
) -> Parsed:
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    parser = RecipientParser(message, default_region)
    pending = ""
    header: list[str] | None = None
    delimiter = ","
    rows = 0

    def take(block: str, final: bool) -> str:
        """Parse the complete records in ``block``; return what must wait for more bytes."""
        nonlocal header, delimiter, rows
        cut = len(block) if final else block.rfind("\n") + 1
        # A newline inside quotes is part of a field: wait until the quotes balance.
        while cut > 0 and block.count('"', 0, cut) % 2 and not final:
            cut = block.rfind("\n", 0, cut - 1) + 1
        done, rest = block[:cut], block[cut:]
        if not done:
            return rest
        lines = done.splitlines(keepends=True)
        if header is None:
            delimiter = _delimiter(lines[0])
        for record in _records(lines, delimiter):
            if not record or all(not cell.strip() for cell in record):
                continue
            if header is None:
                header = [cell.strip() for cell in record]
                lowered = [h.lower() for h in header]
                if "phone" not in lowered:
                    raise CsvError("csv: the header row has no 'phone' column")
                header = [h.lower() if h.lower() in ("phone", "message") else h for h in header]
                continue
            rows += 1
            if rows > max_rows:
                raise CsvError(f"csv: more than {max_rows} rows; the limit is {max_rows}")
            item: dict[str, object] = {}
            for name, cell in zip(header, record, strict=False):
                if name and cell != "":
                    item[name] = cell.strip() if name == "phone" else cell
            parser.add(item)
        return rest

    try:
        async for chunk in chunks:
            pending = take(pending + decoder.decode(chunk), final=False)
        pending = take(pending + decoder.decode(b"", final=True), final=True)
    except UnicodeDecodeError as exc:
        raise CsvError(f"csv: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise CsvError(f"csv: {exc}") from exc
    if header is None:
        raise CsvError("csv: empty file; expected a header row with a 'phone' column")
    return parser.result()
