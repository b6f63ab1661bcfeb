"""Browser-test support: a real ``waqtor serve``, Debian's Chromium driven by Playwright, and
screenshots in light and dark under ``test-artifacts/dashboard/``.

Never ``playwright install``: the browser is the system's ``/usr/bin/chromium``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import HEADERS, KEY, Proc, env_for, free_port, wait_http
from tests.dashboard_support import READ_KEY

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "dashboard"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -e '.[test]'"
    if shutil.which(str(CHROMIUM)) is None:
        return f"no Chromium at {CHROMIUM}: apt-get install chromium (scripts/test.sh does this)"
    return None


class Server:
    """``waqtor serve`` on a free port, paced at ``message_delay`` ms, with an admin and a
    read-only key."""

    def __init__(self, tmp: Path, redis_url: str, message_delay: int = 100) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **env_for(message_delay=message_delay, message_jitter=0),
            "API_KEY": KEY,
            "READONLY_API_KEY": READ_KEY,
            "REDIS_URL": redis_url,
            "WAQTOR_DATA_DIR": str(tmp / "data"),
        }
        self.proc = Proc(["serve", "--port", str(self.port)], env, tmp / "serve.log")

    def start(self) -> Server:
        self.proc.start()
        wait_http(self.base + "/health")
        return self

    def stop(self) -> None:
        self.proc.stop()

    def api(self, method: str, path: str, **kw: Any) -> Any:
        resp = httpx.request(method, self.base + path, headers=HEADERS, timeout=30, **kw)
        assert resp.status_code < 400, resp.text
        return resp.json()

    def send(self, n: int, start: int, message: str = "Hello {name}") -> str:
        people = [{"phone": f"9665{start + i:08d}", "name": f"Person {i}"} for i in range(n)]
        body = {"recipients": people, "message": message}
        job_id: str = self.api("POST", "/api/messages/send-bulk", json=body)["data"]["jobId"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.api("GET", f"/api/queue/jobs/{job_id}")["data"]
        return data

    def faults(self, phones: dict[str, str]) -> None:
        self.api("PUT", "/api/simulator/faults", json={"phones": phones})


def login(page: Any, base: str, key: str = KEY) -> None:
    page.goto(base + "/admin/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base + "/admin/queues")


def csrf_of(page: Any) -> str:
    token: str = json.loads(page.get_attribute("body", "hx-headers"))["X-CSRF-Token"]
    return token


def shoot(page: Any, name: str, *, phone: bool = False) -> list[Path]:
    """Full-page screenshots of the current page in light and dark mode."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if phone:
        page.set_viewport_size(PHONE)
    paths = []
    try:
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            path = ARTIFACTS / f"{name}{'-phone' if phone else ''}-{scheme}.png"
            page.screenshot(path=str(path), full_page=True)
            paths.append(path)
    finally:
        page.emulate_media(color_scheme="light")
        if phone:
            page.set_viewport_size(DESKTOP)
    return paths
