"""Status callbacks out: every recipient status change and every campaign state change is
POSTed as JSON to the campaign's (or else the account's) ``callbackUrl``.

Delivery goes through a durable outbox in Redis (``wq:cb:*``): an event is written there
first, then a dispatcher (one in every worker process) delivers it, retrying with exponential
backoff for up to ``CALLBACK_MAX_AGE_MS`` (24 h). A 2xx answer delivers it; any other 4xx
(except 429) gives it up at once; 429, 5xx, redirects-free network errors and timeouts are
retried. Given-up callbacks stay visible (``GET /api/callbacks?state=failed``) and can be sent
again.

Each request is signed::

    X-Waqtor-Timestamp: 1767225600                      (unix seconds, at this attempt)
    X-Waqtor-Signature: sha256=<hex HMAC-SHA256(CALLBACK_SECRET, "<timestamp>.<raw body>")>
    X-Waqtor-Delivery:  <delivery id>                   (the same on every retry: dedupe on it)
    X-Waqtor-Event:     message.status | campaign.status

A receiver recomputes the HMAC over the timestamp, a dot and the raw body, compares in
constant time, and rejects timestamps older than a few minutes (replays); see ``verify``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
import weakref
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from waqtor import __version__
from waqtor.config import read_secret
from waqtor.runtime import process_metrics
from waqtor.runtime.parts import HasAccounts, HasCallbackQueue, HasClock, HasJobIndex, HasSettings
from waqtor.sending import egress


class Addresses(HasAccounts, HasJobIndex, Protocol):
    """Where a campaign's callbacks go: its own URL, else its account's."""


class Outbox(HasClock, HasCallbackQueue, Protocol):
    """The callback outbox and the time to stamp on it."""


class Notifies(HasClock, HasAccounts, HasCallbackQueue, HasJobIndex, Protocol):
    """What queueing a campaign's status change needs."""


class Delivers(HasSettings, HasClock, HasCallbackQueue, Protocol):
    """What the dispatcher (and the outbox's figures) read and write."""


log = logging.getLogger("waqtor.sending.callbacks")

TIMESTAMP_HEADER = "X-Waqtor-Timestamp"
SIGNATURE_HEADER = "X-Waqtor-Signature"
DELIVERY_HEADER = "X-Waqtor-Delivery"
EVENT_HEADER = "X-Waqtor-Event"
#: Campaign meta field holding the campaign's own callback URL.
META_FIELD = "callbackUrl"
MAX_BACKOFF_MS = 3_600_000
KEEP = 1000  # given-up and delivered callbacks kept for the API
POLL_S = 0.2
_URL_CACHE_S = 2.0
#: A campaign's own URL is written once, at submission, so it is read again far less often (a
#: paced campaign records about one outcome a second: one read each 2 s was half a round trip a
#: message). The account's URL still comes from the account, read within ``_URL_CACHE_S``.
_CAMPAIGN_URL_CACHE_S = 60.0


# ---------------- signing ----------------
def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    now_s: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """What a receiver does: a fresh timestamp and a matching signature (constant time)."""
    if not timestamp or not signature:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    now = time.time() if now_s is None else now_s
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body).encode(), signature.encode())


def secret_of(s: HasSettings) -> str | None:
    return read_secret(s.settings.callback_secret, s.settings.callback_secret_file)


def new_id(now_ms: int) -> str:
    return f"{now_ms:x}{secrets.token_hex(5)}"


def valid_url(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


# ---------------- where events go ----------------
class _UrlCache:
    """Campaign and account callback URLs, cached briefly: with no URL configured anywhere, a
    status change costs no extra Redis call."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], tuple[float, str | None]] = {}
        self.campaigns: dict[str, tuple[float, str | None]] = {}


_caches: dict[int, _UrlCache] = {}


def _cache(s: Addresses) -> _UrlCache:
    key = id(s)
    cache = _caches.get(key)
    if cache is None:
        cache = _caches[key] = _UrlCache()
        weakref.finalize(s, _caches.pop, key, None)
    return cache


async def url_for(s: Addresses, campaign_id: str, account: str) -> str | None:
    """The campaign's callbackUrl, else its account's; None when neither is set."""
    cache = _cache(s)
    key = (campaign_id, account)
    hit = cache.entries.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < _URL_CACHE_S:
        return hit[1]
    url: str | None = None
    if campaign_id:
        own = cache.campaigns.get(campaign_id)
        if own is None or now - own[0] >= _CAMPAIGN_URL_CACHE_S:
            own = (now, await s.job_index.meta_field(campaign_id, META_FIELD) or None)
            if len(cache.campaigns) > 10_000:
                cache.campaigns.clear()
            cache.campaigns[campaign_id] = own
        url = own[1]
    if url is None:
        acct = await s.accounts.get(account)
        url = acct.callbackUrl if acct is not None else None
    if url is not None and not valid_url(url):
        log.warning(
            "callbackUrl of campaign %s / account %s is not http(s); ignored", campaign_id, account
        )
        url = None
    if len(cache.entries) > 10_000:
        cache.entries.clear()
    cache.entries[key] = (now, url)
    return url


async def enqueue(s: Outbox, url: str, event: dict[str, Any], now_ms: int | None = None) -> str:
    """Write one callback to the outbox (due now); returns its delivery id."""
    now = s.clock.now_ms() if now_ms is None else now_ms
    cb_id = new_id(now)
    payload = {"id": cb_id, "ts": now, **event}
    item = {
        "id": cb_id,
        "url": url,
        "event": str(event.get("event", "")),
        "body": json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
        "created": now,
        "attempts": 0,
    }
    await s.callback_queue.enqueue(cb_id, json.dumps(item, ensure_ascii=False), now)
    return cb_id


#: Campaign meta field set while the campaign is known to be active (for callbacks only).
ACTIVE_FIELD = "cbActive"


async def campaign_event(
    s: Notifies,
    campaign_id: str,
    account: str,
    state: str,
    *,
    counts: dict[str, int] | None = None,
    reason: str | None = None,
) -> str | None:
    """A campaign changed state (active, paused, canceled, completed, failed): queue it.

    ``active`` is sent when a worker starts on the campaign, again after a pause, but not each
    time its job comes back from waiting."""
    url = await url_for(s, campaign_id, account)
    if url is None:
        return None
    if state == "active":
        if not await s.job_index.set_meta_once(campaign_id, ACTIVE_FIELD, "1"):
            return None
    else:
        await s.job_index.drop_meta(campaign_id, ACTIVE_FIELD)
    event: dict[str, Any] = {
        "event": "campaign.status",
        "campaignId": campaign_id,
        "account": account,
        "status": state,
    }
    if counts is not None:
        event["recipients"] = {k: v for k, v in counts.items() if v}
    if reason:
        event["reason"] = reason
    return await enqueue(s, url, event)


# ---------------- delivery ----------------
@dataclass(frozen=True)
class Attempt:
    outcome: str  # delivered | retry | failed
    status: int
    error: str
    next_ms: int = 0


def backoff_ms(base_ms: int, attempts: int, rng: random.Random) -> int:
    """base x 2^attempts, at most an hour, with ±20 % jitter."""
    raw = min(MAX_BACKOFF_MS, base_ms * (2 ** min(attempts, 30)))
    return int(raw * rng.uniform(0.8, 1.2))


class Dispatcher:
    """Delivers due callbacks. Any number may run (one per worker process): each callback is
    leased while it is being delivered."""

    def __init__(self, services: Delivers, *, client: httpx.AsyncClient | None = None) -> None:
        self.s = services
        st = services.settings
        self._client = client or httpx.AsyncClient(
            timeout=st.callback_timeout_ms / 1000.0,
            follow_redirects=False,
            headers={"User-Agent": f"waqtor/{__version__}"},
        )
        self._own_client = client is None
        self._rng = random.Random()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def stop(self, grace_s: float = 3.0) -> None:
        """Stop polling; a batch being delivered gets ``grace_s`` to finish. One cut short is
        delivered again when its lease runs out (receivers dedupe on X-Waqtor-Delivery)."""
        self._stop.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=grace_s)
            if not done:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._own_client:
            await self._client.aclose()

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = await self.run_once()
            except Exception as exc:  # Redis away: keep trying, quietly
                log.warning("callback dispatcher: %s", exc)
                busy = 0
                await self._sleep(1.0)
            if busy == 0:
                await self._sleep(POLL_S)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    async def run_once(self) -> int:
        """Deliver one batch of due callbacks; returns how many were tried."""
        s = self.s
        st = s.settings
        secret = secret_of(s)
        if secret is None:
            if not self._warned and await s.callback_queue.any_due():
                log.warning("status callbacks are waiting: set CALLBACK_SECRET to send them")
                self._warned = True
            return 0
        now = s.clock.now_ms()
        lease = st.callback_timeout_ms + 5000
        pairs = await s.callback_queue.claim(now, lease, st.callback_concurrency)
        if pairs:
            await asyncio.gather(*(self._deliver(secret, cb_id, raw) for cb_id, raw in pairs))
        return len(pairs)

    async def _deliver(self, secret: str, cb_id: str, raw: str) -> None:
        s = self.s
        item = json.loads(raw)
        attempt = await self.attempt(secret, cb_id, item)
        await s.callback_queue.record(
            cb_id,
            attempt.outcome,
            s.clock.now_ms(),
            attempt.next_ms,
            attempt.status,
            attempt.error,
            KEEP,
        )
        process_metrics.callback_attempt(attempt.outcome)
        if attempt.outcome == "failed":
            log.warning("callback %s to %s given up: %s", cb_id, _host(item["url"]), attempt.error)

    async def attempt(self, secret: str, cb_id: str, item: dict[str, Any]) -> Attempt:
        """One POST of a callback, and what to do next."""
        st = self.s.settings
        body = str(item["body"]).encode()
        ts = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(secret, ts, body),
            DELIVERY_HEADER: cb_id,
            EVENT_HEADER: str(item.get("event", "")),
        }
        retry_after_ms = 0
        try:
            dest = await egress.resolve(str(item["url"]), allow_private=st.callback_allow_private)
            resp = await self._client.post(
                dest.url,
                content=body,
                headers={**headers, **dest.headers},
                extensions=dest.extensions,
            )
        except egress.Refused as exc:
            return Attempt("failed", 0, f"refused: {exc}")
        except OSError as exc:  # the name did not resolve: DNS may come back
            status, error, retryable = 0, f"cannot resolve the host ({exc})", True
        except httpx.HTTPError as exc:
            status, error, retryable = 0, f"no answer ({type(exc).__name__})", True
        else:
            status = resp.status_code
            if 200 <= status < 300:
                return Attempt("delivered", status, "")
            error = f"HTTP {status}"
            retryable = status == 429 or status >= 500
            if status == 429:
                retry_after_ms = _retry_after_ms(resp.headers.get("Retry-After"))
        now = self.s.clock.now_ms()
        if not retryable:
            return Attempt("failed", status, error + ": not retried (client error)")
        wait = max(
            retry_after_ms,
            backoff_ms(st.callback_backoff_ms, int(item.get("attempts", 0)), self._rng),
        )
        if now + wait > int(item.get("created", now)) + st.callback_max_age_ms:
            return Attempt("failed", status, error + ": retries ran out")
        return Attempt("retry", status, error, now + wait)


def _retry_after_ms(header: str | None) -> int:
    if not header:
        return 0
    try:
        return int(max(0.0, min(float(header), 3600.0)) * 1000)
    except ValueError:
        return 0


def _host(url: str) -> str:
    """For logs: scheme and host only (a URL's path or query may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}"


# ---------------- reading the outbox ----------------
def _view(cb_id: str, raw: str | None, state: str) -> dict[str, Any]:
    item: dict[str, Any] = json.loads(raw) if raw else {}
    body = item.get("body")
    return {
        "id": cb_id,
        "state": state,
        "url": item.get("url"),
        "event": item.get("event"),
        "createdMs": item.get("created"),
        "attempts": item.get("attempts", 0),
        "nextAttemptMs": item.get("next"),
        "failedMs": item.get("failed"),
        "last": item.get("last"),
        "payload": json.loads(body) if isinstance(body, str) else None,
    }


async def listing(
    s: Outbox, state: str, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    if state == "delivered":
        rows, total = await s.callback_queue.delivered(offset, limit)
        out = []
        for raw in rows:
            summary = json.loads(raw)
            out.append(
                {
                    "id": summary.get("id"),
                    "state": "delivered",
                    "url": summary.get("url"),
                    "event": summary.get("event"),
                    "createdMs": summary.get("created"),
                    "deliveredMs": summary.get("delivered"),
                    "attempts": summary.get("attempts"),
                    "last": {"status": summary.get("status")},
                }
            )
        return out, total
    items, total = await s.callback_queue.page(state == "pending", offset, limit)
    return [_view(i, r, state) for i, r in items], total


async def stats(s: Delivers) -> dict[str, Any]:
    pending, failed, delivered = await s.callback_queue.sizes()
    return {
        "pending": pending,
        "failed": failed,
        "recentlyDelivered": delivered,
        "signing": secret_of(s) is not None,
    }


async def requeue(s: Outbox, cb_id: str) -> bool:
    return await s.callback_queue.requeue(cb_id, s.clock.now_ms())
