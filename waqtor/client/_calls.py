"""Every route as a :class:`Call` (method, path, parameters, body, how to read the answer),
shared by :class:`~waqtor.client.Client` and :class:`~waqtor.client.AsyncClient`, which only
differ in how they carry it out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from waqtor.client import models as m
from waqtor.client import sources
from waqtor.client.errors import ApiError, from_status

T = TypeVar("T")
KEY_HEADER = "X-API-Key"

#: ``(method, path)`` of every route the client covers, with the method that calls it; the
#: contract test checks this against the server's ``/openapi.json`` both ways.
ROUTES: dict[tuple[str, str], str] = {}


def route(method: str, path: str, name: str) -> tuple[str, str]:
    ROUTES[(method, path)] = name
    return method, path


@dataclass
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Statuses that are answers, not errors (health's 503).
    answers: tuple[int, ...] = ()

    def should_retry(self, status: int) -> bool:
        """503: Redis or the provider is down. 409 on a keyed send: the same send (a retry of
        ours after a timeout) is still being processed; its answer comes once it is done."""
        if status in self.answers:
            return False
        return status == 503 or (status == 409 and "Idempotency-Key" in self.headers)

    @property
    def retry_safe(self) -> bool:
        """Whether a request that may have reached the server can be sent again."""
        return self.method == "GET" or "Idempotency-Key" in self.headers


def error_of(response: httpx.Response) -> ApiError:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    text = body.get("error") if isinstance(body, dict) else None
    if not isinstance(text, str):
        text = response.reason_phrase or "request failed"
    return from_status(response.status_code, text, body)


def _data(response: httpx.Response) -> Any:
    return response.json().get("data")


def model(kind: type[BaseModel]) -> Callable[[httpx.Response], Any]:
    return lambda r: kind.model_validate(_data(r))


def _changed(response: httpx.Response) -> m.Changed:
    body = response.json()
    return m.Changed.model_validate({**(body.get("data") or {}), "message": body.get("message")})


def _send_result(response: httpx.Response) -> m.SendResult:
    body = response.json()
    return m.SendResult.model_validate(
        {
            **body["data"],
            "mode": body.get("mode", ""),
            "replayed": response.headers.get("Idempotent-Replayed") == "true",
        }
    )


_ACCOUNTS = TypeAdapter(list[m.Account])


def _p(value: str) -> str:
    """A path segment, quoted: an id can never change which route is called."""
    return quote(value, safe="")


def body(value: BaseModel) -> dict[str, Any]:
    return value.model_dump(mode="json", exclude_unset=True)


class Routes:
    """One method per route; each returns the :class:`Call` that makes the request."""

    # --- messages
    def send_bulk(
        self, request: sources.Body, *, dry_run: bool, idempotency_key: str | None
    ) -> Call[Any]:
        method, path = route("POST", "/api/messages/send-bulk", "send")
        params: dict[str, Any] = dict(request.params)
        if dry_run:
            params["dryRun"] = "true"
        headers: dict[str, str] = {}
        if idempotency_key and not dry_run:
            headers["Idempotency-Key"] = idempotency_key
        read: Callable[[httpx.Response], Any] = model(m.Preview) if dry_run else _send_result
        if request.csv is not None:
            headers["Content-Type"] = "text/csv"
            return Call(method, path, read, params, content=request.csv, headers=headers)
        return Call(method, path, read, params, json=request.json, headers=headers)

    def preview(self, request: sources.Body) -> Call[m.Preview]:
        method, path = route("POST", "/api/messages/preview", "preview")
        if request.csv is not None:
            return Call(
                method,
                path,
                model(m.Preview),
                dict(request.params),
                content=request.csv,
                headers={"Content-Type": "text/csv"},
            )
        return Call(method, path, model(m.Preview), json=request.json)

    # --- queue
    def stats(self) -> Call[m.QueueStats]:
        return Call(*route("GET", "/api/queue/stats", "stats"), model(m.QueueStats))

    def jobs(self, limit: int, offset: int) -> Call[m.JobList]:
        params: dict[str, Any] = {"limit": limit}
        if offset:
            params["offset"] = offset
        return Call(*route("GET", "/api/queue/jobs", "jobs"), model(m.JobList), params)

    def job(self, job_id: str) -> Call[m.Job]:
        route("GET", "/api/queue/jobs/{job_id}", "job")
        return Call("GET", f"/api/queue/jobs/{_p(job_id)}", model(m.Job))

    def remove_job(self, job_id: str) -> Call[m.Changed]:
        route("DELETE", "/api/queue/jobs/{job_id}", "remove_job")
        return Call("DELETE", f"/api/queue/jobs/{_p(job_id)}", _changed)

    def pause_queue(self) -> Call[m.Changed]:
        return Call(*route("POST", "/api/queue/pause", "pause_queue"), _changed)

    def resume_queue(self) -> Call[m.Changed]:
        return Call(*route("POST", "/api/queue/resume", "resume_queue"), _changed)

    def clean(self, grace_ms: int | None) -> Call[m.Cleaned]:
        payload = body(m.CleanRequest(grace=grace_ms)) if grace_ms is not None else {}
        return Call(*route("POST", "/api/queue/clean", "clean"), model(m.Cleaned), json=payload)

    def health(self) -> Call[m.Health]:
        return Call(
            *route("GET", "/api/queue/health", "health"),
            lambda r: m.Health.model_validate(r.json()),
            answers=(503,),
        )

    # --- one campaign
    def control(self, job_id: str, action: str, payload: Any = None) -> Call[m.Changed]:
        route("POST", f"/api/queue/jobs/{{job_id}}/{action}", action)
        return Call("POST", f"/api/queue/jobs/{_p(job_id)}/{action}", _changed, json=payload)

    def resolve(self, job_id: str, index: int, request: m.ResolveRequest) -> Call[m.Changed]:
        route("POST", "/api/queue/jobs/{job_id}/recipients/{index}/resolve", "resolve")
        path = f"/api/queue/jobs/{_p(job_id)}/recipients/{int(index)}/resolve"
        return Call("POST", path, _changed, json=body(request))

    def recipients(
        self, job_id: str, status: str, search: str, offset: int, limit: int
    ) -> Call[m.RecipientPage]:
        route("GET", "/api/queue/jobs/{job_id}/recipients", "recipients")
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if status:
            params["status"] = status
        if search:
            params["search"] = search
        path = f"/api/queue/jobs/{_p(job_id)}/recipients"
        return Call("GET", path, model(m.RecipientPage), params)

    def report_path(self, job_id: str) -> str:
        route("GET", "/api/queue/jobs/{job_id}/report.csv", "download_report")
        return f"/api/queue/jobs/{_p(job_id)}/report.csv"

    def events_path(self, job_id: str) -> str:
        route("GET", "/api/queue/jobs/{job_id}/events", "wait")
        return f"/api/queue/jobs/{_p(job_id)}/events"

    # --- accounts
    def accounts(self) -> Call[list[m.Account]]:
        return Call(
            *route("GET", "/api/accounts", "accounts"),
            lambda r: _ACCOUNTS.validate_python(_data(r)["accounts"]),
        )

    def create_account(self, request: m.AccountRequest) -> Call[m.Account]:
        method, path = route("POST", "/api/accounts", "create_account")
        return Call(method, path, model(m.Account), json=body(request))

    def account(self, name: str) -> Call[m.Account]:
        route("GET", "/api/accounts/{name}", "account")
        return Call("GET", f"/api/accounts/{_p(name)}", model(m.Account))

    def update_account(self, name: str, change: m.AccountChange) -> Call[m.Account]:
        route("PATCH", "/api/accounts/{name}", "update_account")
        return Call("PATCH", f"/api/accounts/{_p(name)}", model(m.Account), json=body(change))

    def delete_account(self, name: str) -> Call[m.Changed]:
        route("DELETE", "/api/accounts/{name}", "delete_account")
        return Call("DELETE", f"/api/accounts/{_p(name)}", _changed)

    def account_action(self, name: str, action: str) -> Call[m.Account]:
        route("POST", f"/api/accounts/{{name}}/{action}", f"{action}_account")
        return Call("POST", f"/api/accounts/{_p(name)}/{action}", model(m.Account))

    def suppressions(self, account: str, cursor: int, limit: int) -> Call[m.SuppressionPage]:
        route("GET", "/api/accounts/{name}/suppressions", "suppressions")
        path = f"/api/accounts/{_p(account)}/suppressions"
        return Call("GET", path, model(m.SuppressionPage), {"cursor": cursor, "limit": limit})

    def suppress(self, account: str, phones: list[Any]) -> Call[m.Suppressed]:
        route("POST", "/api/accounts/{name}/suppressions", "suppress")
        path = f"/api/accounts/{_p(account)}/suppressions"
        return Call("POST", path, model(m.Suppressed), json=body(m.SuppressRequest(phones=phones)))

    def unsuppress(self, account: str, phone: str) -> Call[m.Unsuppressed]:
        route("DELETE", "/api/accounts/{name}/suppressions/{phone}", "unsuppress")
        path = f"/api/accounts/{_p(account)}/suppressions/{_p(phone)}"
        return Call("DELETE", path, model(m.Unsuppressed))

    def web_session(self, account: str) -> Call[m.WebSession]:
        route("GET", "/api/accounts/{name}/web", "web_session")
        return Call("GET", f"/api/accounts/{_p(account)}/web", model(m.WebSession))

    def pair_web(self, account: str, phone: str | None) -> Call[m.Changed]:
        route("POST", "/api/accounts/{name}/web/pair", "pair_web")
        path = f"/api/accounts/{_p(account)}/web/pair"
        return Call("POST", path, _changed, json=body(m.PairRequest(phone=phone)))

    # --- simulator and callbacks
    def simulator_messages(self, offset: int, limit: int) -> Call[m.SimulatorMessages]:
        return Call(
            *route("GET", "/api/simulator/messages", "simulator_messages"),
            model(m.SimulatorMessages),
            {"offset": offset, "limit": limit},
        )

    def faults(self) -> Call[m.Faults]:
        return Call(*route("GET", "/api/simulator/faults", "faults"), model(m.Faults))

    def set_faults(self, request: m.FaultsRequest) -> Call[m.Faults]:
        method, path = route("PUT", "/api/simulator/faults", "set_faults")
        return Call(method, path, model(m.Faults), json=body(request))

    def callbacks(self, state: str, offset: int, limit: int) -> Call[m.CallbackPage]:
        return Call(
            *route("GET", "/api/callbacks", "callbacks"),
            model(m.CallbackPage),
            {"state": state, "offset": offset, "limit": limit},
        )

    def callback_stats(self) -> Call[m.CallbackStats]:
        return Call(*route("GET", "/api/callbacks/stats", "callback_stats"), model(m.CallbackStats))

    def retry_callback(self, callback_id: str) -> Call[m.Changed]:
        route("POST", "/api/callbacks/{callback_id}/retry", "retry_callback")
        return Call("POST", f"/api/callbacks/{_p(callback_id)}/retry", _changed)

    # --- outside /api
    def liveness(self) -> Call[m.Liveness]:
        return Call(
            *route("GET", "/health", "liveness"), lambda r: m.Liveness.model_validate(r.json())
        )

    def metrics(self) -> Call[str]:
        return Call(*route("GET", "/metrics", "metrics"), lambda r: r.text)


def send_body(
    recipients: sources.Recipients,
    message: str | None,
    account: str | None,
    accounts: list[str] | None,
    send_at: datetime | str | None,
    extra: Mapping[str, Any],
) -> sources.Body:
    return sources.build(
        recipients,
        message=message,
        account=account,
        accounts=accounts,
        send_at=send_at,
        extra=extra,
    )


def register_all() -> None:
    """Record every route in :data:`ROUTES` (they register as their calls are first built)."""
    r = Routes()
    empty = sources.Body(params={}, json={})
    r.send_bulk(empty, dry_run=False, idempotency_key=None)
    r.preview(empty)
    r.stats(), r.jobs(1, 0), r.job("x"), r.remove_job("x"), r.pause_queue(), r.resume_queue()
    r.clean(None), r.health(), r.resolve("x", 0, m.ResolveRequest(action="sent"))
    for action in ("pause", "resume", "cancel", "retry", "promote"):
        r.control("x", action)
    r.recipients("x", "", "", 0, 1), r.report_path("x"), r.events_path("x")
    r.accounts(), r.create_account(m.AccountRequest(name="x")), r.account("x")
    r.update_account("x", m.AccountChange()), r.delete_account("x")
    r.account_action("x", "pause"), r.account_action("x", "resume")
    r.suppressions("x", 0, 1), r.suppress("x", ["1"]), r.unsuppress("x", "1")
    r.web_session("x"), r.pair_web("x", None)
    r.simulator_messages(0, 1), r.faults(), r.set_faults(m.FaultsRequest())
    r.callbacks("pending", 0, 1), r.callback_stats(), r.retry_callback("x")
    r.liveness(), r.metrics()


register_all()
