"""The WhatsApp Web pairing page in a real browser (Debian's Chromium) against a real
``waqtor serve`` whose WhatsApp Web adapter is faked (``tests/web_main``): the QR code appears,
follows the session to "connected" when the phone scans it, and a pairing code can be asked
for instead. Screenshots go to ``test-artifacts/dashboard/`` (copied into docs/)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import HEADERS, KEY, RedisServer, env_for, free_port, wait_http
from tests.dashboard_browser import CHROMIUM, CHROMIUM_ARGS, DESKTOP, login, shoot, skip_reason

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

if skip_reason() is None:
    from playwright.sync_api import Page, expect, sync_playwright

    expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def base(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    redis.Redis.from_url(redis_server.url).flushall()
    tmp = tmp_path_factory.mktemp("webserve")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "API_KEY")}
    env.update(env_for(web_min_gap_ms=100, web_lease_ms=1500))
    env.update(
        {
            "API_KEY": KEY,
            "REDIS_URL": redis_server.url,
            "WAQTOR_DATA_DIR": str(tmp / "data"),
            "FAKE_WEB_AUTOSCAN_S": "7",  # the phone scans the first QR code after 7 s
        }
    )
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.web_main", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def page(base: str) -> Iterator[Page]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(
            viewport={"width": DESKTOP["width"], "height": DESKTOP["height"]}, color_scheme="light"
        )
        yield context.new_page()
        context.close()
        browser.close()


def _account(base: str, name: str) -> None:
    resp = httpx.post(
        base + "/api/accounts", headers=HEADERS, json={"name": name, "provider": "web"}, timeout=10
    )
    assert resp.status_code == 201, resp.text


def test_pairing_by_qr_code_in_the_dashboard(page: Page, base: str) -> None:
    _account(base, "shop")
    login(page, base)
    page.goto(base + "/admin/queues/accounts/shop/web")
    expect(page.get_by_test_id("web-state")).to_have_text("not paired")
    page.get_by_role("button", name="Show a QR code").click()
    qr = page.get_by_test_id("web-qr")
    expect(qr).to_be_visible()
    assert (qr.get_attribute("src") or "").startswith("data:image/svg+xml;base64,")
    shoot(page, "web-pairing-qr")
    # The phone scans it: the page follows the session by itself.
    expect(page.get_by_test_id("web-state")).to_have_text("connected")
    expect(page.get_by_text("+966500009999")).to_be_visible()
    expect(page.get_by_test_id("web-qr")).to_have_count(0)
    shoot(page, "web-pairing-connected")
    # The Accounts page lists it with its session, and leads back to the pairing page.
    page.goto(base + "/admin/queues/accounts/shop")
    page.get_by_role("link", name=re.compile("pair or re-pair")).click()
    expect(page.get_by_test_id("web-state")).to_have_text("connected")


def test_pairing_code_instead_of_a_qr_code(page: Page, base: str) -> None:
    _account(base, "shop2")
    login(page, base)
    page.goto(base + "/admin/queues/accounts/shop2/web")
    page.get_by_label("Phone number").fill("966501234567")
    page.get_by_role("button", name="Get a pairing code").click()
    expect(page.get_by_test_id("web-code")).to_have_text("WQTR-4567")
    shoot(page, "web-pairing-code")
    page.goto(base + "/admin/queues/accounts/nope/web")
    expect(page.get_by_text("No WhatsApp Web account named nope")).to_be_visible()
