"""``POST /api/messages/send-bulk``: instant for small lists, queued for larger ones.

The body is JSON (WaQtor's shape), ``text/csv``, or a multipart form with a CSV ``file``
(``message`` and ``account`` then come as form fields or query parameters).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from waqtor.api import auth
from waqtor.api.deps import Parts, sender
from waqtor.api.errors import ApiError
from waqtor.api.models import SendBulkRequest, ok
from waqtor.api.openapi import EXTRA_SCHEMAS
from waqtor.api.scheduling import plan, timing_fields
from waqtor.campaigns import hygiene, idempotency, preview
from waqtor.campaigns import submission as campaigns
from waqtor.campaigns.intake import CsvError, parse_csv
from waqtor.domain.recipients import Parsed, parse
from waqtor.domain.templates import MAX_MESSAGE_CHARS, TemplateError, check
from waqtor.providers import content
from waqtor.runtime import offload
from waqtor.runtime.parts import (
    HasAccounts,
    HasClock,
    HasIdempotency,
    HasSettings,
)
from waqtor.sending import callbacks
from waqtor.sending.sender import Sender


class Reads(HasSettings, HasClock, Protocol):
    """What reading a submission needs."""


class Messages(campaigns.Submits, HasIdempotency, Protocol):
    """What sending a campaign reads and writes: submitting, and the Idempotency-Key."""


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
_SEND_SCHEMA = SendBulkRequest.model_json_schema(ref_template="#/components/schemas/{model}")
EXTRA_SCHEMAS.update(_SEND_SCHEMA.pop("$defs", {}))
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _SEND_SCHEMA},
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
        digest: str = "",
    ) -> None:
        self.parsed = parsed
        #: Campaign meta from the JSON body: WhatsApp template or media, callbackUrl, timing.
        self.extra = extra or {}
        self.delay_ms = 0  # sendAt in the future
        names = accounts or [account or campaigns.DEFAULT_ACCOUNT]
        self.accounts = list(dict.fromkeys(names))  # each once, in the order given
        self.account = self.accounts[0]
        #: What the request asked for (``idempotency.request_digest``), for Idempotency-Key.
        self.digest = digest


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(64 * 1024):
        yield chunk


async def _hashed(chunks: AsyncIterator[bytes], digest: Any) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _check_message(message: str | None) -> None:
    """The request's own template: past a limit (length, nesting, choice groups) it is a 400
    naming the limit, before any recipient is read."""
    if message is None:
        return
    try:
        check(message)
    except TemplateError as exc:
        raise ApiError(400, f"message: {exc.reason}") from None


def _read_json(
    raw: bytes, default_region: str | None, max_recipients: int, digest: bool
) -> tuple[SendBulkRequest, Parsed, str]:
    """Validate the JSON body and every recipient (CPU pool: a large list takes a while)."""
    try:
        body = SendBulkRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]
        ) from exc
    if not body.recipients:
        raise ApiError(400, "recipients: at least one recipient is required")
    if len(body.recipients) > max_recipients:
        raise ApiError(
            413,
            f"recipients: {len(body.recipients)} recipients; the limit is "
            f"{max_recipients} per request",
        )
    _check_message(body.message)
    parsed = parse(body.recipients, body.message, default_region)
    return body, parsed, idempotency.json_digest(body.model_dump(mode="json")) if digest else ""


async def read_submission(
    request: Request,
    s: Reads,
    message: str | None,
    account: str | None,
    *,
    digest: bool = False,
) -> Submission:
    """The request's recipients, validated. ``digest``: also fingerprint the request, for
    Idempotency-Key (canonical JSON, or the CSV's raw bytes, with the message and account)."""
    settings = s.settings
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    hashed = hashlib.sha256()
    try:
        if kind == "text/csv":
            _check_message(message)
            parsed = await parse_csv(
                _hashed(request.stream(), hashed),
                message,
                default_region=settings.default_region,
                max_rows=settings.max_recipients,
            )
            tail = idempotency.json_digest({"message": message, "account": account})
            return Submission(parsed, account, digest=f"csv:{hashed.hexdigest()}:{tail}")
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
                _hashed(_chunks(upload), hashed),
                message,
                default_region=settings.default_region,
                max_rows=settings.max_recipients,
            )
            tail = idempotency.json_digest({"message": message, "account": account})
            return Submission(parsed, account, digest=f"csv:{hashed.hexdigest()}:{tail}")
    except CsvError as exc:
        raise ApiError(400, str(exc)) from exc
    if kind not in ("application/json", ""):
        raise ApiError(415, "body: send application/json, text/csv or multipart/form-data")
    _check_message(message)
    body, parsed, fingerprint = await offload.run(
        _read_json, await request.body(), settings.default_region, settings.max_recipients, digest
    )
    extra = content.meta_fields(body.template, body.media)
    if body.callbackUrl:
        extra[callbacks.META_FIELD] = body.callbackUrl
    timing, delay = plan(timing_fields(body), s.clock.now_ms(), settings.timezone)
    extra.update(timing)
    if fingerprint:
        tail = idempotency.json_digest({"message": message, "account": account})
        fingerprint = f"json:{fingerprint}:{tail}"
    submission = Submission(
        parsed, account or body.account, body.accounts, extra, digest=fingerprint
    )
    submission.delay_ms = delay
    return submission


@router.post(
    "/send-bulk",
    openapi_extra=_BODY_DOC,
    responses={409: {}, 415: {}, 422: {}},
)
async def send_bulk(
    request: Request,
    s: Parts[Messages],
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
    keyed = bool(idempotency_key) and not dryRun
    # Reading errors (a malformed body, a bad CSV) are answered at once and stored nowhere:
    # there is no request to remember yet.
    sub = await read_submission(request, s, message, account, digest=keyed)

    async def run() -> tuple[int, dict[str, Any]]:
        try:
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

    if not keyed or idempotency_key is None:
        status, body = await run()
        return await _json(body, status)
    caller = request.headers.get(auth.HEADER, "")
    try:
        status, body, replayed = await idempotency.once(
            s.idempotency,
            caller,
            idempotency_key,
            sub.digest,
            run,
            s.settings.idempotency_wait_ms / 1000,
        )
    except idempotency.InProgress:
        raise ApiError(
            409, "Idempotency-Key: a request with this key is still in progress"
        ) from None
    except idempotency.Mismatch:
        raise ApiError(
            422,
            "Idempotency-Key: already used for a different request; send a new key for a new "
            "request",
        ) from None
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return await _json(body, status, headers)


@router.post("/preview", openapi_extra=_BODY_DOC, responses={415: {}})
async def preview_route(
    request: Request,
    s: Parts[preview.Previews],
    message: Annotated[str | None, Query(max_length=MAX_MESSAGE_CHARS)] = None,
    account: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = None,
) -> Any:
    """The same as ``send-bulk?dryRun=true``."""
    sub = await read_submission(request, s, message, account)
    await _known(s, sub.account)
    return await _json(
        ok(
            await preview.dry_run(s, sub.parsed, sub.account, sub.accounts, sub.extra),
            mode="preview",
        )
    )


async def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer encoded on the CPU pool: one for 100,000 invalid recipients is large."""
    encoded = await offload.run(
        json.dumps, body, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    )
    return Response(encoded, status_code=status, media_type="application/json", headers=headers)


async def _known(s: HasAccounts, account: str) -> None:
    if not await s.accounts.exists(account):
        raise ApiError(400, f"account: unknown account {account!r}")


async def _send(s: Messages, snd: Sender, sub: Submission) -> dict[str, Any]:
    parsed = sub.parsed
    invalid = [r.as_dict() for r in parsed.rejected]
    try:
        done = await campaigns.submit(
            s, parsed, sub.accounts, sub.extra, delay_ms=sub.delay_ms, sender=snd
        )
    except campaigns.NothingToSend as nothing:
        raise ApiError(
            400,
            "recipients: no valid recipient in the request",
            invalid=invalid,
            suppressed=nothing.suppressed,
        ) from None
    extra: dict[str, Any] = {
        "invalid": invalid,
        "suppressed": done.suppressed,
        "suppressedCount": len(done.suppressed),
        "warnings": await offload.run(
            hygiene.identical_text, parsed, s.settings.identical_text_warn
        ),
    }
    sent = done.instant
    if sent is not None:
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
    eta = done.eta
    assert eta is not None  # queued: it has a job and an ETA
    data = {
        "jobId": done.job_id,
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
        data["accounts"] = done.senders
        data["skippedAccounts"] = done.skipped
    if done.reason:
        data["reason"] = done.reason
    return ok(data, mode="queue")
