"""The redis-server that ``serve`` starts and supervises when no REDIS_URL is given.

AOF on (``appendfsync everysec`` by default: at most about one second of writes can be lost
in a power cut; ``always`` closes that window), ``noeviction`` so queued work is never dropped
to make room, and a Unix socket in the data directory so no port is taken.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import shutil
import signal
import subprocess
import time

from waqtor.config import Settings
from waqtor.store.server import ping_socket

log = logging.getLogger("waqtor.redis")

_PR_SET_PDEATHSIG = 1


class RedisServerError(Exception):
    pass


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if serve dies (even by SIGKILL), so it flushes and exits."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class BundledRedis:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.data_dir.resolve() / "redis"
        self.socket = settings.bundled_socket
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _ping(self) -> bool:
        return ping_socket(self.socket)

    def _command(self) -> list[str]:
        binary = shutil.which(self.settings.redis_server_bin)
        if binary is None:
            raise RedisServerError(
                "redis-server not found on PATH. Install it (Debian/Ubuntu: "
                "sudo apt-get install -y redis-server; macOS: brew install redis) "
                "or set REDIS_URL to a running server."
            )
        return [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.settings.redis_appendfsync,
            "--maxmemory-policy",
            "noeviction",
            "--save",
            "",
            "--logfile",
            str(self.dir / "redis.log"),
        ]

    def start(self, timeout_s: float = 15.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.socket.exists() and self._ping():
            # A redis-server from an earlier run still holds the socket: its data is ours.
            log.info("using the redis-server already running at %s", self.socket)
            return
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            self._command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RedisServerError(
                    f"redis-server exited with code {self.proc.returncode}; "
                    f"see {self.dir / 'redis.log'}"
                )
            if self.socket.exists() and self._ping():
                log.info("started redis-server (pid %d) at %s", self.proc.pid, self.socket)
                return
            time.sleep(0.05)
        raise RedisServerError("redis-server did not answer in time")

    async def supervise(self) -> None:
        """Restart the child if it dies while serve is running."""
        while not self._stopping:
            await asyncio.sleep(0.5)
            if self.proc is not None and self.proc.poll() is not None and not self._stopping:
                log.error("redis-server exited (code %s); restarting", self.proc.returncode)
                try:
                    await asyncio.to_thread(self.start)
                except RedisServerError as exc:
                    log.error("could not restart redis-server: %s", exc)

    def stop(self) -> None:
        self._stopping = True
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
