"""``/api/queue/jobs/{jobId}/...``: control of one campaign, and its recipients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from waqtor import control, reports
from waqtor.api.deps import services
from waqtor.api.errors import ApiError
from waqtor.api.models import ok
from waqtor.domain.status import RecipientStatus
from waqtor.services import Services

router = APIRouter(prefix="/api/queue/jobs", tags=["campaigns"])


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    errorCodes: list[str] = Field(
        default_factory=list, description="Retry only failures with these codes; empty: all."
    )


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["sent", "resend"]
    messageId: str = Field(default="", max_length=200)


async def _run(action: Callable[[], Awaitable[control.Outcome]]) -> dict[str, Any]:
    try:
        outcome = await action()
    except control.ControlError as exc:
        raise ApiError(exc.status, exc.message) from exc
    return ok({"changed": outcome.changed}, message=outcome.message)


@router.post("/{job_id}/pause")
async def pause(job_id: str, s: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    return await _run(lambda: control.pause(s, job_id))


@router.post("/{job_id}/resume")
async def resume(job_id: str, s: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    return await _run(lambda: control.resume(s, job_id))


@router.post("/{job_id}/cancel")
async def cancel(job_id: str, s: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    return await _run(lambda: control.cancel(s, job_id))


@router.post("/{job_id}/retry")
async def retry(
    job_id: str,
    s: Annotated[Services, Depends(services)],
    body: Annotated[RetryRequest | None, Body()] = None,
) -> dict[str, Any]:
    codes = body.errorCodes if body else []
    return await _run(lambda: control.retry_failed(s, job_id, codes))


@router.post("/{job_id}/promote")
async def promote(job_id: str, s: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    return await _run(lambda: control.promote(s, job_id))


@router.delete("/{job_id}")
async def remove(job_id: str, s: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    return await _run(lambda: control.remove(s, job_id))


@router.post("/{job_id}/recipients/{index}/resolve")
async def resolve(
    job_id: str, index: int, body: ResolveRequest, s: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    """Settle an ``unknown`` recipient: ``sent`` (optionally with the provider's message id),
    or ``resend`` to send it again on purpose."""
    return await _run(lambda: control.resolve(s, job_id, index, body.action, body.messageId))


def _statuses(raw: str) -> list[RecipientStatus]:
    out = []
    for name in filter(None, (p.strip() for p in raw.split(","))):
        try:
            out.append(RecipientStatus(name))
        except ValueError:
            allowed = ", ".join(st.value for st in RecipientStatus)
            raise ApiError(400, f"status: unknown status {name!r} (one of {allowed})") from None
    return out


@router.get("/{job_id}/recipients")
async def recipients(
    job_id: str,
    s: Annotated[Services, Depends(services)],
    status: Annotated[str, Query(max_length=200)] = "",
    search: Annotated[str, Query(max_length=32)] = "",
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    if not await s.ledger.meta(job_id):
        raise ApiError(404, "Job not found")
    rows, total = await reports.recipient_page(
        s, job_id, statuses=_statuses(status), search=search, offset=offset, limit=limit
    )
    return ok({"recipients": rows, "total": total, "offset": offset, "limit": limit})


@router.get("/{job_id}/report.csv")
async def report(job_id: str, s: Annotated[Services, Depends(services)]) -> StreamingResponse:
    if not await s.ledger.meta(job_id):
        raise ApiError(404, "Job not found")
    return StreamingResponse(
        reports.csv_report(s, job_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{job_id}.csv"'},
    )
