"""A real ``waqtor serve`` process on a free port with its own redis-server, for the tests of
the client, the remote CLI verbs and ``/metrics``: real HTTP, real Redis, nothing in-process."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import HEADERS, KEY, Proc, RedisServer, env_for, free_port, wait_http

METRICS_TOKEN = "metrics-token-0123456789abcdef"


class LiveService:
    def __init__(self, **env: Any) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="wq-live-"))
        self.redis = RedisServer()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = KEY
        self.env = {
            **env_for(**env),
            "API_KEY": KEY,
            "METRICS_TOKEN": METRICS_TOKEN,
            "WAQTOR_DATA_DIR": str(self.dir / "data"),
        }
        self.log = self.dir / "serve.log"
        self.proc: Proc | None = None

    def start(self) -> LiveService:
        self.redis.start()
        self.env["REDIS_URL"] = self.redis.url
        self.proc = Proc(["serve", "--port", str(self.port)], self.env, self.log).start()
        wait_http(self.url + "/health")
        return self

    def stop(self, keep_files: bool = False) -> None:
        """Stop serve and Redis; remove the service's files unless asked to keep them (the
        caller then removes ``self.dir``)."""
        if self.proc is not None:
            self.proc.stop()
        self.redis.cleanup()
        if not keep_files:
            shutil.rmtree(self.dir, ignore_errors=True)

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, headers=HEADERS, timeout=30, **kw)

    def faults(self, **body: Any) -> None:
        assert self.api("PUT", "/api/simulator/faults", json=body).status_code == 200

    def outbox(self) -> list[dict[str, Any]]:
        got = self.api("GET", "/api/simulator/messages", params={"limit": 1000}).json()
        rows: list[dict[str, Any]] = got["data"]["messages"]
        return rows

    def cli_env(self) -> dict[str, str]:
        """The environment a user's shell would have for the remote verbs."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("WAQTOR_")}
        return {**inherited, "WAQTOR_URL": self.url, "WAQTOR_API_KEY": self.key}


def write_csv(path: Path, phones: list[str], delimiter: str = ",") -> Path:
    lines = [f"phone{delimiter}name"] + [f"{p}{delimiter}Guest {i}" for i, p in enumerate(phones)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def phones(n: int, start: int) -> list[str]:
    return [f"9665{start + i:08d}" for i in range(n)]
