"""tests/timeout_tasks.py: a test stuck in an async fixture's teardown has its tasks printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STUCK = """
import asyncio

import pytest


async def parked_forever() -> None:
    await asyncio.Event().wait()


async def closing() -> None:
    await asyncio.ensure_future(parked_forever())


@pytest.fixture
async def app():
    yield
    await closing()


async def test_passes(app) -> None:
    pass
"""


def test_a_timeout_prints_the_awaits_of_every_task(tmp_path: Path) -> None:
    (tmp_path / "test_stuck.py").write_text(STUCK)
    (tmp_path / "conftest.py").write_text(
        "from tests.timeout_tasks import (\n"
        "    pytest_timeout_cancel_timer as pytest_timeout_cancel_timer,\n"
        "    pytest_timeout_set_timer as pytest_timeout_set_timer,\n"
        ")\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "timeout=3",
            "--rootdir",
            str(tmp_path),
            "-c",
            "/dev/null",
            "-o",
            "asyncio_mode=auto",
            str(tmp_path / "test_stuck.py"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    out = done.stdout
    assert "Timeout (>3.0s) from pytest-timeout" in out, out[-3000:]
    assert "asyncio tasks of" in out, out[-3000:]
    # The teardown's own frames (an async generator) and the task it waits for, by line.
    assert "in closing\n    await asyncio.ensure_future(parked_forever())" in out, out[-3000:]
    assert "in parked_forever\n    await asyncio.Event().wait()" in out, out[-3000:]
