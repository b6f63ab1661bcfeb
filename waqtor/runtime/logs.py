"""Logging to stdout and to a rotating file, with phone numbers masked."""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from pathlib import Path

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


def setup(level: str, log_dir: Path | None) -> None:
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
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
