"""The compose form: pasted recipients or a CSV upload, a message and an account.

The preview carries a digest of exactly what was previewed; sending checks it, so what is sent
is what was previewed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from starlette.datastructures import FormData, UploadFile

from waqtor.campaigns.intake import CsvError, parse_csv
from waqtor.dashboard.auth import PageError
from waqtor.domain.recipients import Parsed, parse
from waqtor.domain.templates import TemplateError, check
from waqtor.runtime import offload
from waqtor.runtime.parts import HasAccounts, HasClock, HasSettings


class Composes(HasSettings, HasClock, HasAccounts, Protocol):
    """What the compose form reads."""


ACCOUNT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SPLIT = re.compile(r"[\n;,\t]+")


@dataclass
class Draft:
    recipients: str = ""
    message: str = ""
    account: str = "default"  # one name, or several separated by commas (spread over them)
    filename: str = ""
    send_at: str = ""  # optional, ISO 8601 with a zone

    @property
    def accounts(self) -> list[str]:
        names = [n.strip() for n in self.account.split(",") if n.strip()]
        return list(dict.fromkeys(names)) or ["default"]


@dataclass
class Submission:
    draft: Draft
    parsed: Parsed
    digest: str
    delay_ms: int = 0


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def draft_of(form: FormData) -> Draft:
    upload = form.get("file")
    return Draft(
        recipients=_text(form, "recipients").strip(),
        message=_text(form, "message").replace("\r\n", "\n"),
        account=_text(form, "account").strip() or "default",
        filename=upload.filename or "" if isinstance(upload, UploadFile) else "",
        send_at=_text(form, "send_at").strip(),
    )


def _delay_ms(send_at: str, now_ms: int) -> int:
    """How long until ``send_at`` (0 when empty or past); PageError when it is not a time."""
    if not send_at:
        return 0
    try:
        when = datetime.fromisoformat(send_at)
    except ValueError:
        raise PageError(400, "sendAt: not a date and time (e.g. 2026-12-01T09:00+03:00)") from None
    if when.tzinfo is None:
        raise PageError(400, "sendAt: add a time zone, e.g. 2026-12-01T09:00+03:00")
    return max(0, int(when.timestamp() * 1000) - now_ms)


async def _hashed(chunks: AsyncIterator[bytes], digest: hashlib._Hash) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        digest.update(chunk)
        yield chunk


async def _upload_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(64 * 1024):
        yield chunk


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def account_notes(s: Composes, name: str) -> list[str]:
    """Why a campaign on this account would wait, said before sending."""
    account = await s.accounts.get(name)
    notes = []
    if account is not None and account.paused:
        reason = account.pausedReason or "paused"
        notes.append(f"Account “{name}” is paused ({reason}): the campaign waits until it resumes.")
    if await s.accounts.cooling_until(name) > s.clock.now_ms():
        notes.append(f"Account “{name}” is resting after a ban signal: sending starts later.")
    return notes


async def read(s: Composes, form: FormData) -> Submission:
    """Parse the form into recipients; a PageError (400) says what is wrong with it."""
    draft = draft_of(form)
    upload = form.get("file")
    has_file = isinstance(upload, UploadFile) and bool(upload.filename)
    for name in draft.accounts:
        if not ACCOUNT.match(name):
            raise PageError(400, "account: letters, digits, '.', '_' or '-' only (at most 64)")
        if not await s.accounts.exists(name):
            raise PageError(400, f"account: no account named “{name}” (see /api/accounts)")
    delay = _delay_ms(draft.send_at, s.clock.now_ms())
    if draft.message:
        try:
            check(draft.message)  # length, nesting and choice-group limits, named
        except TemplateError as exc:
            raise PageError(400, f"message: {exc.reason}") from None
    if has_file and draft.recipients:
        raise PageError(400, "recipients: paste a list or choose a CSV file, not both")
    if not has_file and not draft.recipients:
        raise PageError(400, "recipients: paste a list or choose a CSV file")
    digest = hashlib.sha256()
    for part in (draft.message, draft.account, draft.recipients, draft.send_at):
        digest.update(part.encode() + b"\0")
    st = s.settings
    try:
        if isinstance(upload, UploadFile) and has_file:
            chunks = _hashed(_upload_chunks(upload), digest)
        elif draft.recipients.splitlines()[0].lower().count("phone"):
            chunks = _one(draft.recipients.encode())  # a pasted CSV with a header row
        else:
            items = [p.strip() for p in _SPLIT.split(draft.recipients) if p.strip()]
            if len(items) > st.max_recipients:
                raise PageError(413, f"recipients: more than {st.max_recipients}")
            parsed = await offload.run(parse, items, draft.message or None, st.default_region)
            return Submission(draft, parsed, digest.hexdigest(), delay)
        parsed = await parse_csv(
            chunks,
            draft.message or None,
            default_region=st.default_region,
            max_rows=st.max_recipients,
        )
    except CsvError as exc:
        raise PageError(400, str(exc)) from exc
    return Submission(draft, parsed, digest.hexdigest(), delay)
