"""Turn a request's recipient list into accepted recipients and per-index rejections."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from waqtor.domain.phones import MAX_RAW_CHARS, PhoneError, normalise
from waqtor.domain.templates import TemplateError, check, missing

#: Fields of a recipient object that are not template variables.
RESERVED = frozenset({"phone", "message"})


# Not frozen: a frozen dataclass's __init__ costs about 3x (one object.__setattr__ a field),
# and one is built per recipient on the send path and at submission.
@dataclass(slots=True)
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
    #: each accepted recipient's phone exactly as the request gave it, string or number (echoed
    #: back to clients that match results against their own values).
    given: list[str | int] = field(default_factory=list)


_SCALARS = (str, int, float)  # a tuple: ``str | int | float`` is rebuilt on every call
_PHONES = (str, int)
#: Integers past this are not a variable's value (and ``str()`` of a huge one raises).
_MAX_INT = 10**30


def _variables(item: Mapping[str, object]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in item.items():
        if key in RESERVED or value is None:
            continue
        if type(value) is str:  # the usual case, and the cheapest check
            out[str(key)] = value
        elif isinstance(value, _SCALARS) and not isinstance(value, bool):
            if isinstance(value, int) and not -_MAX_INT < value < _MAX_INT:
                continue  # not a value anyone means; a placeholder using it is reported missing
            out[str(key)] = str(value)
    return out


class RecipientParser:
    """Validates recipients one at a time (so a CSV can be read as it streams)."""

    def __init__(self, message: str | None, default_region: str | None = None) -> None:
        self.message = message
        self.default_region = default_region
        self.parsed = Parsed(template=message or "")
        self.seen: dict[str, int] = {}
        self.index = 0
        self._checked: str | None = None  # the last template that passed ``check``

    def _reject(self, phone: str | None, error: str) -> None:
        self.parsed.rejected.append(Rejection(self.index, phone, error))

    def add(self, item: object) -> None:
        try:
            self._add(item)
        finally:
            self.index += 1

    def _add(self, item: object) -> None:
        raw_phone: object
        own: str | None = None
        variables: dict[str, str] = {}
        if isinstance(item, _PHONES) and not isinstance(item, bool):
            raw_phone = item
        elif isinstance(item, dict) or isinstance(item, Mapping):
            raw_phone = item.get("phone")
            own_raw = item.get("message")
            if own_raw is not None and not isinstance(own_raw, str):
                self._reject(None, "message must be a string")
                return
            own = own_raw or None
            variables = _variables(item)
        else:
            self._reject(None, "recipient must be a phone string or an object")
            return
        shown = raw_phone[:MAX_RAW_CHARS] if isinstance(raw_phone, str) else None
        if raw_phone is None:
            self._reject(None, "phone is required")
            return
        try:
            phone = normalise(raw_phone, self.default_region)
        except PhoneError as exc:
            self._reject(shown, exc.reason)
            return
        template = own or self.message
        if not template:
            self._reject(phone, "message is required")
            return
        if template is not self._checked:
            try:
                check(template)  # length, nesting and choice limits; cached per template
            except TemplateError as exc:
                self._reject(phone, f"message: {exc.reason}")
                return
            self._checked = template
        lacking = missing(template, variables)
        if lacking:
            names = ", ".join("{" + name + "}" for name in lacking)
            self._reject(phone, f"missing variable {names}")
            return
        if phone in self.seen:
            self._reject(phone, f"duplicate of recipient {self.seen[phone]}")
            return
        self.seen[phone] = self.index
        parsed = self.parsed
        if not parsed.template:
            parsed.template = template
        parsed.accepted.append(
            Recipient(phone, variables, None if template == parsed.template else template)
        )
        parsed.indexes.append(self.index)
        parsed.given.append(raw_phone if isinstance(raw_phone, str | int) else str(raw_phone))

    def result(self) -> Parsed:
        return self.parsed


def parse(
    items: Iterable[object],
    message: str | None,
    default_region: str | None = None,
) -> Parsed:
    """Validate every recipient; one bad recipient never rejects the others.

    A recipient is a bare phone string or ``{"phone", "message"?, ...variables}``.
    ``message`` is the template for recipients without their own.
    """
    parser = RecipientParser(message, default_region)
    for item in items:
        parser.add(item)
    return parser.result()
