"""Recipient lists from CSV, parsed as they stream in.

A header row names the columns: ``phone`` (required), ``message`` (optional, per row) and any
variables. UTF-8 with or without a BOM; comma or semicolon, told apart on the header line. Rows
become recipients as they arrive, so a 100,000-row upload is never held twice in memory.

The bytes are parsed in slices of at most ``SLICE_BYTES`` on the CPU pool (``offload``), never
on the event loop, and each slice costs time linear in its size: the end of the last complete
record is found in one pass that tracks quotes, and a record still open after
``MAX_RECORD_CHARS`` (an unbalanced quote) is refused instead of being re-scanned forever.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import AsyncIterator

from waqtor.domain.recipients import Parsed, RecipientParser
from waqtor.runtime import offload

SLICE_BYTES = 64 * 1024
MAX_RECORD_CHARS = 256 * 1024
_BREAK = re.compile(r"\r\n?|\n")


class CsvError(Exception):
    pass


def _delimiter(header_line: str) -> str:
    return ";" if header_line.count(";") > header_line.count(",") else ","


def _complete(block: str) -> int:
    """Where the last complete record of ``block`` ends: after its last line break (CR or LF)
    outside quotes (0 if none). One pass over the block."""
    cut = 0
    quotes = 0
    start = 0
    for brk in _BREAK.finditer(block):
        quotes += block.count('"', start, brk.start())
        start = brk.end()
        if quotes % 2 == 0:
            cut = start
    return cut


class _CsvParser:
    def __init__(self, message: str | None, default_region: str | None, max_rows: int) -> None:
        self.parser = RecipientParser(message, default_region)
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
        self.max_rows = max_rows
        self.pending = ""
        self.header: list[str] | None = None
        self.delimiter = ","
        self.rows = 0

    def feed(self, data: bytes, final: bool = False) -> None:
        """Decode and parse one slice (runs on the CPU pool)."""
        try:
            block = self.pending + self.decoder.decode(data, final=final)
            cut = len(block) if final else _complete(block)
            done, self.pending = block[:cut], block[cut:]
            if len(self.pending) > MAX_RECORD_CHARS:
                raise CsvError(
                    f"csv: a record longer than {MAX_RECORD_CHARS} characters "
                    "(is a quote left open?)"
                )
            if done:
                self._records(done)
        except UnicodeDecodeError as exc:
            raise CsvError(f"csv: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        except csv.Error as exc:
            raise CsvError(f"csv: {exc}") from exc

    def _records(self, done: str) -> None:
        if self.header is None:
            self.delimiter = _delimiter(_BREAK.split(done, maxsplit=1)[0])
        parser = self.parser
        for record in csv.reader(io.StringIO(done, newline=""), delimiter=self.delimiter):
            if not record or all(not cell.strip() for cell in record):
                continue
            if self.header is None:
                header = [cell.strip() for cell in record]
                if "phone" not in [h.lower() for h in header]:
                    raise CsvError("csv: the header row has no 'phone' column")
                self.header = [
                    h.lower() if h.lower() in ("phone", "message") else h for h in header
                ]
                continue
            self.rows += 1
            if self.rows > self.max_rows:
                raise CsvError(f"csv: more than {self.max_rows} rows; the limit is {self.max_rows}")
            item: dict[str, object] = {}
            for name, cell in zip(self.header, record, strict=False):
                if name and cell != "":
                    item[name] = cell.strip() if name == "phone" else cell
            parser.add(item)


async def parse_csv(
    chunks: AsyncIterator[bytes],
    message: str | None,
    *,
    default_region: str | None = None,
    max_rows: int = 100_000,
) -> Parsed:
    state = _CsvParser(message, default_region, max_rows)
    async for chunk in chunks:
        for start in range(0, len(chunk), SLICE_BYTES):
            await offload.run(state.feed, chunk[start : start + SLICE_BYTES])
    await offload.run(state.feed, b"", True)
    if state.header is None:
        raise CsvError("csv: empty file; expected a header row with a 'phone' column")
    return state.parser.result()
