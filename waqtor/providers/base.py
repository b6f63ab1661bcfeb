"""The provider seam: ``send(message) -> result``, with errors sorted into retry classes, and
what a provider can do declared once, in its :class:`Capabilities`.

The send path reads only the capabilities (never ``getattr`` on the provider): a new provider
states in one place whether it takes batches, how many requests may be in flight, its
messages-per-second limit and whose it is, how unknown outcomes are settled, and what it needs
(a gap between sends, a number check, typing presence). ``mypy --strict`` checks that every
provider class implements :class:`Provider`, which each one subclasses explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol


# Not frozen: a frozen dataclass's __init__ costs about 3x (one object.__setattr__ a field),
# and one of each is built per message on the send path.
@dataclass(slots=True)
class OutgoingMessage:
    account: str
    phone: str  # E.164
    text: str
    campaign_id: str
    attempt_id: str  # ours, unique per attempt: lets a provider settle an unknown outcome
    #: An approved WhatsApp template ``{name, language, components}``, rendered for this
    #: recipient; when set, ``text`` is only a readable copy for reports.
    template: dict[str, Any] | None = None
    #: Media by URL: ``{"type": "image" | "document", "link": ..., "caption"?, "filename"?}``.
    media: dict[str, Any] | None = None
    #: "typing..." shown by the request itself first (``Capabilities.typing_in_send``).
    typing_ms: int = 0


@dataclass(slots=True)
class SendResult:
    message_id: str


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class SessionState:
    """A WhatsApp Web gateway session: the gateway's own state word (WAHA ``WORKING``,
    Evolution ``open``...), whether it can send, and what to do about it when it cannot."""

    state: str
    working: bool
    detail: str
    #: Stopped, failed or logged out: it will not come back without someone.
    needs_operator: bool = False


class ProviderError(Exception):
    """Base of every provider failure. ``code`` is the provider's own, kept for reports."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class TransientError(ProviderError):
    """The message was not accepted, and trying again later may work (5xx, refused, timeout
    before the request left)."""


class RateLimitedError(TransientError):
    def __init__(self, code: str, reason: str, retry_after_s: float) -> None:
        super().__init__(code, reason)
        self.retry_after_s = retry_after_s


class UnavailableError(TransientError):
    """The provider as a whole is down: the job backs off instead of burning every
    recipient's retries."""


class PermanentError(ProviderError):
    """Never going to work for this recipient (invalid number, not on WhatsApp, auth)."""


class SessionDownError(UnavailableError):
    """A WhatsApp Web gateway's session is not logged in and working (QR code to scan,
    starting, stopped, failed, logged out). The account waits; no recipient is failed.
    ``needs_operator``: the session stopped, failed or logged out (a ban signal: the breaker
    pauses the account until an operator resumes it), rather than starting or waiting for a QR
    scan, which clears by itself."""

    def __init__(self, code: str, reason: str, *, state: str, needs_operator: bool) -> None:
        super().__init__(code, reason)
        self.state = state
        self.needs_operator = needs_operator


class BanSignalError(ProviderError):
    """WhatsApp refused the message in a way that says "slow down or be banned" (error 463,
    the reach-out timelock for cold contacts, or a temporary ban). Never retried as transient:
    the account rests with the breaker's cool-down and the recipient waits for it."""


class AmbiguousError(ProviderError):
    """The request went out but no answer came back: it may have been delivered."""


class Unsupported(NotImplementedError):
    """The provider does not do this (its capabilities say so)."""


class Lookup(Enum):
    """What ``Provider.lookup`` promises."""

    #: ``lookup(attempt)`` answers the message id sent under that attempt, or None, which is
    #: final: the provider fences the attempt as it answers, so a request of it still on its
    #: way is refused, and the recipient may be sent again (the simulator).
    FENCED = "fenced"
    #: The provider cannot be asked by attempt id (``lookup`` raises NotImplementedError):
    #: unknown outcomes are settled by status webhooks or by an operator (the Cloud API).
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider can do. The defaults are the careful choice for a provider that says
    nothing: one message per request, one request at a time, no rate of its own, no lookup."""

    #: Messages one request may carry (``send_batch``); 1: one message per request.
    batch_size: int = 1
    #: Requests one sender account may have in flight at once (from one process) when it has
    #: no pacing gap: the upper bound of the send path's adaptive in-flight limit.
    max_in_flight: int = 1
    #: Messages per second the provider accepts, shared by every process (None: no limit).
    messages_per_second: float | None = None
    #: Whose limit ``messages_per_second`` is: accounts with the same key share it (the Cloud
    #: API's phone-number id). None: each account has its own.
    throttle_key: str | None = None
    #: Outcomes come back by status webhooks carrying our attempt id; the send path indexes
    #: each attempt before its request and each message id with its outcome.
    settles_by_webhook: bool = False
    #: What ``lookup`` promises.
    lookup: Lookup = Lookup.NONE
    #: Human pacing: the least gap (ms) between two sends of one account, whatever the
    #: account's own delay. Above 0 the account sends one message at a time, never in batches
    #: or concurrently (WhatsApp Web sessions, which are banned for machine-like bursts).
    min_gap_ms: int = 0
    #: ``check_numbers`` can tell which numbers are on WhatsApp.
    number_check: bool = False
    #: ``send_presence`` can show "typing..." to a recipient before a message.
    presence: bool = False
    #: The request itself shows "typing..." for ``OutgoingMessage.typing_ms`` before the
    #: message goes out (Evolution API's ``delay``): the send takes that much longer.
    typing_in_send: bool = False
    #: An ordinary WhatsApp number logged in through a gateway session: ``session()`` says
    #: whether it is working, and the account has a daily cap on new contacts.
    web_session: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_in_flight < 1 or self.min_gap_ms < 0:
            raise ValueError(f"impossible capabilities: {self}")
        if self.messages_per_second is not None and self.messages_per_second <= 0:
            raise ValueError("messages_per_second must be above 0, or None for no limit")


#: A provider that declares nothing.
DEFAULT_CAPABILITIES = Capabilities()


class Provider(Protocol):
    """Every provider subclasses this explicitly, so it inherits the defaults below and
    ``mypy --strict`` checks the rest. ``capabilities`` may be set per instance (the Cloud
    API's limit belongs to its phone number)."""

    name: str
    capabilities: Capabilities = DEFAULT_CAPABILITIES

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Send one message; a ``ProviderError`` subclass says how it failed."""
        ...

    async def send_batch(
        self, messages: Sequence[OutgoingMessage]
    ) -> list[SendResult | ProviderError]:
        """Send up to ``capabilities.batch_size`` messages in one request, one outcome per
        message, in order. Called only when ``batch_size`` > 1; the default sends them one
        after another."""
        out: list[SendResult | ProviderError] = []
        for message in messages:
            try:
                out.append(await self.send(message))
            except ProviderError as exc:
                out.append(exc)
        return out

    async def lookup(self, attempt_id: str) -> str | None:
        """The message id sent under ``attempt_id``, or None if the provider has none.

        None must be final: a request of that attempt still on its way (its worker lost the
        job but lives on) must never be accepted after this answer, so the provider fences
        the attempt as it answers. Only then may the caller send the recipient again.
        Raises NotImplementedError when the provider cannot promise that (then unknowns stay
        unknown, for a status webhook or an operator to settle); ``capabilities.lookup`` says
        which it is, and a ``FENCED`` provider may still raise it for a while (switched off).
        """
        raise Unsupported(f"{self.name}: no lookup by attempt id")

    async def check_numbers(self, phones: Sequence[str]) -> dict[str, bool]:
        """Which of these E.164 numbers are on WhatsApp (``capabilities.number_check``)."""
        raise Unsupported(f"{self.name}: no number check")

    async def send_presence(self, account: str, phone: str, typing_ms: int) -> None:
        """Show "typing..." to ``phone`` for about ``typing_ms`` (``capabilities.presence``)."""
        raise Unsupported(f"{self.name}: no typing presence")

    async def session(self, *, fresh: bool = False) -> SessionState:
        """The gateway session's state (``capabilities.web_session``); cached briefly unless
        ``fresh``."""
        raise Unsupported(f"{self.name}: no gateway session")

    async def health(self) -> Health: ...

    async def close(self) -> None: ...
