"""Real ``python -m waqtor serve --no-worker`` and ``python -m waqtor worker`` processes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import redis

from bench._procs import Child, clean_env, free_port, wait_http, wait_until

API_KEY = "bench-key-0123456789abcdef"
HEADERS = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
TEMPLATE = "Hi {name}"

#: Settings for every benchmark: no pacing, so the engine itself is measured.
FAST = {"MESSAGE_DELAY": "0", "MESSAGE_JITTER": "0", "LOG_LEVEL": "WARNING"}


def recipients(n: int, start: int = 0) -> list[dict[str, str]]:
    """``n`` distinct valid Saudi mobiles, each with a name."""
    return [{"phone": f"9665{start + i:08d}", "name": f"Person {start + i}"} for i in range(n)]


def bulk_body(n: int, start: int = 0, *, seed_shape: bool = False) -> bytes:
    """The send-bulk request body, serialised once so clients time only the request.
    ``seed_shape``: as the seed's clients send it, a ``message`` on every recipient and no
    template."""
    if seed_shape:
        rows = [
            {"phone": f"9665{start + i:08d}", "message": f"Hi Person {start + i}, your order"}
            for i in range(n)
        ]
        return json.dumps({"recipients": rows}, separators=(",", ":")).encode()
    body = {"recipients": recipients(n, start), "message": TEMPLATE}
    return json.dumps(body, separators=(",", ":")).encode()


class Waqtor:
    """An API process (no worker) and any number of worker processes on one Redis."""

    def __init__(self, redis_url: str, tmp: Path, **settings: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = clean_env(
            REDIS_URL=redis_url,
            API_KEY=API_KEY,
            WAQTOR_DATA_DIR=str(tmp / "data"),
            **{**FAST, **settings},
        )
        self.serve: Child | None = None
        self.workers: list[Child] = []
        self.http = httpx.Client(base_url=self.base, headers=HEADERS, timeout=120)

    def _spawn(self, args: list[str], log: str) -> Child:
        # cwd is the temp dir so a developer's .env does not change the figures.
        return Child(
            [sys.executable, "-m", "waqtor", *args], self.tmp / log, env=self.env, cwd=self.tmp
        )

    def __enter__(self) -> Waqtor:
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.serve = self._spawn(["serve", "--no-worker", "--port", str(self.port)], "serve.log")
        wait_http(self.base + "/health", self.serve)
        return self

    def start_workers(self, n: int, r: redis.Redis) -> None:
        """Start ``n`` worker processes and wait until each has announced itself."""
        first = len(self.workers)
        for i in range(n):
            self.workers.append(self._spawn(["worker"], f"worker{first + i}.log"))
        want = len(self.workers)

        def ready() -> bool | None:
            for w in self.workers:
                if not w.alive():
                    raise RuntimeError(f"worker exited at start:\n{w.tail()}")
            return True if r.hlen("wq:workers") >= want else None

        wait_until(f"{want} worker heartbeat(s)", ready, 30, 0.05)
        time.sleep(0.5)  # let each worker's bullmq loop reach its blocking wait for jobs

    def send_bulk(self, body: bytes) -> tuple[float, dict[str, Any]]:
        """POST send-bulk; returns (seconds to the response, the response's data)."""
        started = time.perf_counter()
        resp = self.http.post("/api/messages/send-bulk", content=body)
        elapsed = time.perf_counter() - started
        if resp.status_code != 200:
            raise RuntimeError(f"send-bulk answered {resp.status_code}: {resp.text[:300]}")
        data: dict[str, Any] = resp.json()["data"]
        return elapsed, data

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.http.close()
        for child in [*self.workers, self.serve]:
            if child is not None:
                child.stop()
