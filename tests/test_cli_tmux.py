"""``waqtor send --wait`` in a real terminal (tmux), reading the screen: the live bars, the
rate, why the campaign waits (an hourly cap), and Ctrl-C's question (pause or detach)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.live_service import LiveService, phones, write_csv

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


@pytest.fixture(scope="module")
def live() -> Iterator[LiveService]:
    service = LiveService(message_delay=150, message_jitter=0.0, instant_threshold=0).start()
    yield service
    service.stop()


class Terminal:
    """One tmux server of our own (its own socket), one 120x30 window."""

    def __init__(self, live: LiveService, command: list[str], cwd: Path) -> None:
        self.socket = f"wq-{uuid.uuid4().hex[:8]}"
        # The terminal's own size, as a user's shell has it (pytest's COLUMNS would not be).
        skip = {"TMUX", "COLUMNS", "LINES"}
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in live.cli_env().items() if k not in skip)
        line = f"env {env} {shlex.join(command)}; echo EXIT=$?; sleep 60"
        self._tmux("new-session", "-d", "-x", "120", "-y", "30", "-c", str(cwd), line)

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", *keys)

    def until(self, ok: Callable[[str], bool], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if ok(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"the screen never showed it:\n{screen}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def _send(live: LiveService, csv: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "waqtor", "send", str(csv), "-m", "Hi {name}", "--wait", *extra]


def test_live_bars_rate_and_exit_code(live: LiveService, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "list.csv", phones(20, 0))
    term = Terminal(live, _send(live, csv), tmp_path)
    try:
        # Mid-way: the sent bar has moved but is not full, with a rate.
        mid = term.until(lambda s: any(f" {n}/20" in s for n in range(3, 18)) and "/s" in s)
        for group in ("sent", "failed", "unknown", "not sent"):
            assert group in mid
        assert "20 recipients will be sent" in mid
        final = term.until(lambda s: "EXIT=" in s)
        assert "EXIT=0" in final and "20/20" in final and "completed" in final
    finally:
        term.close()


def test_waiting_for_the_cap_and_ctrl_c_detaches(live: LiveService, tmp_path: Path) -> None:
    body = {"name": "capped", "tier": "regular", "hourlyCap": 2, "warmup": False, "delayMs": 0}
    assert live.api("POST", "/api/accounts", json=body).is_success
    csv = write_csv(tmp_path / "list.csv", phones(5, 100))
    term = Terminal(live, _send(live, csv, "--account", "capped"), tmp_path)
    try:
        waiting = term.until(lambda s: "waiting for the hourly cap" in s)
        assert "capped" in waiting and " 2/5" in waiting
        term.keys("C-c")
        term.until(lambda s: "Pause campaign" in s and "detach" in s)
        term.keys("d", "Enter")
        final = term.until(lambda s: "EXIT=" in s)
        assert "EXIT=130" in final and "detached" in final
    finally:
        term.close()
    assert "waqtor job " in final, final
    job_id = final.split("waqtor job ")[1].split()[0]
    job = live.api("GET", f"/api/queue/jobs/{job_id}").json()["data"]
    assert job["status"] == "delayed" and job["recipients"]["sent"] == 2  # it goes on


def test_ctrl_c_can_pause_the_campaign(live: LiveService, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "list.csv", phones(60, 200))
    term = Terminal(live, _send(live, csv), tmp_path)
    try:
        term.until(lambda s: any(f" {n}/60" in s for n in range(2, 50)))
        term.keys("C-c")
        term.until(lambda s: "Pause campaign" in s)
        term.keys("p", "Enter")
        final = term.until(lambda s: "EXIT=" in s)
        assert "EXIT=130" in final and "waqtor resume" in final
    finally:
        term.close()
    job_id = final.split("waqtor resume ")[1].split()[0]
    job = live.api("GET", f"/api/queue/jobs/{job_id}").json()["data"]
    assert job["status"] == "paused" and 0 < job["recipients"]["sent"] < 60
