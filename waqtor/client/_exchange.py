"""What :class:`~waqtor.client.Client` and :class:`~waqtor.client.AsyncClient` decide alike
around one request: its settings and headers, the request itself, whether to try again (and
after how long), whether an answer is an error, what a server-sent event says. They differ only
in how they wait and carry it out (blocking or awaited)."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import ServerSentEvent

from waqtor.client import models as m
from waqtor.client._calls import KEY_HEADER, Call, Routes
from waqtor.client.errors import TransportError

Progress = Callable[[m.Job], None]
#: Bytes written so far.
Download = Callable[[int], None]
#: Connection failures where the request surely never reached the server.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: How long one event stream may stay silent (s) before it is opened again.
STREAM_TIMEOUT = httpx.Timeout(30, read=60)


def settings(url: str | None, key: str | None) -> tuple[str, str]:
    url = url or os.environ.get("WAQTOR_URL") or "http://127.0.0.1:8080"
    key = key or os.environ.get("WAQTOR_API_KEY")
    if not key:
        raise ValueError("an API key is required: pass key=... or set WAQTOR_API_KEY")
    return url.rstrip("/"), key


def headers(key: str) -> dict[str, str]:
    """The key travels in this header only."""
    return {KEY_HEADER: key, "User-Agent": "waqtor-client"}


class Base:
    """What both clients hold besides their httpx client: the service's URL, the headers of
    every request (the key among them), the retry policy and the routes."""

    def __init__(
        self, url: str | None, key: str | None, retries: int, backoff: float, max_backoff: float
    ) -> None:
        self.url, key = settings(url, key)
        self._headers = headers(key)
        self._retries = Retries(retries, backoff, max_backoff)
        self._r = Routes()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"  # never the key


def request(http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
    return http.build_request(
        call.method,
        call.path,
        params=call.params or None,
        json=call.json if call.content is None else None,
        content=call.content,
        headers=call.headers or None,
    )


def backoff_s(attempt: int, base_s: float, cap_s: float, retry_after: str | None) -> float:
    if retry_after and retry_after.isdigit():
        return min(float(retry_after), cap_s)
    delay: float = min(cap_s, base_s * 2**attempt) * random.uniform(0.5, 1.0)
    return delay


@dataclass
class Retries:
    """Whether one call is tried again: ``retries`` times at most, with exponential backoff
    from ``backoff`` s up to ``max_backoff`` s (``Retry-After`` honoured)."""

    retries: int
    backoff: float
    max_backoff: float

    def after_failure(
        self, url: str, call: Call[Any], attempt: int, exc: httpx.TransportError
    ) -> float:
        """The wait (s) before trying again after no answer; raises when it must not."""
        if attempt >= self.retries or not (isinstance(exc, NOT_SENT) or call.retry_safe):
            raise TransportError(f"{call.method} {url}{call.path}: {exc}") from exc
        return backoff_s(attempt, self.backoff, self.max_backoff, None)

    def after_answer(self, call: Call[Any], attempt: int, response: httpx.Response) -> float | None:
        """The wait (s) before trying again after this answer, or None to keep it."""
        if attempt >= self.retries or not call.should_retry(response.status_code):
            return None
        retry_after = response.headers.get("Retry-After")
        return backoff_s(attempt, self.backoff, self.max_backoff, retry_after)


def is_error(call: Call[Any], response: httpx.Response) -> bool:
    return response.status_code >= 400 and response.status_code not in call.answers


def deadline_of(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline


def check_time(job_id: str, deadline: float | None, timeout: float | None) -> None:
    if past(deadline):
        raise TimeoutError(f"campaign {job_id} did not finish within {timeout} s")


def on_event(event: ServerSentEvent, on_progress: Progress | None) -> bool:
    """Read one event of a campaign's stream; True once the campaign has finished."""
    if event.event == "job" and on_progress is not None:
        on_progress(m.Job.model_validate(json.loads(event.data)))
    elif event.event == "end":
        return True
    elif event.event == "error":
        raise TransportError(json.loads(event.data).get("error", "stream error"))
    return False


def polled(job: m.Job, last: m.Job | None, on_progress: Progress | None) -> None:
    """A polled campaign: ``on_progress`` hears of it when it changed."""
    if on_progress is not None and job != last:
        on_progress(job)
