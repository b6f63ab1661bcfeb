"""``POST /api/messages/send-bulk``: instant for small lists, queued for larger ones.

The body is JSON (the seed's shape), ``text/csv``, or a multipart form with a CSV ``file``
(``message`` and ``account`` then come as form fields or query parameters).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from waqtor import callbacks, campaigns, hygiene, idempotency, preview
from waqtor.api.deps import sender, services
from waqtor.api.errors import ApiError
from waqtor.api.models import SendBulkRequest, ok
from waqtor.api.scheduling import plan, timing_fields
from waqtor.domain.recipients import Parsed, parse
from waqtor.domain.templates import MAX_MESSAGE_CHARS
from waqtor.intake import CsvError, parse_csv
from waqtor.providers import content
from waqtor.sender import Sender
from waqtor.services import Services

router = APIRouter(prefix="/api/messages", tags=["messages"])

_CSV_FORM = {
    "type": "object",
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "message": {"type": "string"},
        "account": {"type": "string"},
    },
    "required": ["file"],
}
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SendBulkRequest.model_json_schema()},
            "text/csv": {"schema": {"type": "string"}},
            "multipart/form-data": {"schema": _CSV_FORM},
        },
    }
}


class Submission:
    def __init__(
        self,
        parsed: Parsed,
        account: str | None,
        accounts: list[str] | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.parsed = parsed
        #: Campaign meta from the JSON body: WhatsApp template or media, callbackUrl, timing.
        self.extra = extra or {}
        self.delay_ms = 0  # sendAt in the future
        names = accounts or [account or campaigns.DEFAULT_ACCOUNT]
        self.accounts = list(dict.fromkeys(names))  # each once, in the order given
        self.account = self.accounts[0]


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(64 * 1024):
        yield chunk


def _check_message(message: str | None) -> None:
    if message is not None and len(message) > MAX_MESSAGE_CHARS:
        raise ApiError(400, "message: longer than 4096 characters (WhatsApp's limit)")


async def read_submission(
    request: Request, s: Services, message: str | None, account: str | None
) -> Submission:
    settings = s.settings
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if kind == "text/csv":
            _check_message(message)
            parsed = await parse_csv(
                request.stream(),
                message,
                default_region=settings.default_region,
                max_rows=settings.max_recipients,
            )
            return Submission(parsed, account)
        if kind == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=10)
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "file: a CSV file is required in the 'file' field")
            form_message = form.get("message")
            form_account = form.get("account")
            message = message or (form_message if isinstance(form_message, str) else None)
            account = account or (form_account if isinstance(form_account, str) else None)
            _check_message(message)
            parsed = await parse_csv(
                _chunks(upload),
                message,
                default_region=settings.default_region,
                max_rows=settings.max_recipients,
            )
            return Submission(parsed, account)
    except CsvError as exc:
        raise ApiError(400, str(exc)) from exc
    if kind not in ("application/json", ""):
        raise ApiError(415, "body: send application/json, text/csv or multipart/form-data")
    try:
        body = SendBulkRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]
        ) from exc
    if not body.recipients:
        raise ApiError(400, "recipients: at least one recipient is required")
    if len(body.recipients) > settings.max_recipients:
        raise ApiError(
            413,
            f"recipients: {len(body.recipients)} recipients; the limit is "
            f"{settings.max_recipients} per request",
        )
    _check_message(body.message)
    extra = content.meta_fields(body.template, body.media)
    if body.callbackUrl:
        extra[callbacks.META_FIELD] = body.callbackUrl
    timing, delay = plan(timing_fields(body), s.clock.now_ms(), settings.timezone)
    extra.update(timing)
    submission = Submission(
        parse(body.recipients, body.message, settings.default_region),
        account or body.account,
        body.accounts,
        extra,
    )
    submission.delay_ms = delay
    return submission


@router.post("/send-bulk", openapi_extra=_BODY_DOC)
async def send_bulk(
    request: Request,
    s: Annotated[Services, Depends(services)],
    snd: Annotated[Sender, Depends(sender)],
    dryRun: Annotated[bool, Query(description="Validate and preview; send nothing.")] = False,
    message: Annotated[str | None, Query(max_length=MAX_MESSAGE_CHARS)] = None,
    account: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="The same key within 24 h returns the same response; sends once.",
        ),
    ] = None,
) -> Any:
    async def run() -> tuple[int, dict[str, Any]]:
        try:
            sub = await read_submission(request, s, message, account)
            for name in sub.accounts:
                await _known(s, name)
            if dryRun:
                return 200, ok(
                    await preview.dry_run(s, sub.parsed, sub.account, sub.accounts, sub.extra),
                    mode="preview",
                )
            return 200, await _send(s, snd, sub)
        except ApiError as exc:
            if exc.status >= 500:
                raise
            return exc.status, {"success": False, "error": exc.error, **exc.extra}

    if not idempotency_key or dryRun:
        status, body = await run()
        return JSONResponse(body, status_code=status)
    try:
        status, body, replayed = await idempotency.once(s, idempotency_key, run)
    except idempotency.InProgress:
        raise ApiError(
            409, "Idempotency-Key: a request with this key is still in progress"
        ) from None
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return JSONResponse(body, status_code=status, headers=headers)


@router.post("/preview", openapi_extra=_BODY_DOC)
async def preview_route(
    request: Request,
    s: Annotated[Services, Depends(services)],
    message: Annotated[str | None, Query(max_length=MAX_MESSAGE_CHARS)] = None,
    account: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = None,
) -> dict[str, Any]:
    """The same as ``send-bulk?dryRun=true``."""
    sub = await read_submission(request, s, message, account)
    await _known(s, sub.account)
    return ok(
        await preview.dry_run(s, sub.parsed, sub.account, sub.accounts, sub.extra), mode="preview"
    )


async def _known(s: Services, account: str) -> None:
    if not await s.accounts.exists(account):
        raise ApiError(400, f"account: unknown account {account!r}")


async def _send(s: Services, snd: Sender, sub: Submission) -> dict[str, Any]:
    parsed = sub.parsed
    senders, skipped = await _usable(s, sub.accounts)
    account = senders[0]
    invalid = [r.as_dict() for r in parsed.rejected]
    suppressed = await hygiene.drop_suppressed(s, account, parsed)
    if not parsed.accepted:
        raise ApiError(
            400,
            "recipients: no valid recipient in the request",
            invalid=invalid,
            suppressed=suppressed,
        )
    extra: dict[str, Any] = {
        "invalid": invalid,
        "suppressed": suppressed,
        "suppressedCount": len(suppressed),
        "warnings": hygiene.identical_text(parsed, s.settings.identical_text_warn),
    }
    fallback: str | None = None
    timed = sub.delay_ms > 0 or any(k in sub.extra for k in ("window", "quiet", "expires_ms"))
    if timed:
        fallback = "scheduled (sendAt, window, quiet hours or validUntil): queued"
    elif len(parsed.accepted) <= s.settings.instant_threshold:
        fallback = await campaigns.instant_blocker(s, account, len(parsed.accepted))
        if fallback is None:
            sent = await campaigns.send_instant(s, snd, parsed, account, sub.extra)
            data: dict[str, Any] = {
                "total": len(parsed.accepted),
                "successful": sent.successful,
                "failed": sent.failed,
                # Not settled when this answer was written: follow them on the job.
                "pending": sent.pending,
                "results": sent.results,
                **extra,
            }
            if sent.job_id:
                data["jobId"] = sent.job_id
            return ok(data, mode="instant")
    cid, eta = await campaigns.enqueue(s, parsed, senders, sub.extra, delay_ms=sub.delay_ms)
    data = {
        "jobId": cid,
        "total": len(parsed.accepted),
        "status": "queued",
        "estimatedTime": eta.text,
        "estimatedMs": int(eta.ms),
        "backlogAhead": eta.backlog_ahead,
        **extra,
    }
    if eta.limited_by:
        data["limitedBy"] = eta.limited_by
    if len(sub.accounts) > 1:
        data["accounts"] = senders
        data["skippedAccounts"] = skipped
    if fallback:
        data["reason"] = fallback
    return ok(data, mode="queue")


async def _usable(s: Services, names: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Of several accounts, those that can send now; paused, resting or capped ones are
    skipped. If none can, all are kept: the campaign waits for them, and says why."""
    if len(names) == 1:
        return names, []
    usable: list[str] = []
    skipped: list[dict[str, str]] = []
    for name in names:
        reason = await campaigns.unavailable(s, name, 1)
        if reason is None:
            usable.append(name)
        else:
            skipped.append({"account": name, "reason": reason})
    return (usable, skipped) if usable else (names, skipped)
