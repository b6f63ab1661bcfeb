"""Phone number normalisation to E.164 with ``phonenumbers``."""

from __future__ import annotations

import re

import phonenumbers

_JUNK = re.compile(r"[\s().\-/]")


class PhoneError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalise(raw: object, default_region: str | None = None) -> str:
    """Return ``raw`` as E.164 (``+966501234567``) or raise :class:`PhoneError`.

    ``966501234567``, ``+966 50 123 4567`` and ``00966501234567`` are one number: digits without
    a leading ``+`` are read as international unless ``default_region`` is set and the number
    is valid there (a national number such as ``0501234567``).
    """
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise PhoneError("phone must be a string")
    text = _JUNK.sub("", str(raw))
    if not text:
        raise PhoneError("phone is empty")
    if len(text) > 20:
        raise PhoneError("phone is too long")
    if text.startswith("00"):
        text = "+" + text[2:]
    candidates: list[tuple[str, str | None]] = []
    if text.startswith("+"):
        candidates.append((text, None))
    else:
        if default_region:
            candidates.append((text, default_region))
        candidates.append(("+" + text, None))
    for number, region in candidates:
        try:
            parsed = phonenumbers.parse(number, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    raise PhoneError("not a valid phone number")


def mask(phone: str) -> str:
    """``+966501234567`` -> ``+9665*****567``: enough to tell numbers apart in logs, no more."""
    if len(phone) <= 7:
        return "*" * len(phone)
    return phone[:5] + "*" * (len(phone) - 8) + phone[-3:]
