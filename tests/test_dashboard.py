"""The dashboard over HTTP (in-process app, real Redis): access, CSRF, roles, pages, compose."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.conftest import HEADERS, KEY, App, make_settings, recipients, wait_for_job
from tests.dashboard_support import READ_KEY, Browser, csrf_in, text_of
from waqtor.campaigns import submission as campaigns
from waqtor.domain.recipients import parse


async def send(app: App, n: int, start: int = 0, message: str = "Hello {name}") -> str:
    resp = await app.post(
        "/api/messages/send-bulk", json={"recipients": recipients(n, start), "message": message}
    )
    assert resp.status_code == 200, resp.text
    job_id: str = resp.json()["data"]["jobId"]
    return job_id


async def test_logged_out_requests_go_to_the_login_page(app: App) -> None:
    async with Browser(app) as b:
        for path in ("/admin/queues", "/admin/queues/compose", "/admin/queues/jobs/abc"):
            resp = await b.get(path)
            assert resp.status_code == 303, path
            assert resp.headers["location"].startswith("/admin/login?next=/admin/queues")
        resp = await b.get("/admin/queues/jobs?state=failed")
        assert resp.headers["location"] == "/admin/login?next=/admin/queues/jobs%3Fstate%3Dfailed"
        form = await b.get(resp.headers["location"])
        assert 'name="next" value="/admin/queues/jobs?state=failed"' in form.text
        resp = await b.get("/admin/queues/events", headers={"HX-Request": "true"})
        assert resp.status_code == 401 and resp.headers["HX-Redirect"].startswith("/admin/login")
        resp = await b.post("/admin/queues/pause", {"csrf": "x"})
        assert resp.status_code == 303 and resp.headers["location"] == "/admin/login"
        assert (await b.get("/admin")).headers["location"] == "/admin/queues"
        static = await b.get("/admin/static/htmx.min.js")
        assert static.status_code == 200 and "javascript" in static.headers["content-type"]


async def test_login_sets_a_signed_strict_cookie_and_logout_clears_it(app: App) -> None:
    async with Browser(app) as b:
        wrong = await b.login("not-the-key-0123456789")
        assert wrong.status_code == 401 and "not valid" in wrong.text
        assert (await b.get("/admin/queues")).status_code == 303
        resp = await b.login()
        assert resp.status_code == 303 and resp.headers["location"] == "/admin/queues"
        cookie = resp.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
        assert KEY not in cookie and KEY not in resp.headers["location"]
        page = await b.get("/admin/queues")
        assert page.status_code == 200 and "Queue overview" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        assert (await b.post("/admin/logout", {"csrf": None})).status_code == 403
        out = await b.post("/admin/logout")
        assert out.status_code == 303 and out.headers["location"] == "/admin/login?out=1"
        assert (await b.get("/admin/queues")).status_code == 303
        # A forged cookie is no session.
        b.client.cookies.set("waqtor_session", "eyJjIjoieCIsImsiOiJ5In0.forged", path="/admin")
        assert (await b.get("/admin/queues")).status_code == 303


async def test_login_needs_its_csrf_token_and_never_redirects_off_site(app: App) -> None:
    async with Browser(app) as b:
        form = await b.get("/admin/login")
        no_token = await b.client.post("/admin/login", data={"key": KEY})
        assert no_token.status_code == 403
        resp = await b.client.post(
            "/admin/login", data={"csrf": csrf_in(form.text), "key": KEY, "next": "//evil.test/x"}
        )
        assert resp.status_code == 303 and resp.headers["location"] == "/admin/queues"


async def test_a_post_without_the_csrf_token_is_rejected_and_changes_nothing(app: App) -> None:
    s = app.app.state.services
    async with Browser(app) as b:
        await b.login()
        for token in (None, "wrong-token"):
            resp = await b.post("/admin/queues/pause", {"csrf": token})
            assert resp.status_code == 403 and "CSRF" in resp.text
            assert "Traceback" not in resp.text
        assert not await s.engine.is_paused()
        resp = await b.client.post("/admin/queues/pause", headers={"X-CSRF-Token": b.csrf})
        assert resp.status_code == 303 and await s.engine.is_paused()
        page = await b.get("/admin/queues")
        assert "Queue paused" in page.text  # the flash message, shown once
        assert "Queue paused" not in (await b.get("/admin/queues")).text
        assert (await b.post("/admin/queues/resume")).status_code == 303
        assert not await s.engine.is_paused()


async def test_a_read_only_key_sees_everything_and_changes_nothing(
    redis_url: str, tmp_path: Path
) -> None:
    settings = make_settings(redis_url, tmp_path, readonly_api_key=READ_KEY, message_delay=200)
    async with App(settings) as app, Browser(app) as b:
        s = app.app.state.services
        job_id = await send(app, 30)
        assert (await b.login(READ_KEY)).status_code == 303
        overview = await b.get("/admin/queues")
        assert "read-only" in overview.text and 'action="/admin/queues/pause"' not in overview.text
        page = await b.get(f"/admin/queues/jobs/{job_id}")
        assert page.status_code == 200 and f"/jobs/{job_id}/pause" not in page.text
        assert "Read-only key" in (await b.get(f"/admin/queues/jobs/{job_id}/actions")).text
        for path in (f"/admin/queues/jobs/{job_id}/pause", "/admin/queues/pause"):
            resp = await b.post(path)
            assert resp.status_code == 403 and "read-only" in resp.text
        assert (await s.ledger.meta(job_id)).get("paused") != "1"
        assert not await s.engine.is_paused()
        sent = await b.post(
            "/admin/queues/compose/send",
            {"recipients": "966500000001", "message": "Hi", "account": "default"},
        )
        assert sent.status_code == 403
        preview = await b.post(
            "/admin/queues/compose/preview",
            {"recipients": "966500000001", "message": "Hi", "account": "default"},
        )
        assert preview.status_code == 200 and "preview, not send" in preview.text


async def test_campaign_page_masks_phones_filters_by_status_and_explains_errors(app: App) -> None:
    faults = {"phones": {"+966500000003": "permanent", "+966500000007": "permanent"}}
    assert (await app.client.put("/api/simulator/faults", json=faults, headers=HEADERS)).is_success
    await asyncio.sleep(0.25)
    job_id = await send(app, 30)
    await wait_for_job(app.get, job_id)
    async with Browser(app) as b:
        await b.login()
        page = await b.get(f"/admin/queues/jobs/{job_id}")
        assert page.status_code == 200
        assert "+966500000003" not in page.text and "+9665*****003" in page.text
        assert 'data-testid="percent">100%' in page.text
        failed = await b.get(f"/admin/queues/jobs/{job_id}?status=failed")
        rows = re.findall(r"<tr>\s*<td>(\d+)</td>", failed.text)
        assert rows == ["4", "8"]
        assert "sim_invalid_recipient" in failed.text and "not on WhatsApp" in failed.text
        shown = await b.get(f"/admin/queues/jobs/{job_id}?status=failed&reveal=1")
        assert "+966500000003" in shown.text
        found = await b.get(
            f"/admin/queues/jobs/{job_id}?q=500000012",
            headers={"HX-Request": "true", "HX-Target": "recipients"},
        )
        assert "<html" not in found.text
        assert re.findall(r"<tr>\s*<td>(\d+)</td>", found.text) == ["13"]
        report = await b.get(f"/admin/queues/jobs/{job_id}/report.csv")
        assert report.headers["content-type"].startswith("text/csv")
        assert len(report.text.strip().splitlines()) == 31
        missing = await b.get("/admin/queues/jobs/nope")
        assert missing.status_code == 404 and "No campaign" in missing.text


async def test_a_failed_job_shows_its_stack_trace_in_the_dashboard_only(
    redis_url: str, tmp_path: Path
) -> None:
    async with App(make_settings(redis_url, tmp_path, max_retries=0)) as app, Browser(app) as b:
        resp = await app.client.put(
            "/api/simulator/faults", json={"unavailable": 1.0}, headers=HEADERS
        )
        assert resp.is_success
        await asyncio.sleep(0.25)
        job_id = await send(app, 11)
        await wait_for_job(app.get, job_id, ("failed",))
        api = await app.get(f"/api/queue/jobs/{job_id}")
        assert "stacktrace" not in api.text and "Traceback" not in api.text
        await b.login()
        page = await b.get(f"/admin/queues/jobs/{job_id}")
        assert "Stack trace of the last failure (admins only" in page.text
        assert "provider unavailable" in page.text
        assert (
            "provider_unavailable"
            in (await b.get(f"/admin/queues/jobs/{job_id}?status=failed")).text
        )


async def test_jobs_by_state_page_and_search_by_id_and_phone(
    redis_url: str, tmp_path: Path
) -> None:
    async with App(make_settings(redis_url, tmp_path), run_worker=False) as app, Browser(app) as b:
        s = app.app.state.services
        ids = []
        for i in range(120):
            cid, _ = await campaigns.enqueue(s, parse(recipients(2, i * 10), "Hi {name}"))
            ids.append(cid)
        await b.login()
        first = await b.get("/admin/queues/jobs?state=waiting")
        listed = re.findall(r'href="/admin/queues/jobs/([0-9a-f]+)"', first.text)
        assert listed == ids[:50]  # next to run first
        last = await b.get("/admin/queues/jobs?state=waiting&page=2")
        assert re.findall(r'href="/admin/queues/jobs/([0-9a-f]+)"', last.text) == ids[100:]
        assert "101\u2013120 of 120" in text_of(last.text) and 'rel="next"' not in last.text
        hit = await b.get(f"/admin/queues/jobs?q={ids[7]}")
        assert hit.status_code == 303 and hit.headers["location"].endswith(ids[7])
        phone = await b.get("/admin/queues/jobs?q=%2B966 50 000 0071")
        assert f"/admin/queues/jobs/{ids[7]}?q=966500000071" in phone.text
        assert "Searched 120 of 120" in text_of(phone.text)
        assert "No job with the id" in (await b.get("/admin/queues/jobs?q=zzz")).text
        await s.engine.pause()
        paused = await b.get("/admin/queues/jobs?state=paused")
        assert "1\u201350 of 120" in text_of(paused.text)
        waiting = await b.get("/admin/queues/jobs?state=waiting")
        assert "No waiting jobs" in waiting.text
        assert (await b.get("/admin/queues/jobs?state=bogus")).status_code == 400


def _csv(rows: list[str]) -> bytes:
    return ("phone,name\n" + "\n".join(rows) + "\n").encode()


async def test_compose_previews_then_sends_what_was_previewed(app: App) -> None:
    s = app.app.state.services
    resp = await app.post("/api/accounts/default/suppressions", json={"phones": ["966500000011"]})
    assert resp.status_code == 200
    rows = [f"9665{i:08d},Person {i}" for i in range(13)] + ["12345,Bad", "966500000002,Again"]
    upload = {"file": ("list.csv", _csv(rows), "text/csv")}
    form = {"message": "Hello {name}", "account": "default", "recipients": ""}
    async with Browser(app) as b:
        await b.login()
        hx = {"HX-Request": "true"}
        preview = await b.post("/admin/queues/compose/preview", form, files=upload, headers=hx)
        assert preview.status_code == 200 and "<html" not in preview.text
        facts = dict(re.findall(r'data-testid="preview-(\w+)">([^<]+)<', preview.text))
        assert facts["total"] == "12" and facts["invalid"] == "1"
        assert facts["duplicates"] == "1" and facts["suppressed"] == "1"
        assert "Hello Person 0" in preview.text and "same number as row 3" in preview.text
        digest = re.search(r'name="digest" value="([0-9a-f]+)"', preview.text)
        assert digest
        jobs_before = await s.store.redis.zcard(s.keys.jobs)
        changed = {**form, "message": "Hello {name}!", "digest": digest.group(1)}
        stale = await b.post("/admin/queues/compose/send", changed, files=upload)
        assert stale.status_code == 409 and "changed since the preview" in stale.text
        assert await s.store.redis.zcard(s.keys.jobs) == jobs_before
        sent = await b.post(
            "/admin/queues/compose/send", {**form, "digest": digest.group(1)}, files=upload
        )
        assert sent.status_code == 303
        job_id = sent.headers["location"].rsplit("/", 1)[1]
        assert (await s.ledger.meta(job_id))["total"] == "12"
        landed = await b.get(sent.headers["location"])
        assert "Campaign queued: 12 recipient(s)" in landed.text
        pasted = await b.post(
            "/admin/queues/compose/preview",
            {**form, "recipients": "966500000101\n+966 50 000 0102, 966500000103"},
            headers=hx,
        )
        assert 'data-testid="preview-total">3<' in pasted.text
        both = await b.post(
            "/admin/queues/compose/preview",
            {**form, "recipients": "966500000101"},
            files=upload,
            headers=hx,
        )
        assert both.status_code == 400 and "not both" in both.text
        one = {**form, "recipients": "966500000101"}
        unknown = await b.post(
            "/admin/queues/compose/preview", {**one, "account": "nobody"}, headers=hx
        )
        assert unknown.status_code == 400 and "no account named" in unknown.text
        assert (await app.post("/api/accounts", json={"name": "promo"})).status_code == 201
        assert (await app.post("/api/accounts/promo/pause")).status_code == 200
        paused = await b.post(
            "/admin/queues/compose/preview", {**one, "account": "promo"}, headers=hx
        )
        assert "Account “promo” is paused" in paused.text


async def test_campaign_actions_pause_resume_and_cancel(redis_url: str, tmp_path: Path) -> None:
    async with App(make_settings(redis_url, tmp_path, message_delay=50)) as app, Browser(app) as b:
        s = app.app.state.services
        job_id = await send(app, 200)
        await b.login()
        page = f"/admin/queues/jobs/{job_id}"
        resp = await b.post(f"{page}/pause")
        assert resp.status_code == 303 and resp.headers["location"] == page
        assert (await s.ledger.meta(job_id))["paused"] == "1"
        shown = await b.get(page)
        assert "Campaign paused" in shown.text and "Paused by an operator" in shown.text
        assert f"{page}/resume" in shown.text and f"{page}/pause" not in shown.text
        assert (await b.post(f"{page}/resume")).status_code == 303
        assert (await s.ledger.meta(job_id))["paused"] == "0"
        assert (await b.post(f"{page}/cancel")).status_code == 303
        done = await wait_for_job(app.get, job_id, states=("canceled",))
        assert done["recipients"]["canceled"] > 0
        again = await b.post(f"{page}/cancel")
        assert "nothing to cancel" in (await b.get(again.headers["location"])).text
        assert (await b.post(f"{page}/remove")).status_code == 303
        assert await s.engine.get(job_id) is None


async def test_the_simulator_banner_names_the_simulated_accounts(app: App) -> None:
    async with Browser(app) as b:
        await b.login()
        page = await b.get("/admin/queues/jobs")
        assert "no real WhatsApp messages are sent" in text_of(page.text)
        real = {"name": "shop", "provider": "cloud_api", "phoneNumberId": "123"}
        resp = await app.post("/api/accounts", json=real)
        assert resp.status_code == 201, resp.text
        page = await b.get("/admin/queues/jobs")
        banner = text_of(page.text)
        assert "no real WhatsApp messages are sent" not in banner
        assert "Simulator for account default: their messages are not really sent" in banner
    async with Browser(app) as anonymous:
        login_page = await anonymous.get("/admin/login")
        assert "Simulator for account default" in text_of(login_page.text)


async def test_compose_spreads_over_accounts_and_schedules(app: App) -> None:
    s = app.app.state.services
    for name in ("east", "west"):
        await app.post("/api/accounts", json={"name": name, "tier": None, "warmup": False})
    later = "2030-01-01T09:00:00+03:00"
    form = {
        "message": "Hi {name}",
        "account": "east, west",
        "recipients": "\n".join(f"9665{i:08d}" for i in range(12)),
        "send_at": later,
    }
    async with Browser(app) as b:
        await b.login()
        preview = await b.post("/admin/queues/compose/preview", form, headers={"HX-Request": "1"})
        assert preview.status_code == 200
        digest = re.search(r'name="digest" value="([0-9a-f]+)"', preview.text)
        assert digest
        sent = await b.post("/admin/queues/compose/send", {**form, "digest": digest.group(1)})
        assert sent.status_code == 303
        job_id = sent.headers["location"].rsplit("/", 1)[1]
        meta = await s.ledger.meta(job_id)
        assert meta["accounts"] == '["east", "west"]'
        assert (await app.get(f"/api/queue/jobs/{job_id}")).json()["data"]["status"] == "delayed"
        naive = await b.post(
            "/admin/queues/compose/preview",
            {**form, "send_at": "2030-01-01T09:00"},
            headers={"HX-Request": "1"},
        )
        assert naive.status_code == 400 and "time zone" in naive.text
