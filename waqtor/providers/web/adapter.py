"""Our boundary around a WhatsApp Web client library: the few calls waqtor makes and the events
it needs, in our own types. ``neonize_client`` implements it over neonize; the tests implement
it with a fake (no test reaches WhatsApp).

Calls are blocking (neonize's are FFI calls into Go); the session runs them on threads. Events
arrive on the library's threads through the ``EventSink`` given at construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class QrCode:
    """A QR code to show; WhatsApp rotates it (about every 20 s)."""

    code: str


@dataclass(frozen=True)
class PairCode:
    code: str


@dataclass(frozen=True)
class Connected:
    me: str  # the linked number, digits


@dataclass(frozen=True)
class Disconnected:
    """The socket dropped; the library reconnects by itself (not a ban)."""


@dataclass(frozen=True)
class LoggedOut:
    """The device was unlinked (by the phone, or by WhatsApp: 401, 403 locked, 406 banned)."""

    reason: str


@dataclass(frozen=True)
class TemporaryBan:
    reason: str
    expires_in_s: int


@dataclass(frozen=True)
class ConnectFailure:
    reason: str
    message: str
    #: The failure is WhatsApp refusing this device (logged out, banned): never retried.
    final: bool


@dataclass(frozen=True)
class StreamReplaced:
    """Another connection of the same session took over (a second process or host)."""


@dataclass(frozen=True)
class Receipt:
    phone: str  # the chat's number, digits
    message_ids: tuple[str, ...]
    kind: str  # delivered | read


@dataclass(frozen=True)
class Inbound:
    phone: str
    text: str
    message_id: str


WebEvent = (
    QrCode
    | PairCode
    | Connected
    | Disconnected
    | LoggedOut
    | TemporaryBan
    | ConnectFailure
    | StreamReplaced
    | Receipt
    | Inbound
)
EventSink = Callable[[WebEvent], None]


class MissingNeonize(RuntimeError):
    """The ``web`` extra is not installed (or the system's libmagic is missing under it)."""


class WebSendError(Exception):
    """A send refused by WhatsApp or the library. ``code``: WhatsApp's (``463``, ``479``...) or
    ours (``not_connected``, ``send_failed``); ``sent`` says whether the request may have left."""

    def __init__(self, code: str, reason: str, *, may_have_left: bool = False) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.may_have_left = may_have_left


class WebClient(Protocol):
    def start(self) -> None:
        """Connect in the background (resume the stored session, or start pairing by QR)."""

    def stop(self) -> None:
        """Disconnect and stop; the stored session stays."""

    def pair_phone(self, phone: str) -> str:
        """A pairing code for ``phone`` (digits), to type into WhatsApp instead of a QR."""

    def send_text(self, phone: str, text: str) -> str:
        """Send ``text`` to ``phone`` (digits); the message id WhatsApp knows it by."""

    def typing(self, phone: str, on: bool) -> None:
        """Show or clear "typing..." in the chat with ``phone``."""

    def on_whatsapp(self, phones: Sequence[str]) -> dict[str, bool]:
        """Which of these numbers (digits) have WhatsApp."""

    def logout(self) -> None:
        """Unlink this device from the phone (the stored session becomes useless)."""


class ClientFactory(Protocol):
    """Builds a client for a session database (a SQLite path, or a Postgres URL), and tells,
    without connecting, whether a SQLite database holds a linked device."""

    def __call__(self, db: Path | str, sink: EventSink) -> WebClient: ...

    def has_session(self, db: Path) -> bool: ...
