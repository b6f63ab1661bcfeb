"""Figures only the process that made them can know: how long each provider request took and
which errors it answered. Everything else ``/metrics`` shows is read from Redis at scrape
time (``waqtor.api.metrics``), so it is right whichever process or host is scraped.

With ``PROMETHEUS_MULTIPROC_DIR`` set (before start-up, one directory per host), every process
on the host writes these to files there and ``/metrics`` adds them up; without it, ``/metrics``
shows those of the process that answers it (``serve`` and its own worker).
"""

from __future__ import annotations

import re
import threading
import time
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

# ``*_created`` series double the output and no dashboard here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Ours, not the library's default registry: nothing else in the process adds to it.
REGISTRY = CollectorRegistry(auto_describe=True)

PROVIDER_LATENCY = Histogram(
    "waqtor_provider_request_seconds",
    "Time of one provider request (a batch counts once), per process.",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
PROVIDER_ERRORS = Counter(
    "waqtor_provider_errors",
    "Provider answers that were errors, by the provider's code, per process.",
    ["provider", "code"],
    registry=REGISTRY,
)

PROVIDER_MESSAGES = Counter(
    "waqtor_provider_messages",
    "Messages handed to the provider, by account and outcome (sent, or the error's class), "
    "per process.",
    ["provider", "account", "outcome"],
    registry=REGISTRY,
)

CALLBACK_ATTEMPTS = Counter(
    "waqtor_callback_attempts",
    "Status-callback POSTs by outcome: delivered, retry (will try again) or failed (given up), "
    "per process.",
    ["outcome"],
    registry=REGISTRY,
)
_CALLBACK_OUTCOMES = frozenset({"delivered", "retry", "failed"})

#: Distinct codes kept as labels per process; later ones count as ``other``, so a provider
#: that puts free text in its codes cannot grow the series without bound.
MAX_CODES = 100
_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,40}$")
_codes: set[str] = set()
_codes_lock = threading.Lock()


#: Distinct accounts kept as labels per process, likewise.
MAX_ACCOUNTS = 500
_accounts: set[str] = set()


def _bounded(value: str, seen: set[str], limit: int) -> str:
    if not _CODE.match(value):
        return "other"
    with _codes_lock:
        if value in seen:
            return value
        if len(seen) >= limit:
            return "other"
        seen.add(value)
        return value


def code_label(code: str) -> str:
    return _bounded(code, _codes, MAX_CODES)


#: Labelled children already looked up (``labels()`` validates and locks on every call, which
#: cost more than the count itself, once per message on the send path). Bounded like the labels.
_children: dict[tuple[str, ...], Any] = {}
_MAX_CHILDREN = 4 * (MAX_ACCOUNTS + MAX_CODES)


def _child(metric: Any, key: tuple[str, ...], *labels: str) -> Any:
    child = _children.get(key)
    if child is None:
        if len(_children) > _MAX_CHILDREN:
            _children.clear()
        child = _children[key] = metric.labels(*labels)
    return child


def outcome(provider: str, account: str, error: BaseException | None, n: int = 1) -> None:
    """``n`` messages' outcome: ``sent``, or the class of its error (``PermanentError`` ...)."""
    kind = "sent" if error is None else type(error).__name__
    key = ("m", provider, account, kind)
    child = _children.get(key)
    if child is None:
        bounded = _bounded(account, _accounts, MAX_ACCOUNTS)
        child = _child(PROVIDER_MESSAGES, key, provider, bounded, kind)
    child.inc(n)


def provider_error(provider: str, code: str) -> None:
    PROVIDER_ERRORS.labels(provider, code_label(code)).inc()


class provider_call:
    """Time one provider request; an exception leaving it counts as an error by its code.
    ``account``: a one-message request, whose outcome is counted here too. (A class, not a
    generator context manager: one is entered per message on the per-message send path.)"""

    __slots__ = ("account", "provider", "started")

    def __init__(self, provider: str, account: str | None = None) -> None:
        self.provider = provider
        self.account = account
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        provider, account = self.provider, self.account
        if exc is None:
            if account is not None:
                outcome(provider, account, None)
        elif isinstance(exc, TimeoutError):
            provider_error(provider, "timeout")
            if account is not None:
                outcome(provider, account, exc)
        elif isinstance(exc, Exception):
            provider_error(provider, str(getattr(exc, "code", "") or type(exc).__name__))
            if account is not None:
                outcome(provider, account, exc)
        latency = _child(PROVIDER_LATENCY, ("l", provider), provider)
        latency.observe(time.perf_counter() - self.started)


def callback_attempt(outcome_name: str) -> None:
    CALLBACK_ATTEMPTS.labels(outcome_name if outcome_name in _CALLBACK_OUTCOMES else "other").inc()
