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
    """Queue-level states, named as Bull/BullMQ name them (WaQtor's contract)."""

    WAITING = "waiting"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    DELAYED = "delayed"
    PAUSED = "paused"
    #: Ours, not bullmq's: a canceled campaign whose job has finished (bullmq: completed).
    CANCELED = "canceled"
    UNKNOWN = "unknown"


FINISHED_JOB_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELED})


def campaign_state(job_state: str, *, paused: bool, canceled: bool) -> str:
    """A campaign's state as the API, the job list, the dashboard and the stats show it, from
    its job's state (named as WaQtor names them) and the campaign's own flags: a campaign
    paused by itself is ``paused`` wherever its job waits, and a canceled one that has
    finished is ``canceled``, not ``completed``."""
    if job_state == JobState.COMPLETED.value and canceled:
        return JobState.CANCELED.value
    if paused and job_state not in (JobState.COMPLETED.value, JobState.FAILED.value):
        return JobState.PAUSED.value
    return job_state
