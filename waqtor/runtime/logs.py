"""Logging to stdout and to a rotating file, with phone numbers masked: plain text, or with
``LOG_FORMAT=json`` one JSON object per line for Loki, ELK and the like, carrying the campaign,
account and attempt id that the send path binds (:func:`bind`)."""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

#: Fields of the task's current send: each asyncio task has its own copy.
_fields: ContextVar[Mapping[str, str]] = ContextVar(
    "waqtor_log_fields", default=MappingProxyType({})
)


def bind(**fields: str | None) -> None:
    """Add fields to every line this task logs from now on (``campaign``, ``account``,
    ``attempt``; None drops one); an asyncio task started later inherits them, others never
    see them."""
    merged: dict[str, str | None] = {**_fields.get(), **fields}
    _fields.set({k: v for k, v in merged.items() if v is not None})


_PHONE = re.compile(r"(?<![\w-])\+?\d{9,15}(?!\w)")


def _mask(match: re.Match[str]) -> str:
    digits = match.group(0)
    return digits[:5] + "*" * max(0, len(digits) - 8) + digits[-3:]


class MaskPhones(logging.Filter):
    """Phones can reach a log through any message or argument; mask them all on the way out."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _PHONE.sub(_mask, message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, the bound fields,
    and ``exception`` when there is one. Runs after :class:`MaskPhones`, so phones are masked."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields.get(),
        }
        if record.exc_info:
            line["exception"] = _PHONE.sub(_mask, self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def setup(level: str, log_dir: Path | None, log_format: str = "text") -> None:
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt: logging.Formatter = (
        JsonLines()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                log_dir / "combined.log", maxBytes=10 * 1024 * 1024, backupCount=5
            )
        )
    for handler in handlers:
        handler.setFormatter(fmt)
        handler.addFilter(MaskPhones())
        root.addHandler(handler)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
