"""A ``waqtor worker`` whose Redis goes away says so at once, says when it is back, and stops
within 2 s of SIGTERM while Redis is away."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.conftest import Proc, RedisServer, env_for


def _wait_for(log: Path, text: str, timeout: float, times: int = 1) -> float:
    """Seconds until ``text`` appears in the log (the ``times``-th time)."""
    started = time.monotonic()
    while log.read_text().count(text) < times:
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{text!r} not logged within {timeout} s:\n{log.read_text()}")
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_worker_reports_a_redis_outage_and_stops_fast(tmp_path: Path) -> None:
    server = RedisServer()
    server.start()
    log = tmp_path / "worker.log"
    worker = Proc(["worker"], {**env_for(), "REDIS_URL": server.url}, log).start()
    try:
        _wait_for(log, "started", 20)
        server.stop(signal.SIGKILL)
        assert _wait_for(log, "is unreachable", 5) < 2.0
        port = server.port
        server.start()
        assert server.port == port, "Redis came back on another port"
        _wait_for(log, "is back after", 5)
        server.stop(signal.SIGKILL)
        _wait_for(log, "is unreachable", 5, times=2)
        time.sleep(1.0)  # the worker's patient clients are busy retrying by now
        asked = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = worker.wait(timeout=10)
        took = time.monotonic() - asked
        assert code == 0 and took < 2.0, f"stopped in {took:.2f} s (exit {code})"
    finally:
        worker.stop()
        server.cleanup()
