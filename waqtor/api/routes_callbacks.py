"""``/api/callbacks``: the status-callback outbox: pending, given up, recently delivered."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Path, Query

from waqtor.api.deps import Parts
from waqtor.api.errors import ApiError
from waqtor.api.models import ok
from waqtor.campaigns import webhooks
from waqtor.runtime.parts import HasCallbackQueue, HasClock, HasSettings, HasWebhookIndex
from waqtor.sending import callbacks


class Callbacks(HasSettings, HasClock, HasCallbackQueue, HasWebhookIndex, Protocol):
    """What the callback routes read and write."""


router = APIRouter(prefix="/api/callbacks", tags=["callbacks"])


@router.get("")
async def list_callbacks(
    s: Parts[callbacks.Outbox],
    state: Annotated[Literal["pending", "failed", "delivered"], Query()] = "pending",
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    """Deliveries in one state: ``pending`` (due or waiting to retry, soonest first),
    ``failed`` (given up, newest first) or ``delivered`` (the latest, newest first)."""
    rows, total = await callbacks.listing(s, state, offset, limit)
    return ok({"deliveries": rows, "count": len(rows), "total": total, "offset": offset})


@router.get("/stats")
async def callback_stats(s: Parts[Callbacks]) -> dict[str, Any]:
    """Outbox counts, whether callbacks are signed (CALLBACK_SECRET set), and the webhook
    counters (received, applied, duplicate, stale, unmatched ...)."""
    return ok({**await callbacks.stats(s), "webhooks": await webhooks.stats(s)})


@router.post("/{callback_id}/retry", responses={404: {}})
async def retry_callback(
    callback_id: Annotated[str, Path(max_length=64, pattern=r"^[0-9a-f]+$")],
    s: Parts[callbacks.Outbox],
) -> dict[str, Any]:
    """Send a given-up callback again, with a fresh 24 h of retries."""
    if not await callbacks.requeue(s, callback_id):
        raise ApiError(404, "No failed callback with this id")
    return ok(message=f"Callback {callback_id} queued again")
