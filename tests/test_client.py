"""``waqtor.client`` against a live ``waqtor serve`` (real HTTP, real Redis): every route, its
typed models checked strictly against what the server really answers and against its
``/openapi.json``, idempotent sends, waiting over SSE and by polling, errors and 503 retries."""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from tests.conftest import KEY
from tests.live_service import LiveService, phones, write_csv
from waqtor.client import (
    AsyncClient,
    AuthError,
    BadRequest,
    Client,
    Conflict,
    NotFound,
    Unavailable,
    models,
)
from waqtor.client._calls import ROUTES


def _client_route(route: tuple[str, str]) -> bool:
    """Providers' webhooks (Meta, WAHA, Evolution API) are not called by API users."""
    return not route[1].startswith("/webhooks/")


@pytest.fixture(scope="module")
def live() -> Iterator[LiveService]:
    service = LiveService(message_delay=30, instant_threshold=3).start()
    yield service
    service.stop()


class Seen:
    """Every model the client built from a live answer, and every request it made."""

    def __init__(self) -> None:
        self.fields: dict[type[BaseModel], set[str]] = defaultdict(set)
        self.extra: list[str] = []
        self.requests: list[tuple[str, str, list[str]]] = []

    def walk(self, value: Any, where: str = "") -> Any:
        if isinstance(value, models.Model):
            kind = type(value)
            self.fields[kind].update(value.model_fields_set)
            if value.model_extra:
                self.extra.append(f"{where}{kind.__name__}: {sorted(value.model_extra)}")
            for name in type(value).model_fields:
                self.walk(getattr(value, name), f"{where}{kind.__name__}.{name}.")
        elif isinstance(value, list):
            for item in value:
                self.walk(item, where)
        elif isinstance(value, dict):
            for item in value.values():
                self.walk(item, where)
        return value


def _record(seen: Seen) -> Any:
    def hook(request: httpx.Request) -> None:
        seen.requests.append(
            (request.method, request.url.path, sorted(dict(request.url.params).keys()))
        )

    return hook


def _client(live: LiveService, seen: Seen | None = None, **kw: Any) -> Client:
    client = Client(live.url, live.key, **kw)
    if seen is not None:
        client._http.event_hooks["request"].append(_record(seen))
    return client


def _template(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")


def test_every_route_live_and_models_match_what_the_server_answers(
    live: LiveService, tmp_path: Path
) -> None:
    seen = Seen()
    w = seen.walk
    with _client(live, seen) as c:
        w(c.liveness())
        w(c.create_account("shop-1", tier="regular", delayMs=0))
        w(c.update_account("shop-1", hourlyCap=500))
        w(c.account("shop-1"))
        w(c.accounts())
        suppressed = w(c.suppress("shop-1", ["966599999901", "966599999902", "not a phone"]))
        assert suppressed.added == 2 and suppressed.invalid[0].index == 2
        assert sorted(c.iter_suppressions("shop-1", page=1)) == ["+966599999901", "+966599999902"]
        w(c.suppressions("shop-1"))
        w(c.unsuppress("shop-1", "966599999902"))
        # WhatsApp Web routes, on an account of another provider: refused (pairing a real one
        # would start a real connection).
        with pytest.raises(Conflict):
            c.web_session("shop-1")
        with pytest.raises(Conflict):
            c.pair_web("shop-1", phone="+966500000001")
        w(c.pause_account("shop-1"))
        w(c.resume_account("shop-1"))
        w(c.set_faults(phones={"+966500000103": "permanent"}))
        w(c.faults())
        csv = write_csv(tmp_path / "list.csv", phones(6, 100), delimiter=";")
        preview = w(c.preview(csv, "Hi {name}", account="shop-1"))
        assert preview.total == 6 and preview.samples[0].text == "Hi Guest 0"
        w(c.preview_route(csv, "Hi {name}"))
        sent = w(c.send(csv, "Hi {name}", account="shop-1"))
        assert sent.mode == "queue" and sent.jobId
        job = w(c.wait(sent.jobId, timeout=30))
        assert job.status == "completed"
        assert (job.recipients.sent, job.recipients.failed) == (5, 1)
        instant = w(c.send(["966500000201", "966500000202"], "Hello"))
        assert instant.mode == "instant" and instant.results and instant.successful == 2
        w(c.stats())
        w(c.jobs())
        w(c.job(sent.jobId))
        page = w(c.recipients(sent.jobId, status="failed"))
        assert [r.phone for r in page.recipients] == ["+966500000103"]
        assert len(list(c.iter_recipients(sent.jobId, page=4))) == 6
        w(c.retry(sent.jobId, ["nonexistent_code"]))
        target = tmp_path / "report.csv"
        progress: list[int] = []
        size = c.download_report(sent.jobId, target, on_progress=progress.append)
        assert size == target.stat().st_size and progress[-1] == size
        assert len(target.read_text().splitlines()) == 7
        w(c.health())
        w(c.callbacks())
        w(c.callback_stats())
        w(c.simulator_messages(limit=3))
        assert "waqtor_queue_jobs" in c.metrics()
        # A paused, resumed, promoted, canceled campaign: sendAt keeps it delayed meanwhile.
        later = w(c.send(phones(4, 300), "Later", send_at="2099-01-01T00:00:00Z"))
        assert later.jobId and later.status == "queued"
        w(c.pause(later.jobId))
        w(c.resume(later.jobId))
        with pytest.raises(Conflict) as conflict:
            c.resolve(later.jobId, 0, "sent")
        assert conflict.value.status == 409 and conflict.value.error
        w(c.cancel(later.jobId))
        assert c.wait(later.jobId, timeout=20).status == "canceled"
        with pytest.raises(Conflict):
            c.promote(later.jobId)
        w(c.remove_job(later.jobId))
        with pytest.raises(NotFound):
            c.retry_callback("0123abcd")
        w(c.pause_queue())
        w(c.resume_queue())
        w(c.clean(grace_ms=0))
        w(c.delete_account("shop-1"))
        w(c.set_faults())

    assert seen.extra == [], f"the server answers fields the client does not know: {seen.extra}"
    # Every field of every response model was seen in some live answer (none was renamed or
    # dropped by the server). Fields that only some answers carry are listed here.
    sometimes = {
        models.JobSummary: {"removedOutside"},
        models.Job: {"removedOutside"},
        models.SendResult: {"limitedBy", "accounts", "skippedAccounts", "reason", "replayed"},
        models.InstantResult: {"error", "errorCode"},
        models.InvalidRecipient: set(),
        models.Changed: {"changed"},
        # Only WhatsApp Web gateway accounts carry these.
        models.Account: {"sessionState"},
        models.AccountToday: {"newContacts", "newContactsCap"},
    }
    for kind, fields in seen.fields.items():
        missing = set(kind.model_fields) - fields - sometimes.get(kind, set()) - {"replayed"}
        assert not missing, f"{kind.__name__}: never seen in a live answer: {sorted(missing)}"

    spec = httpx.get(live.url + "/openapi.json").json()
    operations = {
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    }
    api_routes = set(filter(_client_route, operations))
    assert api_routes == set(ROUTES), (
        "routes without a client method:",
        sorted(api_routes - set(ROUTES)),
        "client methods without a route:",
        sorted(set(ROUTES) - operations),
    )
    # Every request the client made names a route and only parameters that route declares,
    # and every route of the client was called on the live service.
    called: set[tuple[str, str]] = set()
    for method, path, params in seen.requests:
        matches = [(m, p) for (m, p) in operations if m == method and _template(p).match(path)]
        assert matches, f"{method} {path}: no such route"
        called.update(matches)
        declared = set()
        for m, p in matches:
            declared |= {x["name"] for x in spec["paths"][p][m.lower()].get("parameters", [])}
        assert set(params) <= declared, f"{method} {path}: undeclared {set(params) - declared}"
    assert set(ROUTES) - called == set(), "routes never called live"


def _types(schema: dict[str, Any], refs: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        return _types(refs[schema["$ref"].rsplit("/", 1)[-1]], refs)
    if "anyOf" in schema:
        found: set[str] = set()
        for option in schema["anyOf"]:
            found |= _types(option, refs)
        return found - {"null"}
    if "enum" in schema and "type" not in schema:
        return {"string"}
    kind = schema.get("type")
    return {kind} - {"null"} if isinstance(kind, str) else set()


def _shape(schema: dict[str, Any], refs: dict[str, Any]) -> tuple[dict[str, set[str]], set[str]]:
    refs = {**refs, **schema.get("$defs", {})}
    props = {name: _types(p, refs) for name, p in schema.get("properties", {}).items()}
    return props, set(schema.get("required", []))


def test_request_models_match_the_servers_openapi(live: LiveService) -> None:
    spec = httpx.get(live.url + "/openapi.json").json()
    components = spec["components"]["schemas"]
    send = spec["paths"]["/api/messages/send-bulk"]["post"]["requestBody"]["content"]
    patch = spec["paths"]["/api/accounts/{name}"]["patch"]["requestBody"]["content"]
    pairs: list[tuple[type[BaseModel], dict[str, Any]]] = [
        (models.SendBulkRequest, send["application/json"]["schema"]),
        (models.AccountRequest, components["Account"]),
        (models.AccountChange, patch["application/json"]["schema"]),
        (models.RetryRequest, components["RetryRequest"]),
        (models.ResolveRequest, components["ResolveRequest"]),
        (models.SuppressRequest, components["SuppressRequest"]),
        (models.PairRequest, components["PairRequest"]),
        (models.CleanRequest, components["CleanRequest"]),
        (models.FaultsRequest, components["FaultsRequest"]),
        (models.Span, components["Span"]),
        (models.TemplateSpec, components["TemplateSpec"]),
        (models.MediaSpec, components["MediaSpec"]),
        (models.QuietHours, components["QuietHours"]),
    ]
    for kind, server in pairs:
        mine, mine_required = _shape(kind.model_json_schema(), {})
        theirs, their_required = _shape(server, components)
        assert set(mine) == set(theirs), (kind.__name__, set(mine) ^ set(theirs))
        if kind is not models.AccountChange:  # a PATCH sends only what changes
            assert mine_required == their_required, (kind.__name__, mine_required, their_required)
        for name, types in theirs.items():
            if types and mine[name]:
                assert mine[name] == types, (kind.__name__, name, mine[name], types)


def test_send_is_idempotent_and_wait_falls_back_to_polling(live: LiveService) -> None:
    rows = [{"phone": p, "name": f"N{i}"} for i, p in enumerate(phones(5, 400))]
    with _client(live) as c:
        first = c.send(rows, "Hi {name}")
        again = c.send(rows, "Hi {name}")
        assert first.jobId and again.jobId == first.jobId
        assert (first.replayed, again.replayed) == (False, True)
        # A different message is a different request: a new campaign.
        other = c.send(rows, "Hello {name}")
        assert other.jobId and other.jobId != first.jobId
        # No event stream (as with an older server): wait polls and still follows progress.
        c._r.events_path = lambda job_id: "/api/queue/jobs/no-such-route/x/events"  # type: ignore[method-assign]
        polled: list[models.Job] = []
        job = c.wait(first.jobId, on_progress=polled.append, poll_interval=0.05, timeout=30)
        assert job.finished and job.recipients.sent == 5 and polled[-1].finished
        c.wait(other.jobId, timeout=30)
    sent_to = [m["phone"] for m in live.outbox() if m.get("jobId") == first.jobId]
    assert sorted(sent_to) == sorted("+" + p for p in phones(5, 400))  # each once


def test_wait_follows_server_sent_events(live: LiveService) -> None:
    updates: list[models.Job] = []
    with _client(live) as c:
        sent = c.send(phones(15, 500), "Paced", account=None)
        assert sent.jobId
        streamed: list[str] = []
        c._http.event_hooks["request"].append(lambda r: streamed.append(r.url.path))
        job = c.wait(sent.jobId, on_progress=updates.append, timeout=30)
    assert f"/api/queue/jobs/{sent.jobId}/events" in streamed
    assert job.recipients.sent == 15 and job.status == "completed"
    counts = [u.recipients.sent for u in updates]
    assert counts == sorted(counts) and len(set(counts)) >= 2, counts  # it moved, live


def test_errors_carry_the_servers_text_and_never_the_key(live: LiveService) -> None:
    with _client(live) as c:
        with pytest.raises(NotFound) as missing:
            c.job("no-such-job")
        assert missing.value.status == 404 and missing.value.error == "Job not found"
        with pytest.raises(BadRequest) as bad:
            c.send(["966500000601"], "x", account="no-such-account")
        assert bad.value.status == 400 and bad.value.error.startswith("account:")
        assert KEY not in repr(c)
    with Client(live.url, "wrong-key-0123456789abcdef", retries=0) as wrong:
        with pytest.raises(AuthError) as denied:
            wrong.stats()
        assert denied.value.status == 403
        assert "wrong-key" not in str(denied.value)


def test_503_is_retried_with_backoff_until_redis_is_back(tmp_path: Path) -> None:
    service = LiveService(message_delay=0).start()
    try:
        with Client(service.url, service.key, retries=1, backoff=0.05) as c:
            assert c.stats().total == 0
            service.redis.stop()
            started = time.monotonic()
            with pytest.raises(Unavailable) as down:
                c.stats()
            assert down.value.status == 503 and "Redis unavailable" in down.value.error
            assert time.monotonic() - started >= 0.025  # it waited before its retry
        with Client(service.url, service.key, retries=8, backoff=0.2, max_backoff=1) as c:

            async def restart_soon() -> None:
                await asyncio.sleep(0.5)
                service.redis.start()

            async def both() -> models.QueueStats:
                restart = asyncio.create_task(restart_soon())
                stats = await asyncio.to_thread(c.stats)
                await restart
                return stats

            assert asyncio.run(both()).total == 0
    finally:
        service.stop()


async def test_async_client(live: LiveService, tmp_path: Path) -> None:
    async with AsyncClient(live.url, live.key) as c:
        sent = await c.send(write_csv(tmp_path / "a.csv", phones(5, 700)), "Hi {name}")
        assert sent.jobId
        seen: list[int] = []
        job = await c.wait(sent.jobId, on_progress=lambda j: seen.append(j.recipients.sent))
        assert job.recipients.sent == 5 and seen
        ids = [j.id async for j in c.iter_jobs(page=2)]
        everything = [j.id for j in await c.jobs(limit=1000)]
        assert len(everything) > 2 and ids == everything  # paged by offset, none lost or twice
        assert len([r async for r in c.iter_recipients(sent.jobId, page=2)]) == 5
        with pytest.raises(NotFound):
            await c.job("no-such-job")


def test_the_docs_example_runs(
    live: LiveService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The five-line example at the top of docs/client.md, run as written (its URL pointed at
    the live service, its list.csv in the working directory)."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "client.md").read_text()
    example = page.split("```python\n", 1)[1].split("```", 1)[0]
    assert len([line for line in example.splitlines() if line.strip()]) <= 6
    write_csv(tmp_path / "list.csv", phones(4, 950))
    monkeypatch.chdir(tmp_path)
    with Client(live.url, live.key) as c:
        c.create_account("shop-1", tier="business")
    printed: list[str] = []
    code = example.replace("http://127.0.0.1:8080", live.url)
    exec(code, {"key": live.key, "print": lambda *a: printed.append(" ".join(map(str, a)))})
    assert printed[-1] == "completed 4 0"


def test_an_open_event_stream_does_not_hold_up_a_graceful_stop() -> None:
    service = LiveService(message_delay=1000, instant_threshold=0).start()
    try:
        with Client(service.url, service.key) as c:
            sent = c.send(phones(30, 980), "Slow")  # 30 s at one a second
            assert sent.jobId
        stream = httpx.stream(
            "GET",
            f"{service.url}/api/queue/jobs/{sent.jobId}/events",
            headers={"X-API-Key": service.key},
            timeout=30,
        )
        with stream as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: job"
            assert service.proc is not None and service.proc.proc is not None
            started = time.monotonic()
            service.proc.proc.terminate()
            # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
            assert service.proc.wait(timeout=15) in (0, -15)
            assert time.monotonic() - started < 10
        assert "Application shutdown complete" in service.log.read_text()
    finally:
        service.stop()


def test_a_send_still_in_progress_is_waited_for_not_sent_again() -> None:
    """The same send twice at once (a retry after a timeout): the second gets the first's
    answer, replayed, and nothing goes out twice. (The server holds the second up to 120 s; a
    409 "still in progress" after that is retried by the client too.)"""
    service = LiveService(message_delay=400, instant_threshold=10).start()
    try:
        numbers = phones(4, 990)  # an instant send: the request lasts about 1.2 s
        with Client(service.url, service.key, backoff=0.2, retries=8) as c:

            async def both() -> list[models.SendResult]:
                first = asyncio.create_task(asyncio.to_thread(c.send, numbers, "Once"))
                await asyncio.sleep(0.3)
                second = await asyncio.to_thread(c.send, numbers, "Once")
                return [await first, second]

            first, second = asyncio.run(both())
        assert first.mode == "instant" and first.successful == 4
        assert second.replayed and second.results == first.results
        assert sorted(m["phone"] for m in service.outbox()) == sorted("+" + p for p in numbers)
    finally:
        service.stop()
