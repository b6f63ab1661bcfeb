"""The provider seam: ``send(message) -> result``, with errors sorted into retry classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class SendResult:
    message_id: str


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str


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


class AmbiguousError(ProviderError):
    """The request went out but no answer came back: it may have been delivered."""


class Provider(Protocol):
    name: str

    async def send(self, message: OutgoingMessage) -> SendResult: ...

    async def lookup(self, attempt_id: str) -> str | None:
        """The message id sent under ``attempt_id``, or None if the provider has none.

        None must be final: a request of that attempt still on its way (its worker lost the
        job but lives on) must never be accepted after this answer, so the provider fences
        the attempt as it answers. Only then may the caller send the recipient again.
        Raises NotImplementedError when the provider cannot promise that (then unknowns stay
        unknown, for a status webhook or an operator to settle).
        """
        ...

    async def health(self) -> Health: ...

    async def close(self) -> None: ...
