"""``POST /api/messages/send-bulk``: instant for small lists, queued for larger ones."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from waqtor import campaigns
from waqtor.api.deps import sender, services
from waqtor.api.errors import ApiError
from waqtor.api.models import SendBulkRequest, ok
from waqtor.domain.recipients import parse
from waqtor.sender import Sender
from waqtor.services import Services

router = APIRouter(prefix="/api/messages", tags=["messages"])


@router.post("/send-bulk")
async def send_bulk(
    body: SendBulkRequest,
    s: Annotated[Services, Depends(services)],
    snd: Annotated[Sender, Depends(sender)],
) -> dict[str, Any]:
    settings = s.settings
    if not body.recipients:
        raise ApiError(400, "recipients: at least one recipient is required")
    if len(body.recipients) > settings.max_recipients:
        raise ApiError(
            413,
            f"recipients: {len(body.recipients)} recipients; the limit is "
            f"{settings.max_recipients} per request",
        )
    if body.message is not None and len(body.message) > 4096:
        raise ApiError(400, "message: longer than 4096 characters (WhatsApp's limit)")
    parsed = parse(body.recipients, body.message, settings.default_region)
    invalid = [r.as_dict() for r in parsed.rejected]
    if not parsed.accepted:
        raise ApiError(400, "recipients: no valid recipient in the request", invalid=invalid)
    account = body.account or campaigns.DEFAULT_ACCOUNT
    fallback: str | None = None
    if len(parsed.accepted) <= settings.instant_threshold:
        if await s.engine.is_paused():
            fallback = "the queue is paused: queued instead of sent now"
        else:
            sent = await campaigns.send_instant(s, snd, parsed, account)
            return ok(
                {
                    "total": len(parsed.accepted),
                    "successful": sent.successful,
                    "failed": len(parsed.accepted) - sent.successful,
                    "results": sent.results,
                    "invalid": invalid,
                },
                mode="instant",
            )
    cid, eta = await campaigns.enqueue(s, parsed, account)
    data: dict[str, Any] = {
        "jobId": cid,
        "total": len(parsed.accepted),
        "status": "queued",
        "estimatedTime": eta.text,
        "estimatedMs": int(eta.ms),
        "backlogAhead": eta.backlog_ahead,
        "invalid": invalid,
    }
    if fallback:
        data["reason"] = fallback
    return ok(data, mode="queue")
