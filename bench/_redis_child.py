"""A throwaway ``redis-server`` child on a free loopback port, in a folder of its own.

Used by the chaos harness and the test suite (which also restart and kill it).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisChild:
    def __init__(
        self,
        folder: Path,
        *,
        appendonly: bool = True,
        fsync: str = "everysec",
        extra: list[str] | None = None,
    ) -> None:
        self.dir = folder
        self.port = free_port()
        self.appendonly = appendonly
        self.fsync = fsync
        #: More redis-server options (``--replicaof``, ``--cluster-enabled`` ...).
        self.extra = list(extra or [])
        #: The ``--requirepass`` among them, for this class's own probe.
        self.password = next(
            (b for a, b in zip(self.extra, self.extra[1:], strict=False) if a == "--requirepass"),
            None,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        for _ in range(5):
            if self._start():
                return
            self.port = free_port()  # another process took the port first: try another
        raise RuntimeError("redis-server did not start")

    def _start(self) -> bool:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.dir), "--save", "", "--maxmemory-policy", "noeviction"]
        args += ["--appendonly", "yes" if self.appendonly else "no", "--appendfsync", self.fsync]
        args += self.extra
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                client = redis.Redis(
                    port=self.port,
                    socket_timeout=0.5,
                    decode_responses=True,
                    password=self.password,
                )
                # The server on the port must be ours (the port may have been taken meanwhile).
                if client.config_get("dir").get("dir") == str(self.dir.resolve()):
                    return True
            except redis.RedisError:
                time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM by default: Redis flushes its AOF before exiting."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
