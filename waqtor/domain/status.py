"""Recipient statuses, shared by the ledger, the API and the tests."""

from __future__ import annotations

from enum import StrEnum


class RecipientStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    RETRY = "retry"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CANCELED = "canceled"
    SUPPRESSED = "suppressed"
    EXPIRED = "expired"
    SKIPPED = "skipped"

    @property
    def code(self) -> str:
        """One byte in the ledger's status string (one byte per recipient keeps 100k small)."""
        return _CODES[self]

    @classmethod
    def from_code(cls, code: str) -> RecipientStatus:
        return _BY_CODE[code]


_CODES: dict[RecipientStatus, str] = {
    RecipientStatus.PENDING: "P",
    RecipientStatus.SENDING: "S",
    RecipientStatus.RETRY: "R",
    RecipientStatus.SENT: "D",
    RecipientStatus.DELIVERED: "V",
    RecipientStatus.READ: "E",
    RecipientStatus.FAILED: "F",
    RecipientStatus.UNKNOWN: "U",
    RecipientStatus.CANCELED: "C",
    RecipientStatus.SUPPRESSED: "Z",
    RecipientStatus.EXPIRED: "X",
    RecipientStatus.SKIPPED: "K",
}
_BY_CODE = {code: status for status, code in _CODES.items()}

#: Statuses a recipient never leaves by itself (unknown may still be settled by an operator).
TERMINAL = frozenset(
    {
        RecipientStatus.SENT,
        RecipientStatus.DELIVERED,
        RecipientStatus.READ,
        RecipientStatus.FAILED,
        RecipientStatus.UNKNOWN,
        RecipientStatus.CANCELED,
        RecipientStatus.SUPPRESSED,
        RecipientStatus.EXPIRED,
        RecipientStatus.SKIPPED,
    }
)
#: Statuses that still need work from a worker.
OPEN = frozenset({RecipientStatus.PENDING, RecipientStatus.RETRY, RecipientStatus.SENDING})


class JobState(StrEnum):
    """Queue-level states, named as Bull/BullMQ name them (the seed's contract)."""

    WAITING = "waiting"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    DELAYED = "delayed"
    PAUSED = "paused"
    UNKNOWN = "unknown"


FINISHED_JOB_STATES = frozenset({JobState.COMPLETED, JobState.FAILED})
