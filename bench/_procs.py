"""Child processes for the benchmarks: started with a log file, stopped for sure.

Every child gets SIGTERM if the benchmark itself dies (Linux ``PR_SET_PDEATHSIG``), so a
killed run does not leave redis-server or workers behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """One child process; ``stop`` sends SIGTERM, then SIGKILL after ``grace_s``."""

    def __init__(
        self, args: list[str], log: Path, *, env: dict[str, str] | None = None, cwd: Path
    ) -> None:
        self.args = args
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                args,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace_s: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc/<pid>/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args: list[str], *, timeout_s: float, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command to completion (bounded in time); its stdout, or an error with its output."""
    done = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        preexec_fn=_die_with_parent,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args[:3])} ... exited {done.returncode}: {done.stderr[-2000:]}"
        )
    return done.stdout


def wait_until(what: str, probe: Callable[[], T | None], timeout_s: float, every_s: float) -> T:
    """Call ``probe`` until it returns something other than None; bounded by ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def wait_http(url: str, child: Child, timeout_s: float = 30.0) -> None:
    def probe() -> bool | None:
        if not child.alive():
            raise RuntimeError(f"{child.args[2:4]} exited early:\n{child.tail()}")
        try:
            return True if httpx.get(url, timeout=1.0).status_code == 200 else None
        except httpx.HTTPError:
            return None

    wait_until(url, probe, timeout_s, 0.1)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without settings that would point children elsewhere.

    Children import the same ``waqtor`` as this process (whatever checkout or snapshot that is).
    """
    import waqtor

    dropped = ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "API_KEY", "WAQTOR_DATA_DIR", "DATA_DIR")
    env = {k: v for k, v in os.environ.items() if k.upper() not in dropped}
    source = str(Path(waqtor.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([source, *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env
