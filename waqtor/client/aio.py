"""The asyncio client: :class:`~waqtor.client.Client`'s methods, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from httpx_sse import SSEError, aconnect_sse

from waqtor.client import _exchange as x
from waqtor.client import models as m
from waqtor.client import sources
from waqtor.client._calls import Call, error_of, send_body
from waqtor.client._exchange import Download, Progress
from waqtor.client.errors import ApiError, TransportError

T = TypeVar("T")


class AsyncClient(x.Base):
    """``async with AsyncClient(url, key) as client``: the same as :class:`Client`."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, key, retries, backoff, max_backoff)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self._headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ core
    async def _send(self, call: Call[Any], stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.send(x.request(self._http, call), stream=stream)
            except httpx.TransportError as exc:
                await asyncio.sleep(self._retries.after_failure(self.url, call, attempt, exc))
                attempt += 1
                continue
            pause = self._retries.after_answer(call, attempt, response)
            if pause is not None:
                await response.aclose()
                await asyncio.sleep(pause)
                attempt += 1
                continue
            if x.is_error(call, response):
                if stream:
                    await response.aread()
                    await response.aclose()
                raise error_of(response)
            return response

    async def _run(self, call: Call[T]) -> T:
        return call.read(await self._send(call))

    # -------------------------------------------------------------- sending
    async def send(
        self,
        recipients: sources.Recipients,
        message: str | None = None,
        *,
        account: str | None = None,
        accounts: list[str] | None = None,
        send_at: datetime | str | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> m.SendResult:
        """Send to a list of phones, rows (``{"phone", "name", ...}``) or a CSV file path.

        An ``Idempotency-Key`` derived from the recipients and every option goes with it, so
        calling it again with the same arguments (a retry, a rerun after a crash) returns the
        first answer and never sends twice within the server's 24 h. Pass ``idempotency_key``
        to choose your own (a new one sends the same list again on purpose). ``extra`` takes
        the other fields of the request (``validUntil``, ``window``, ``template`` ...).
        """
        body = send_body(recipients, message, account, accounts, send_at, extra)
        key = idempotency_key or sources.key_for(body)
        result: m.SendResult = await self._run(
            self._r.send_bulk(body, dry_run=False, idempotency_key=key)
        )
        return result

    async def preview(
        self,
        recipients: sources.Recipients,
        message: str | None = None,
        *,
        account: str | None = None,
        accounts: list[str] | None = None,
        send_at: datetime | str | None = None,
        **extra: Any,
    ) -> m.Preview:
        """What ``send`` would do, sending and storing nothing (``send-bulk?dryRun=true``)."""
        body = send_body(recipients, message, account, accounts, send_at, extra)
        preview: m.Preview = await self._run(
            self._r.send_bulk(body, dry_run=True, idempotency_key=None)
        )
        return preview

    async def preview_route(
        self, recipients: sources.Recipients, message: str | None = None, **extra: Any
    ) -> m.Preview:
        """The same through ``POST /api/messages/preview``."""
        return await self._run(
            self._r.preview(send_body(recipients, message, None, None, None, extra))
        )

    # ---------------------------------------------------------------- queue
    async def stats(self) -> m.QueueStats:
        return await self._run(self._r.stats())

    async def jobs(self, limit: int = 50, offset: int = 0) -> list[m.JobSummary]:
        return (await self._run(self._r.jobs(limit, offset))).jobs

    async def iter_jobs(
        self, page: int = 200, state: str | None = None
    ) -> AsyncIterator[m.JobSummary]:
        """Every campaign, newest first, a page at a time; ``state`` keeps one state."""
        offset = 0
        while True:
            rows = await self.jobs(page, offset)
            for row in rows:
                if state is None or row.status == state:
                    yield row
            if len(rows) < page:
                return
            offset += page

    async def job(self, job_id: str) -> m.Job:
        return await self._run(self._r.job(job_id))

    async def remove_job(self, job_id: str) -> m.Changed:
        return await self._run(self._r.remove_job(job_id))

    async def pause_queue(self) -> m.Changed:
        return await self._run(self._r.pause_queue())

    async def resume_queue(self) -> m.Changed:
        return await self._run(self._r.resume_queue())

    async def clean(self, grace_ms: int | None = None) -> m.Cleaned:
        return await self._run(self._r.clean(grace_ms))

    async def health(self) -> m.Health:
        return await self._run(self._r.health())

    # --------------------------------------------------------- one campaign
    async def pause(self, job_id: str) -> m.Changed:
        return await self._run(self._r.control(job_id, "pause"))

    async def resume(self, job_id: str) -> m.Changed:
        return await self._run(self._r.control(job_id, "resume"))

    async def cancel(self, job_id: str) -> m.Changed:
        return await self._run(self._r.control(job_id, "cancel"))

    async def promote(self, job_id: str) -> m.Changed:
        return await self._run(self._r.control(job_id, "promote"))

    async def retry(self, job_id: str, error_codes: list[str] | None = None) -> m.Changed:
        payload = m.RetryRequest(errorCodes=error_codes or []).model_dump()
        return await self._run(self._r.control(job_id, "retry", payload))

    async def resolve(
        self, job_id: str, index: int, action: str, message_id: str = ""
    ) -> m.Changed:
        request = m.ResolveRequest.model_validate({"action": action, "messageId": message_id})
        return await self._run(self._r.resolve(job_id, index, request))

    async def recipients(
        self, job_id: str, *, status: str = "", search: str = "", offset: int = 0, limit: int = 50
    ) -> m.RecipientPage:
        return await self._run(self._r.recipients(job_id, status, search, offset, limit))

    async def iter_recipients(
        self, job_id: str, *, status: str = "", search: str = "", page: int = 500
    ) -> AsyncIterator[m.Recipient]:
        offset = 0
        while True:
            got = await self.recipients(
                job_id, status=status, search=search, offset=offset, limit=page
            )
            for row in got.recipients:
                yield row
            offset += len(got.recipients)
            if not got.recipients or offset >= got.total:
                return

    async def download_report(
        self, job_id: str, path: str | Path, on_progress: Download | None = None
    ) -> int:
        """Stream the campaign's report to ``path``; returns the bytes written."""
        call: Call[None] = Call("GET", self._r.report_path(job_id), lambda r: None)
        response = await self._send(call, stream=True)
        written = 0
        target = Path(path)
        partial = target.with_name(target.name + ".part")
        try:
            with partial.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
                    written += len(chunk)
                    if on_progress is not None:
                        on_progress(written)
        finally:
            await response.aclose()
        partial.replace(target)
        return written

    async def wait(
        self,
        job_id: str,
        on_progress: Progress | None = None,
        *,
        poll_interval: float = 1.0,
        timeout: float | None = None,
    ) -> m.Job:
        """Follow the campaign until it has finished; returns it with its final counts.

        Follows ``GET /api/queue/jobs/{id}/events`` (server-sent events) and falls back to
        polling ``GET /api/queue/jobs/{id}`` when the stream is not available.
        ``on_progress`` gets the campaign each time it changes.
        """
        deadline = x.deadline_of(timeout)
        streaming = True
        last: m.Job | None = None
        while True:
            x.check_time(job_id, deadline, timeout)
            if streaming:
                # Raises as usual if the campaign does not exist (or the service is down).
                await self.job(job_id)
                try:
                    finished = await self._follow(job_id, on_progress, deadline)
                except (SSEError, httpx.HTTPError, TransportError, ApiError):
                    # An older server without the route, too many streams, a proxy that
                    # buffers: poll instead.
                    streaming = False
                else:
                    if finished:
                        return await self.job(job_id)
                    continue  # the stream ended on its own: reconnect
            job = await self.job(job_id)
            x.polled(job, last, on_progress)
            last = job
            if job.finished:
                return job
            await asyncio.sleep(poll_interval)

    async def _follow(
        self, job_id: str, on_progress: Progress | None, deadline: float | None
    ) -> bool:
        """One event stream; True once the campaign has finished."""
        async with aconnect_sse(
            self._http, "GET", self._r.events_path(job_id), timeout=x.STREAM_TIMEOUT
        ) as source:
            if source.response.status_code != 200:
                await source.response.aread()
                raise error_of(source.response)
            async for event in source.aiter_sse():
                if x.on_event(event, on_progress):
                    return True
                if x.past(deadline):
                    return False
        return False

    # ------------------------------------------------------------- accounts
    async def accounts(self) -> list[m.Account]:
        return await self._run(self._r.accounts())

    async def create_account(self, name: str, **fields: Any) -> m.Account:
        return await self._run(
            self._r.create_account(m.AccountRequest.model_validate({"name": name, **fields}))
        )

    async def account(self, name: str) -> m.Account:
        return await self._run(self._r.account(name))

    async def update_account(self, name: str, **fields: Any) -> m.Account:
        return await self._run(self._r.update_account(name, m.AccountChange.model_validate(fields)))

    async def delete_account(self, name: str) -> m.Changed:
        return await self._run(self._r.delete_account(name))

    async def pause_account(self, name: str) -> m.Account:
        return await self._run(self._r.account_action(name, "pause"))

    async def resume_account(self, name: str) -> m.Account:
        return await self._run(self._r.account_action(name, "resume"))

    async def suppressions(
        self, account: str, cursor: int = 0, limit: int = 100
    ) -> m.SuppressionPage:
        return await self._run(self._r.suppressions(account, cursor, limit))

    async def iter_suppressions(self, account: str, page: int = 500) -> AsyncIterator[str]:
        """Every suppressed number of the account (a Redis scan: each is seen at least once)."""
        cursor, seen = 0, set()
        while True:
            got = await self.suppressions(account, cursor, page)
            for phone in got.phones:
                if phone not in seen:
                    seen.add(phone)
                    yield phone
            cursor = got.cursor
            if cursor == 0:
                return

    async def suppress(self, account: str, phones: list[Any]) -> m.Suppressed:
        return await self._run(self._r.suppress(account, phones))

    async def unsuppress(self, account: str, phone: str) -> m.Unsuppressed:
        return await self._run(self._r.unsuppress(account, phone))

    async def web_session(self, account: str) -> m.WebSession:
        """A WhatsApp Web account's session: state, QR or pairing code, holder."""
        return await self._run(self._r.web_session(account))

    async def pair_web(self, account: str, phone: str | None = None) -> m.Changed:
        """Ask for a QR code (or, with ``phone``, a pairing code) to link the account."""
        return await self._run(self._r.pair_web(account, phone))

    # ------------------------------------------------- simulator, callbacks
    async def simulator_messages(self, offset: int = 0, limit: int = 50) -> m.SimulatorMessages:
        return await self._run(self._r.simulator_messages(offset, limit))

    async def faults(self) -> m.Faults:
        return await self._run(self._r.faults())

    async def set_faults(self, **rates: Any) -> m.Faults:
        return await self._run(self._r.set_faults(m.FaultsRequest.model_validate(rates)))

    async def callbacks(
        self, state: str = "pending", offset: int = 0, limit: int = 50
    ) -> m.CallbackPage:
        return await self._run(self._r.callbacks(state, offset, limit))

    async def callback_stats(self) -> m.CallbackStats:
        return await self._run(self._r.callback_stats())

    async def retry_callback(self, callback_id: str) -> m.Changed:
        return await self._run(self._r.retry_callback(callback_id))

    async def liveness(self) -> m.Liveness:
        return await self._run(self._r.liveness())

    async def metrics(self) -> str:
        """``/metrics`` in Prometheus's text format (with the API key)."""
        return await self._run(self._r.metrics())
