"""What one step of the send path did: a recipient's outcome, or why nothing was sent.

The claim scripts answer with these names too (``store.ledger``); :meth:`StepKind.parse`
turns a reply into a member and raises on anything else, so a script and the worker can
never disagree in silence (an unknown answer would otherwise end a lane as if it were done).
"""

from __future__ import annotations

from enum import StrEnum


class UnknownStepKind(RuntimeError):
    """A script or provider answered a kind the send path does not know."""


class StepKind(StrEnum):
    # --- a recipient's outcome ---
    SENT = "sent"
    FAILED = "failed"
    RETRY = "retry"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"  # the duplicate guard
    DEFERRED = "deferred"  # quiet hours, or a throughput limit: again later, not an attempt
    # --- a claim: one recipient, many, or none left just now ---
    CLAIMED = "claimed"
    EMPTY = "empty"  # claim_batch: nothing to claim now; claim.lua says why
    # --- nothing to send now: the lane goes on ---
    EARLY = "early"  # the pacing gap is not over yet
    INTERRUPTED = "interrupted"  # a sleep was cut short by a halt
    INFLIGHT = "inflight"  # nothing to claim, but sends of the campaign are in flight
    # --- the lane ends ---
    DONE = "done"
    LANE_DONE = "lane_done"
    WAIT = "wait"  # retries due later
    SETTLE = "settle"  # unknown outcomes to settle later
    CAPPED = "capped"
    COOLING = "cooling"
    ACCOUNT_PAUSED = "account_paused"
    # --- the campaign stops ---
    LOST = "lost"  # the job's lock is another worker's
    PAUSED = "paused"
    PAUSED_QUEUE = "paused_queue"
    CANCELED = "canceled"
    EXPIRED = "expired"

    @classmethod
    def parse(cls, raw: object) -> StepKind:
        """The member named by a script's reply (str or bytes); raises on anything else."""
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            return cls(name)
        except ValueError:
            raise UnknownStepKind(f"unknown step kind {name!r}") from None


#: A recipient's outcome was recorded (the worker reports progress).
OUTCOMES = frozenset(
    {
        StepKind.SENT,
        StepKind.FAILED,
        StepKind.RETRY,
        StepKind.UNKNOWN,
        StepKind.SKIPPED,
        StepKind.DEFERRED,
    }
)
#: Outcomes of a request that reached the provider (or may have).
SENDS = frozenset({StepKind.SENT, StepKind.FAILED, StepKind.RETRY, StepKind.UNKNOWN})
#: Nothing to send at this instant; the lane asks again at once.
AGAIN = frozenset({StepKind.EARLY, StepKind.INTERRUPTED})
#: The whole campaign stops (every lane), and the job acts once on the reason.
HALTS = frozenset(
    {
        StepKind.LOST,
        StepKind.PAUSED,
        StepKind.PAUSED_QUEUE,
        StepKind.CANCELED,
        StepKind.EXPIRED,
    }
)
#: The lane has nothing to send until ``due_ms`` (and says why, for the account ones).
WAITS = frozenset({StepKind.WAIT, StepKind.SETTLE})
ACCOUNT_WAITS = frozenset({StepKind.CAPPED, StepKind.COOLING, StepKind.ACCOUNT_PAUSED})
#: The lane has nothing left.
ENDS = frozenset({StepKind.DONE, StepKind.LANE_DONE})
