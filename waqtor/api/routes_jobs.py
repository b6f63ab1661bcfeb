"""``/api/queue/jobs/{jobId}/...``: control of one campaign, and its recipients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from waqtor.api.deps import Parts
from waqtor.api.errors import ApiError
from waqtor.api.models import ok
from waqtor.campaigns import control, reports
from waqtor.domain.status import RecipientStatus
from waqtor.engine import valid_job_id
from waqtor.runtime.parts import HasLedger

router = APIRouter(prefix="/api/queue/jobs", tags=["campaigns"])

JOB_ID_PATTERN = "^[A-Za-z0-9_.~-]{1,100}$"


def known_job(
    job_id: Annotated[
        str,
        Path(
            description="The campaign's job id. Ids that cannot name a job (bullmq's own key "
            "names such as meta, events or id) are unknown: 404.",
            json_schema_extra={"pattern": JOB_ID_PATTERN},
        ),
    ],
) -> str:
    if not valid_job_id(job_id):
        raise ApiError(404, "Job not found")
    return job_id


JobId = Annotated[str, Depends(known_job)]
_CONTROL: dict[int | str, dict[str, Any]] = {404: {}, 409: {}}


class CsvResponse(StreamingResponse):
    media_type = "text/csv"


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


@router.post("/{job_id}/pause", responses=_CONTROL)
async def pause(job_id: JobId, s: Parts[control.Controls]) -> dict[str, Any]:
    return await _run(lambda: control.pause(s, job_id))


@router.post("/{job_id}/resume", responses=_CONTROL)
async def resume(job_id: JobId, s: Parts[control.Controls]) -> dict[str, Any]:
    return await _run(lambda: control.resume(s, job_id))


@router.post("/{job_id}/cancel", responses=_CONTROL)
async def cancel(job_id: JobId, s: Parts[control.Controls]) -> dict[str, Any]:
    return await _run(lambda: control.cancel(s, job_id))


@router.post("/{job_id}/retry", responses=_CONTROL)
async def retry(
    job_id: JobId,
    s: Parts[control.Controls],
    body: Annotated[RetryRequest | None, Body()] = None,
) -> dict[str, Any]:
    codes = body.errorCodes if body else []
    return await _run(lambda: control.retry_failed(s, job_id, codes))


@router.post("/{job_id}/promote", responses=_CONTROL)
async def promote(job_id: JobId, s: Parts[control.Controls]) -> dict[str, Any]:
    return await _run(lambda: control.promote(s, job_id))


@router.delete("/{job_id}", responses=_CONTROL)
async def remove(job_id: JobId, s: Parts[control.Controls]) -> dict[str, Any]:
    return await _run(lambda: control.remove(s, job_id))


@router.post("/{job_id}/recipients/{index}/resolve", responses=_CONTROL)
async def resolve(
    job_id: JobId, index: int, body: ResolveRequest, s: Parts[control.Controls]
) -> dict[str, Any]:
    """Settle an ``unknown`` recipient: ``sent`` (optionally with the provider's message id),
    or ``resend`` to send it again on purpose."""
    return await _run(lambda: control.resolve(s, job_id, index, body.action, body.messageId))


_ONE_STATUS = "|".join(st.value for st in RecipientStatus)
_STATUS_LIST = f"^(({_ONE_STATUS})(,({_ONE_STATUS}))*)?$"


def _statuses(raw: str) -> list[RecipientStatus]:
    out = []
    for name in filter(None, (p.strip() for p in raw.split(","))):
        try:
            out.append(RecipientStatus(name))
        except ValueError:
            allowed = ", ".join(st.value for st in RecipientStatus)
            raise ApiError(400, f"status: unknown status {name!r} (one of {allowed})") from None
    return out


@router.get("/{job_id}/recipients", responses={404: {}})
async def recipients(
    job_id: JobId,
    s: Parts[HasLedger],
    status: Annotated[
        str,
        Query(
            max_length=200,
            description="Comma-separated statuses",
            json_schema_extra={"pattern": _STATUS_LIST},
        ),
    ] = "",
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


@router.get(
    "/{job_id}/report.csv",
    response_class=CsvResponse,
    responses={200: {"description": "One row per recipient."}, 404: {}},
)
async def report(job_id: JobId, s: Parts[reports.Reports]) -> StreamingResponse:
    if not await s.ledger.meta(job_id):
        raise ApiError(404, "Job not found")
    return CsvResponse(
        reports.csv_report(s, job_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{job_id}.csv"'},
    )
