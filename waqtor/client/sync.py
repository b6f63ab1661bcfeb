"""The blocking client. :class:`~waqtor.client.AsyncClient` has the same methods, awaited."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from httpx_sse import SSEError, connect_sse

from waqtor.client import _exchange as x
from waqtor.client import models as m
from waqtor.client import sources
from waqtor.client._calls import Call, error_of, send_body
from waqtor.client._exchange import Download, Progress
from waqtor.client.errors import ApiError, TransportError

T = TypeVar("T")


class Client(x.Base):
    """``Client(url, key)``; both default to ``WAQTOR_URL`` and ``WAQTOR_API_KEY``.

    The key travels in the ``X-API-Key`` header only. A 503 (Redis or the provider down) and a
    connection that could not be made are retried ``retries`` times with exponential backoff
    (``Retry-After`` honoured); any other error raises an :class:`ApiError` subclass with the
    server's ``status`` and ``error`` text.
    """

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, key, retries, backoff, max_backoff)
        self._http = httpx.Client(
            base_url=self.url, headers=self._headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ core
    def _send(self, call: Call[Any], stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.send(x.request(self._http, call), stream=stream)
            except httpx.TransportError as exc:
                time.sleep(self._retries.after_failure(self.url, call, attempt, exc))
                attempt += 1
                continue
            pause = self._retries.after_answer(call, attempt, response)
            if pause is not None:
                response.close()
                time.sleep(pause)
                attempt += 1
                continue
            if x.is_error(call, response):
                if stream:
                    response.read()
                    response.close()
                raise error_of(response)
            return response

    def _run(self, call: Call[T]) -> T:
        return call.read(self._send(call))

    # -------------------------------------------------------------- sending
    def send(
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
        result: m.SendResult = self._run(
            self._r.send_bulk(body, dry_run=False, idempotency_key=key)
        )
        return result

    def preview(
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
        preview: m.Preview = self._run(self._r.send_bulk(body, dry_run=True, idempotency_key=None))
        return preview

    def preview_route(
        self, recipients: sources.Recipients, message: str | None = None, **extra: Any
    ) -> m.Preview:
        """The same through ``POST /api/messages/preview``."""
        return self._run(self._r.preview(send_body(recipients, message, None, None, None, extra)))

    # ---------------------------------------------------------------- queue
    def stats(self) -> m.QueueStats:
        return self._run(self._r.stats())

    def jobs(self, limit: int = 50, offset: int = 0) -> list[m.JobSummary]:
        return self._run(self._r.jobs(limit, offset)).jobs

    def iter_jobs(self, page: int = 200, state: str | None = None) -> Iterator[m.JobSummary]:
        """Every campaign, newest first, a page at a time; ``state`` keeps one state."""
        offset = 0
        while True:
            rows = self.jobs(page, offset)
            for row in rows:
                if state is None or row.status == state:
                    yield row
            if len(rows) < page:
                return
            offset += page

    def job(self, job_id: str) -> m.Job:
        return self._run(self._r.job(job_id))

    def remove_job(self, job_id: str) -> m.Changed:
        return self._run(self._r.remove_job(job_id))

    def pause_queue(self) -> m.Changed:
        return self._run(self._r.pause_queue())

    def resume_queue(self) -> m.Changed:
        return self._run(self._r.resume_queue())

    def clean(self, grace_ms: int | None = None) -> m.Cleaned:
        return self._run(self._r.clean(grace_ms))

    def health(self) -> m.Health:
        return self._run(self._r.health())

    # --------------------------------------------------------- one campaign
    def pause(self, job_id: str) -> m.Changed:
        return self._run(self._r.control(job_id, "pause"))

    def resume(self, job_id: str) -> m.Changed:
        return self._run(self._r.control(job_id, "resume"))

    def cancel(self, job_id: str) -> m.Changed:
        return self._run(self._r.control(job_id, "cancel"))

    def promote(self, job_id: str) -> m.Changed:
        return self._run(self._r.control(job_id, "promote"))

    def retry(self, job_id: str, error_codes: list[str] | None = None) -> m.Changed:
        payload = m.RetryRequest(errorCodes=error_codes or []).model_dump()
        return self._run(self._r.control(job_id, "retry", payload))

    def resolve(self, job_id: str, index: int, action: str, message_id: str = "") -> m.Changed:
        request = m.ResolveRequest.model_validate({"action": action, "messageId": message_id})
        return self._run(self._r.resolve(job_id, index, request))

    def recipients(
        self, job_id: str, *, status: str = "", search: str = "", offset: int = 0, limit: int = 50
    ) -> m.RecipientPage:
        return self._run(self._r.recipients(job_id, status, search, offset, limit))

    def iter_recipients(
        self, job_id: str, *, status: str = "", search: str = "", page: int = 500
    ) -> Iterator[m.Recipient]:
        offset = 0
        while True:
            got = self.recipients(job_id, status=status, search=search, offset=offset, limit=page)
            yield from got.recipients
            offset += len(got.recipients)
            if not got.recipients or offset >= got.total:
                return

    def download_report(
        self, job_id: str, path: str | Path, on_progress: Download | None = None
    ) -> int:
        """Stream the campaign's report to ``path``; returns the bytes written."""
        call: Call[None] = Call("GET", self._r.report_path(job_id), lambda r: None)
        response = self._send(call, stream=True)
        written = 0
        target = Path(path)
        partial = target.with_name(target.name + ".part")
        try:
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    written += len(chunk)
                    if on_progress is not None:
                        on_progress(written)
        finally:
            response.close()
        partial.replace(target)
        return written

    def wait(
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
                self.job(job_id)
                try:
                    finished = self._follow(job_id, on_progress, deadline)
                except (SSEError, httpx.HTTPError, TransportError, ApiError):
                    # An older server without the route, too many streams, a proxy that
                    # buffers: poll instead.
                    streaming = False
                else:
                    if finished:
                        return self.job(job_id)
                    continue  # the stream ended on its own: reconnect
            job = self.job(job_id)
            x.polled(job, last, on_progress)
            last = job
            if job.finished:
                return job
            time.sleep(poll_interval)

    def _follow(self, job_id: str, on_progress: Progress | None, deadline: float | None) -> bool:
        """One event stream; True once the campaign has finished."""
        with connect_sse(
            self._http, "GET", self._r.events_path(job_id), timeout=x.STREAM_TIMEOUT
        ) as source:
            if source.response.status_code != 200:
                source.response.read()
                raise error_of(source.response)
            for event in source.iter_sse():
                if x.on_event(event, on_progress):
                    return True
                if x.past(deadline):
                    return False
        return False

    # ------------------------------------------------------------- accounts
    def accounts(self) -> list[m.Account]:
        return self._run(self._r.accounts())

    def create_account(self, name: str, **fields: Any) -> m.Account:
        return self._run(
            self._r.create_account(m.AccountRequest.model_validate({"name": name, **fields}))
        )

    def account(self, name: str) -> m.Account:
        return self._run(self._r.account(name))

    def update_account(self, name: str, **fields: Any) -> m.Account:
        return self._run(self._r.update_account(name, m.AccountChange.model_validate(fields)))

    def delete_account(self, name: str) -> m.Changed:
        return self._run(self._r.delete_account(name))

    def pause_account(self, name: str) -> m.Account:
        return self._run(self._r.account_action(name, "pause"))

    def resume_account(self, name: str) -> m.Account:
        return self._run(self._r.account_action(name, "resume"))

    def suppressions(self, account: str, cursor: int = 0, limit: int = 100) -> m.SuppressionPage:
        return self._run(self._r.suppressions(account, cursor, limit))

    def iter_suppressions(self, account: str, page: int = 500) -> Iterator[str]:
        """Every suppressed number of the account (a Redis scan: each is seen at least once)."""
        cursor, seen = 0, set()
        while True:
            got = self.suppressions(account, cursor, page)
            for phone in got.phones:
                if phone not in seen:
                    seen.add(phone)
                    yield phone
            cursor = got.cursor
            if cursor == 0:
                return

    def suppress(self, account: str, phones: list[Any]) -> m.Suppressed:
        return self._run(self._r.suppress(account, phones))

    def unsuppress(self, account: str, phone: str) -> m.Unsuppressed:
        return self._run(self._r.unsuppress(account, phone))

    def web_session(self, account: str) -> m.WebSession:
        """A WhatsApp Web account's session: state, QR or pairing code, holder."""
        return self._run(self._r.web_session(account))

    def pair_web(self, account: str, phone: str | None = None) -> m.Changed:
        """Ask for a QR code (or, with ``phone``, a pairing code) to link the account."""
        return self._run(self._r.pair_web(account, phone))

    # ------------------------------------------------- simulator, callbacks
    def simulator_messages(self, offset: int = 0, limit: int = 50) -> m.SimulatorMessages:
        return self._run(self._r.simulator_messages(offset, limit))

    def faults(self) -> m.Faults:
        return self._run(self._r.faults())

    def set_faults(self, **rates: Any) -> m.Faults:
        return self._run(self._r.set_faults(m.FaultsRequest.model_validate(rates)))

    def callbacks(self, state: str = "pending", offset: int = 0, limit: int = 50) -> m.CallbackPage:
        return self._run(self._r.callbacks(state, offset, limit))

    def callback_stats(self) -> m.CallbackStats:
        return self._run(self._r.callback_stats())

    def retry_callback(self, callback_id: str) -> m.Changed:
        return self._run(self._r.retry_callback(callback_id))

    def liveness(self) -> m.Liveness:
        return self._run(self._r.liveness())

    def metrics(self) -> str:
        """``/metrics`` in Prometheus's text format (with the API key)."""
        return self._run(self._r.metrics())
