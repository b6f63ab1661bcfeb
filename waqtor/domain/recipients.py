"""Turn a request's recipient list into accepted recipients and per-index rejections."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from waqtor.domain.phones import PhoneError, normalise
from waqtor.domain.templates import MAX_MESSAGE_CHARS, missing

#: Fields of a recipient object that are not template variables.
RESERVED = frozenset({"phone", "message"})


@dataclass(frozen=True, slots=True)
class Recipient:
    phone: str  # E.164
    variables: dict[str, str]
    message: str | None = None  # own template; None means the campaign's


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    phone: str | None
    error: str

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "phone": self.phone, "error": self.error}


@dataclass
class Parsed:
    template: str
    accepted: list[Recipient] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    #: index in the request of each accepted recipient, to report results by index.
    indexes: list[int] = field(default_factory=list)


def _variables(item: Mapping[str, object]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in item.items():
        if key in RESERVED or value is None:
            continue
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            out[str(key)] = str(value)
    return out


def parse(
    items: Iterable[object],
    message: str | None,
    default_region: str | None = None,
) -> Parsed:
    """Validate every recipient; one bad recipient never rejects the others.

    A recipient is a bare phone string or ``{"phone", "message"?, ...variables}``.
    ``message`` is the template for recipients without their own.
    """
    parsed = Parsed(template=message or "")
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        raw_phone: object
        own: str | None = None
        variables: dict[str, str] = {}
        if isinstance(item, str | int) and not isinstance(item, bool):
            raw_phone = item
        elif isinstance(item, Mapping):
            raw_phone = item.get("phone")
            own_raw = item.get("message")
            if own_raw is not None and not isinstance(own_raw, str):
                parsed.rejected.append(Rejection(index, None, "message must be a string"))
                continue
            own = own_raw or None
            variables = _variables(item)
        else:
            parsed.rejected.append(
                Rejection(index, None, "recipient must be a phone string or an object")
            )
            continue
        shown = raw_phone if isinstance(raw_phone, str) else None
        if raw_phone is None:
            parsed.rejected.append(Rejection(index, None, "phone is required"))
            continue
        try:
            phone = normalise(raw_phone, default_region)
        except PhoneError as exc:
            parsed.rejected.append(Rejection(index, shown, exc.reason))
            continue
        template = own or message
        if not template:
            parsed.rejected.append(Rejection(index, phone, "message is required"))
            continue
        if len(template) > MAX_MESSAGE_CHARS:
            parsed.rejected.append(
                Rejection(index, phone, f"message is longer than {MAX_MESSAGE_CHARS} characters")
            )
            continue
        lacking = missing(template, variables)
        if lacking:
            names = ", ".join("{" + name + "}" for name in lacking)
            parsed.rejected.append(Rejection(index, phone, f"missing variable {names}"))
            continue
        if phone in seen:
            parsed.rejected.append(Rejection(index, phone, f"duplicate of recipient {seen[phone]}"))
            continue
        seen[phone] = index
        if not parsed.template:
            parsed.template = template
        parsed.accepted.append(
            Recipient(phone, variables, None if template == parsed.template else template)
        )
        parsed.indexes.append(index)
    return parsed
