"""``GET /metrics`` in Prometheus's text format.

Fleet-wide figures (queue, messages, accounts, callbacks, webhooks, heartbeats) are read from
Redis when Prometheus scrapes, so every process answers the same whichever one is scraped and
however many workers run on however many hosts. Only provider latency and errors are
per-process (``waqtor.runtime.process_metrics``). Labels are bounded: statuses and states are
fixed lists, accounts are capped at ``MAX_ACCOUNTS`` (the rest are counted, not listed), and no
label ever carries a phone number, a key or a URL.

Authorisation: ``Authorization: Bearer <METRICS_TOKEN>`` when METRICS_TOKEN is set, or an API
key (full or read-only) in ``X-API-Key``. Wrong credentials count as failed attempts, like a
wrong API key.
"""

from __future__ import annotations

import hmac
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from waqtor.api.errors import ApiError
from waqtor.api.gate import too_many
from waqtor.domain.accounts import Account, effective_caps, gap_ms, paused_by
from waqtor.runtime import offload, process_metrics
from waqtor.runtime.parts import HasAccounts, HasClock, HasSettings, HasStore
from waqtor.store.errors import REDIS_DOWN
from waqtor.store.queue_stats import QueueFigures
from waqtor.store.scrape import ScrapeFigures
from waqtor.web.guard import Guard, client_address
from waqtor.web.keys import HEADER, role_of


class Scrapes(HasSettings, HasClock, HasStore, HasAccounts, Protocol):
    """What a scrape reads."""


router = APIRouter(tags=["health"])

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_ACCOUNTS = 500
_WEBHOOK_COUNTER = re.compile(r"^[a-z_]{1,32}$")
MAX_WEBHOOK_COUNTERS = 50
#: Values of the ``by`` label of ``waqtor_account_paused`` (``domain.accounts.paused_by``).
PAUSERS = ("breaker", "operator")


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _gauge(name: str, doc: str, value: float | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _accounts(
    accounts: list[Account], figures: ScrapeFigures, default_delay_ms: int, now_ms: int
) -> Iterator[Metric]:
    today = date.today()
    sent_hour = GaugeMetricFamily(
        "waqtor_account_sent_last_hour", "Sends in the last hour.", labels=["account"]
    )
    sent_day = GaugeMetricFamily(
        "waqtor_account_sent_last_day", "Sends in the last 24 hours.", labels=["account"]
    )
    backlog = GaugeMetricFamily(
        "waqtor_account_backlog", "Recipients still to send, all campaigns.", labels=["account"]
    )
    breaker = GaugeMetricFamily(
        "waqtor_account_breaker_state",
        "1 for the account's state: ok, cooling (resting after a ban signal) or paused.",
        labels=["account", "state"],
    )
    paused = GaugeMetricFamily(
        "waqtor_account_paused",
        "1 when the account is paused, by whom: breaker (ban signals, failures, a refused "
        "WhatsApp Web session) or operator; 0 for the other and when not paused.",
        labels=["account", "by"],
    )
    messages = GaugeMetricFamily(
        "waqtor_account_messages",
        "Recipients by status on the account (their lane's sender), over every stored "
        "campaign; statuses at zero are left out.",
        labels=["account", "status"],
    )
    cooling = GaugeMetricFamily(
        "waqtor_account_cooling_seconds", "Seconds left of the account's rest.", labels=["account"]
    )
    strikes = GaugeMetricFamily(
        "waqtor_account_strikes", "Ban signals in the last hour.", labels=["account"]
    )
    cap = GaugeMetricFamily(
        "waqtor_account_cap", "Cap in force (absent: no cap).", labels=["account", "window"]
    )
    usage = GaugeMetricFamily(
        "waqtor_account_cap_usage_ratio",
        "Sends in the window over the cap in force (1: capped).",
        labels=["account", "window"],
    )
    gap = GaugeMetricFamily(
        "waqtor_account_pacing_gap_seconds",
        "Least gap between two sends of the account.",
        labels=["account"],
    )
    for account in accounts:
        name = account.name
        f = figures.accounts[name]
        sent_hour.add_metric([name], f.sent_last_hour)
        sent_day.add_metric([name], f.sent_last_day)
        backlog.add_metric([name], max(0, f.backlog))
        resting = max(0, f.cooling_until_ms - now_ms)
        state = "paused" if account.paused else "cooling" if resting else "ok"
        for each in ("ok", "cooling", "paused"):
            breaker.add_metric([name, each], 1.0 if each == state else 0.0)
        for status, n in sorted(f.messages.items()):
            messages.add_metric([name, status], n)
        by = paused_by(account)
        for each in PAUSERS:
            paused.add_metric([name, each], 1.0 if each == by else 0.0)
        cooling.add_metric([name], resting / 1000)
        strikes.add_metric([name], f.strikes)
        caps = effective_caps(account, today, now_ms)
        for window, limit, used in (
            ("hour", caps.hourly, f.sent_last_hour),
            ("day", caps.daily, f.sent_last_day),
        ):
            if limit is not None:
                cap.add_metric([name, window], limit)
                usage.add_metric([name, window], used / limit if limit else 1.0)
        gap.add_metric([name], gap_ms(account, default_delay_ms, now_ms) / 1000)
    yield from (
        sent_hour,
        sent_day,
        backlog,
        messages,
        breaker,
        paused,
        cooling,
        strikes,
        cap,
        usage,
        gap,
    )


def _queue(queue: QueueFigures) -> Iterator[Metric]:
    jobs = GaugeMetricFamily("waqtor_queue_jobs", "Campaign jobs by state.", labels=["state"])
    for state, n in queue.jobs.items():
        if state != "total":
            jobs.add_metric([state], n)
    messages = GaugeMetricFamily(
        "waqtor_messages",
        "Recipients by status, over every stored campaign.",
        labels=["status"],
    )
    for status, n in queue.messages.items():
        messages.add_metric([status], n)
    yield from (jobs, messages)


def _rest(figures: ScrapeFigures, heartbeat_ms: int, now_ms: int) -> Iterator[Metric]:
    yield _gauge(
        "waqtor_callbacks_pending", "Status callbacks waiting or due.", figures.callbacks_pending
    )
    yield _gauge(
        "waqtor_callbacks_failed",
        "Status callbacks given up (4xx or 24 h).",
        figures.callbacks_failed,
    )
    yield _gauge(
        "waqtor_callbacks_recently_delivered",
        "Delivered callbacks kept for the listing (capped).",
        figures.callbacks_recently_delivered,
    )
    hooks = CounterMetricFamily(
        "waqtor_webhook_events", "Status webhooks by outcome.", labels=["outcome"]
    )
    kept = [(k, v) for k, v in sorted(figures.webhooks.items()) if _WEBHOOK_COUNTER.match(k)]
    for outcome, n in kept[:MAX_WEBHOOK_COUNTERS]:
        hooks.add_metric([outcome], n)
    yield hooks
    ages = [max(0, now_ms - ts) for ts in figures.heartbeats_ms]
    alive = sum(1 for age in ages if age <= 3 * heartbeat_ms)
    yield _gauge("waqtor_workers_alive", "Workers with a heartbeat in the last 3 beats.", alive)
    yield _gauge("waqtor_workers_registered", "Workers with a stored heartbeat.", len(ages))
    if ages:
        yield _gauge(
            "waqtor_worker_heartbeat_age_seconds",
            "Age of the freshest worker heartbeat.",
            min(ages) / 1000,
        )


@dataclass(frozen=True)
class Reading:
    """What one scrape read from Redis; None fields when Redis did not answer."""

    ping_s: float | None
    read_s: float = 0.0
    now_ms: int = 0
    queue: QueueFigures | None = None
    listed: list[Account] = field(default_factory=list)
    unlisted: int = 0
    figures: ScrapeFigures | None = None


async def _read(s: Scrapes) -> Reading:
    started = time.perf_counter()
    try:
        await s.store.ping()
        ping = time.perf_counter() - started
        now_ms = s.clock.now_ms()
        queue = await s.store.queue_stats().read()
        accounts = await s.accounts.all()
        listed = accounts[:MAX_ACCOUNTS]
        figures = await s.store.scrape.read([a.name for a in listed], now_ms)
    except REDIS_DOWN:
        return Reading(ping_s=None)
    return Reading(
        ping_s=ping,
        read_s=time.perf_counter() - started,
        now_ms=now_ms,
        queue=queue,
        listed=listed,
        unlisted=len(accounts) - len(listed),
        figures=figures,
    )


def _families(r: Reading, default_delay_ms: int, heartbeat_ms: int) -> list[Metric]:
    if r.ping_s is None or r.queue is None or r.figures is None:
        return [_gauge("waqtor_redis_up", "Redis answered this scrape.", 0)]
    return [
        _gauge("waqtor_redis_up", "Redis answered this scrape.", 1),
        _gauge("waqtor_redis_ping_seconds", "Redis PING round trip.", r.ping_s),
        *_queue(r.queue),
        *_accounts(r.listed, r.figures, default_delay_ms, r.now_ms),
        _gauge(
            "waqtor_accounts_unlisted",
            f"Accounts beyond the first {MAX_ACCOUNTS} (by name), not labelled.",
            r.unlisted,
        ),
        *_rest(r.figures, heartbeat_ms, r.now_ms),
        _gauge("waqtor_scrape_seconds", "Time this scrape spent reading Redis.", r.read_s),
    ]


def render(r: Reading, default_delay_ms: int, heartbeat_ms: int) -> bytes:
    """The whole answer. Pure CPU (a few ms per hundred accounts): run on the CPU pool."""
    fleet = CollectorRegistry(auto_describe=False)
    fleet.register(_Families(_families(r, default_delay_ms, heartbeat_ms)))
    return generate_latest(fleet) + generate_latest(_process_registry())


def _process_registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every process of this host, added up from the files they write there.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return process_metrics.REGISTRY


def _token(request: Request) -> str | None:
    raw = request.headers.get("authorization", "")
    scheme, _, token = raw.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def authorised(request: Request) -> Response | None:
    """None if the caller may scrape; else the answer (401, 403 or 429)."""
    state: Any = request.app.state
    guard: Guard | None = getattr(state, "guard", None)
    address = client_address(request.scope)
    if guard is not None:
        wait = await guard.retry_after(address)
        if wait:
            return too_many(wait)
    token = _token(request)
    key = request.headers.get(HEADER)
    if token is None and not key:
        raise ApiError(
            401, "Missing credentials: send Authorization: Bearer <METRICS_TOKEN> or X-API-Key"
        )
    ok = False
    if token is not None:
        given = token.encode()
        for expected in state.metrics_tokens:
            ok |= hmac.compare_digest(given, expected.encode())
    if key:
        ok |= role_of(key, state.api_keys, state.readonly_keys) is not None
    if ok:
        return None
    if guard is not None:
        wait = await guard.failed(address)
        if wait:
            return too_many(wait)
    raise ApiError(403, "Invalid metrics token or API key")


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"description": "Prometheus text format.", "content": {"text/plain": {}}},
        401: {},
        403: {},
    },
)
async def metrics(request: Request) -> Response:
    refused = await authorised(request)
    if refused is not None:
        return refused
    s: Scrapes = request.app.state.services
    reading = await _read(s)
    body = await offload.run(render, reading, s.settings.message_delay, s.settings.heartbeat_ms)
    return Response(body, media_type=CONTENT_TYPE)
