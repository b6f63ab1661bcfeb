"""A throwaway redis-server for one benchmark part, and the figures read from it."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from bench._procs import Child, free_port, run, wait_until


class RedisServer:
    """``redis-server`` on a free loopback port in a temp dir: no persistence, ``noeviction``."""

    def __init__(self, parent: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="redis-", dir=parent))
        self.port = free_port()
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=30)

    def __enter__(self) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.dir), "--save", "", "--appendonly", "no"]
        args += ["--maxmemory-policy", "noeviction"]
        self.child = Child(args, self.dir / "redis.log", cwd=self.dir)
        probe = self.client()

        def ping() -> bool | None:
            try:
                return True if probe.ping() else None
            except redis.RedisError:
                if not self.child or not self.child.alive():
                    raise RuntimeError("redis-server exited at start") from None
                return None

        try:
            wait_until("redis-server", ping, 10, 0.05)
        finally:
            probe.close()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.child is not None:
            self.child.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def used_memory(client: redis.Redis) -> int:
    info: dict[str, Any] = client.info("memory")
    return int(info["used_memory"])


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command since start (INFO commandstats), including calls made inside Lua."""
    info: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in info.items()}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    out = {name: calls - before.get(name, 0) for name, calls in after.items()}
    return {name: n for name, n in sorted(out.items(), key=lambda kv: -kv[1]) if n}


def cpu_seconds(client: redis.Redis) -> float:
    """CPU time the server has used (INFO cpu: user + system, main thread and children)."""
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def version(client: redis.Redis) -> str:
    info: dict[str, Any] = client.info("server")
    return str(info["redis_version"])


_RPS = re.compile(r"^(\w+): ([\d.]+) requests per second", re.MULTILINE)


def benchmark_ops(port: int, cwd: Path) -> dict[str, float]:
    """``redis-benchmark -q -n 200000 -t set,get`` against our server: ops/s per command."""
    out = run(
        [
            "redis-benchmark",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-q",
            "-n",
            "200000",
            "-t",
            "set,get",
        ],
        timeout_s=120,
        cwd=cwd,
    )
    found = {name.lower(): float(rps) for name, rps in _RPS.findall(out.replace("\r", "\n"))}
    if not {"set", "get"} <= found.keys():
        raise RuntimeError(f"could not read redis-benchmark's output: {out[-500:]!r}")
    return found
