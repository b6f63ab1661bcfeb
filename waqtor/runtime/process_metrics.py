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
from collections.abc import Iterator
from contextlib import contextmanager

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

#: Distinct codes kept as labels per process; later ones count as ``other``, so a provider
#: that puts free text in its codes cannot grow the series without bound.
MAX_CODES = 100
_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,40}$")
_codes: set[str] = set()
_codes_lock = threading.Lock()


def code_label(code: str) -> str:
    if not _CODE.match(code):
        return "other"
    with _codes_lock:
        if code in _codes:
            return code
        if len(_codes) >= MAX_CODES:
            return "other"
        _codes.add(code)
        return code


def provider_error(provider: str, code: str) -> None:
    PROVIDER_ERRORS.labels(provider, code_label(code)).inc()


@contextmanager
def provider_call(provider: str) -> Iterator[None]:
    """Time one provider request; an exception leaving it counts as an error by its code."""
    started = time.perf_counter()
    try:
        yield
    except TimeoutError:
        provider_error(provider, "timeout")
        raise
    except Exception as exc:
        provider_error(provider, str(getattr(exc, "code", "") or type(exc).__name__))
        raise
    finally:
        PROVIDER_LATENCY.labels(provider).observe(time.perf_counter() - started)
