"""The dashboard in a real browser (Debian's Chromium, headless) against a real ``waqtor serve``
and real Redis. Screenshots of each page, light and dark, go to ``test-artifacts/dashboard/``."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import KEY, RedisServer
from tests.dashboard_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    Server,
    csrf_of,
    login,
    shoot,
    skip_reason,
)
from tests.dashboard_support import READ_KEY

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

if skip_reason() is None:
    from playwright.sync_api import Browser, Page, expect, sync_playwright

    expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def server(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    redis.Redis.from_url(redis_server.url).flushall()
    running = Server(tmp_path_factory.mktemp("serve"), redis_server.url).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP, color_scheme="light")
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    yield tab
    context.close()


def percent(page: Page) -> int:
    return int(page.get_by_test_id("percent").inner_text().rstrip("%"))


def sent_count(page: Page) -> int:
    return int(page.get_by_test_id("count-sent").locator(".n").inner_text().replace(",", ""))


def wait_sent_over(page: Page, floor: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while sent_count(page) <= floor:
        assert time.monotonic() < deadline, f"sent count stayed at {floor}"
        page.wait_for_timeout(100)


def test_login_logout_and_redirect_when_logged_out(page: Page, server: Server) -> None:
    page.goto(server.base + "/admin/queues/jobs?state=completed")
    expect(page).to_have_url(re.compile(r"/admin/login\?next=/admin/queues/jobs"))
    expect(page.get_by_test_id("simulator-banner")).to_contain_text("no real WhatsApp messages")
    shoot(page, "login")
    page.get_by_label("API key").fill("not-the-key-0123456789")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(server.base + "/admin/queues/jobs?state=completed")
    cookie = next(c for c in page.context.cookies() if c["name"] == "waqtor_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/admin"
    assert KEY not in cookie["value"] and KEY not in page.url
    page.get_by_role("button", name="Log out", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("You are logged out")
    page.goto(server.base + "/admin/queues")
    expect(page).to_have_url(re.compile(r"/admin/login"))


def test_a_post_without_csrf_token_is_rejected(page: Page, server: Server) -> None:
    login(page, server.base)
    assert page.locator("form[action='/admin/queues/pause'] input[name=csrf]").count() == 1
    resp = page.request.post(server.base + "/admin/queues/pause", form={"grace": "1"})
    assert resp.status == 403 and "CSRF" in resp.text()
    forged = page.request.post(server.base + "/admin/queues/pause", form={"csrf": "forged"})
    assert forged.status == 403
    health = server.api("GET", "/api/queue/health")
    assert health["data"]["queue"]["paused"] is False


def _csv(n: int) -> bytes:
    lines = ["phone,name,order"]
    lines += [f"9665{1000 + i:08d},Customer {i},A-{i}" for i in range(n)]
    lines += ["12345,Broken,X", f"9665{1000:08d},Again,Y"]  # one invalid, one duplicate
    return ("\n".join(lines) + "\n").encode()


def test_compose_preview_send_and_watch_progress_live(page: Page, server: Server) -> None:
    server.api("POST", "/api/accounts/default/suppressions", json={"phones": ["966500001040"]})
    login(page, server.base)
    page.get_by_role("link", name="Compose").click()
    page.get_by_label("upload a CSV file").set_input_files(
        files=[{"name": "customers.csv", "mimeType": "text/csv", "buffer": _csv(41)}]
    )
    page.get_by_label("Message").fill("Hello {name}, order {order} is ready")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_test_id("preview-total")).to_have_text("40")
    expect(page.get_by_test_id("preview-invalid")).to_have_text("1")
    expect(page.get_by_test_id("preview-duplicates")).to_have_text("1")
    expect(page.get_by_test_id("preview-suppressed")).to_have_text("1")
    expect(page.get_by_test_id("preview")).to_contain_text("Hello Customer 0, order A-0 is ready")
    shoot(page, "compose")
    page.get_by_role("button", name="Send to 40 recipient(s)").click()
    page.wait_for_url(re.compile(r"/admin/queues/jobs/[0-9a-f]+$"))
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("[data-live]")).to_have_attribute("data-state", "open")
    seen = [percent(page)]
    deadline = time.monotonic() + 40
    while seen[-1] < 100 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
        if (now := percent(page)) != seen[-1]:
            seen.append(now)
    assert seen[-1] == 100, f"progress stopped at {seen}"
    assert any(0 < p < 100 for p in seen), f"no intermediate progress seen: {seen}"
    assert seen == sorted(seen)
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    expect(page.get_by_test_id("campaign-state")).to_have_text("completed")
    expect(page.get_by_role("button", name="Remove")).to_be_visible()  # actions followed live
    expect(page.get_by_test_id("count-sent")).to_contain_text("40")
    expect(page.locator("#recipients .badge.status-sent")).to_have_count(40)  # table followed
    shoot(page, "campaign")
    shoot(page, "campaign", phone=True)


def test_pause_resume_and_cancel(page: Page, server: Server) -> None:
    first = server.send(80, 2000)
    second = server.send(80, 3000)
    login(page, server.base)
    page.goto(f"{server.base}/admin/queues/jobs/{first}")
    wait_sent_over(page, 0)
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status")).to_contain_text("Campaign paused")
    expect(page.get_by_test_id("campaign-state")).to_have_text("paused")
    expect(page.locator("#progress")).to_contain_text("Paused by an operator")
    held = server.job(first)["recipients"]["sent"]
    time.sleep(0.8)
    assert server.job(first)["recipients"]["sent"] == held, "a paused campaign kept sending"
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_contain_text("Campaign resumed")
    wait_sent_over(page, held)  # live, no reload
    page.goto(f"{server.base}/admin/queues/jobs/{second}")
    questions: list[str] = []
    page.once("dialog", lambda dialog: questions.append(dialog.message))
    page.get_by_role("button", name="Cancel campaign").click()
    expect(page.get_by_role("status")).to_contain_text("Campaign canceled")
    assert questions and "never be sent" in questions[0]
    expect(page.get_by_test_id("campaign-state")).to_have_text("canceled")
    canceled = int(page.get_by_test_id("count-canceled").locator(".n").inner_text())
    assert canceled > 0 and server.job(second)["recipients"]["canceled"] == canceled
    server.api("POST", f"/api/queue/jobs/{first}/cancel")  # free the account for the next test


def test_filter_recipients_by_status_and_search_by_phone(page: Page, server: Server) -> None:
    server.faults({"+966500004003": "permanent", "+966500004011": "permanent"})
    job_id = server.send(20, 4000)
    deadline = time.monotonic() + 30
    while server.job(job_id)["status"] != "completed" and time.monotonic() < deadline:
        time.sleep(0.1)
    server.faults({})
    login(page, server.base)
    page.goto(f"{server.base}/admin/queues/jobs/{job_id}")
    rows = page.locator("#recipients tbody tr")
    expect(rows).to_have_count(20)
    page.get_by_label("Status", exact=True).select_option("failed")
    expect(rows).to_have_count(2)
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(rows.first).to_contain_text("sim_invalid_recipient")
    expect(rows.first).to_contain_text("not on WhatsApp")
    expect(rows.first).to_contain_text("+9665*****003")
    page.get_by_label("Phone contains").fill("500004011")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("+9665*****011")
    page.get_by_label("Show full numbers").check()
    expect(rows.first).to_contain_text("+966500004011")
    page.goto(f"{server.base}/admin/queues/jobs")
    page.get_by_label("Find a job").fill("+966 50 000 4011")
    page.get_by_label("Find a job").press("Enter")
    expect(page.locator(f"a[href^='/admin/queues/jobs/{job_id}?q=']")).to_be_visible()
    shoot(page, "jobs-search")


def test_read_only_key_cannot_act(page: Page, server: Server) -> None:
    job_id = server.send(30, 5000)
    login(page, server.base, READ_KEY)
    expect(page.locator(".role")).to_have_text("read-only")
    expect(page.get_by_role("button", name="Pause queue")).to_have_count(0)
    page.goto(f"{server.base}/admin/queues/jobs/{job_id}")
    expect(page.get_by_test_id("readonly-note")).to_be_visible()
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel campaign")).to_have_count(0)
    shoot(page, "campaign-readonly")
    token = csrf_of(page)
    url = f"{server.base}/admin/queues/jobs/{job_id}/cancel"
    resp = page.request.post(url, form={"csrf": token})
    assert resp.status == 403 and "read-only" in resp.text()
    assert server.job(job_id)["recipients"]["canceled"] == 0


def test_live_updates_reconnect_after_a_server_restart(
    page: Page, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The page stays open while ``serve`` stops and starts again: it reconnects by itself."""
    own = Server(tmp_path, redis_server.url).start()
    try:
        login(page, own.base)
        live = page.locator("[data-live]")
        expect(live).to_have_attribute("data-state", "open")
        page.evaluate("window.__sameDocument = true")
        started = time.monotonic()
        own.stop()  # an open stream must not hold up the shutdown
        assert time.monotonic() - started < 10
        expect(live).to_have_attribute("data-state", "error")
        own.start()
        expect(live).to_have_attribute("data-state", "open", timeout=30_000)
        done = page.get_by_test_id("jobs-completed").locator(".n")
        before = int(done.inner_text().replace(",", ""))
        own.send(12, 6000)
        expect(done).to_have_text(f"{before + 1:,}")  # pushed over the new stream
        assert page.evaluate("window.__sameDocument") is True
    finally:
        own.stop()


def test_every_page_in_light_and_dark_and_phone_width(page: Page, server: Server) -> None:
    login(page, server.base)
    expect(page.locator("[data-live]")).to_have_attribute("data-state", "open")
    expect(page.get_by_test_id("jobs-completed")).not_to_contain_text(re.compile(r"^\s*0\b"))
    page.wait_for_timeout(1200)  # a live tick or two: the chart and heartbeats are drawn
    paths: list[Path] = shoot(page, "overview")
    paths += shoot(page, "overview", phone=True)
    pages: dict[str, Any] = {
        "jobs": "/admin/queues/jobs?state=completed",
        "outbox": "/admin/queues/outbox",
        "compose-empty": "/admin/queues/compose",
        "accounts": "/admin/queues/accounts",
    }
    for name, path in pages.items():
        page.goto(server.base + path)
        expect(page.get_by_test_id("simulator-banner")).to_be_visible()
        paths += shoot(page, name)
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_accounts_page_manages_accounts_and_read_only_sees_it(page: Page, server: Server) -> None:
    login(page, server.base)
    page.get_by_role("link", name="Accounts").click()
    expect(page.get_by_test_id("accounts-table")).to_contain_text("default")
    page.get_by_label("Name").fill("shop-web")
    page.get_by_label("Provider").select_option("simulator")
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(f"{server.base}/admin/queues/accounts/shop-web")
    expect(page.get_by_role("status")).to_contain_text("Account shop-web created")
    page.get_by_label("Hourly cap").fill("12")
    page.get_by_label("Delay (ms)").fill("1500")
    page.get_by_label("Jitter").fill("1")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("saved")
    got = server.api("GET", "/api/accounts/shop-web")["data"]
    assert (got["hourlyCap"], got["delayMs"], got["jitter"]) == (12, 1500, 1.0)
    page.get_by_role("button", name="Pause account").click()
    expect(page.get_by_test_id("account-state")).to_contain_text("paused")
    page.get_by_role("button", name="Resume account").click()
    expect(page.get_by_test_id("account-state")).to_contain_text("sending")
    expect(page.get_by_test_id("breaker-history")).to_contain_text("resumed")
    page.get_by_label("Add numbers, one per line").fill("+966501234567")
    page.get_by_label("import a CSV file").set_input_files(
        files=[{"name": "optouts.csv", "mimeType": "text/csv", "buffer": b"phone\n966507654321\n"}]
    )
    page.get_by_role("button", name="Add to the suppression list").click()
    expect(page.get_by_test_id("suppressions")).to_contain_text("+966507654321")
    page.get_by_role("button", name="Remove +966507654321").click()
    expect(page.get_by_test_id("suppressions")).not_to_contain_text("+966507654321")
    shoot(page, "account")
    page.goto(f"{server.base}/admin/queues/accounts")
    shoot(page, "accounts", phone=True)
    # A read-only key: everything visible, nothing to press, POSTs refused.
    page.get_by_role("button", name="Log out", exact=True).click()
    login(page, server.base, READ_KEY)
    page.goto(f"{server.base}/admin/queues/accounts/shop-web")
    expect(page.get_by_test_id("readonly-note")).to_be_visible()
    expect(page.get_by_role("button", name="Pause account")).to_have_count(0)
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    shoot(page, "account-readonly")
    token = csrf_of(page)
    resp = page.request.post(
        f"{server.base}/admin/queues/accounts/shop-web/pause", form={"csrf": token}
    )
    assert resp.status == 403 and "read-only" in resp.text()
    assert server.api("GET", "/api/accounts/shop-web")["data"]["paused"] is False
