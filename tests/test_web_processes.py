"""WhatsApp Web across real processes (our adapter faked in each, ``tests/web_main``): the
command-line login, and one live connection per account across workers, taken over after a
SIGKILL without a duplicate."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tests.conftest import KEY, env_for
from tests.fake_web import pair_file, sent_log
from waqtor.domain.accounts import Account
from waqtor.store.keys import Keys


def _env(redis_url: str, data: Path, **extra: object) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "API_KEY")}
    env.update(
        env_for(
            redis_url=redis_url,
            api_key=KEY,
            waqtor_data_dir=data,
            web_min_gap_ms=100,
            web_lease_ms=1500,
            **extra,
        )
    )
    return env


def _run(
    args: list[str], env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.web_main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).parent.parent,
    )


async def _add(r: aioredis.Redis, name: str) -> None:
    # Caps out of the way: the new tier's 20 an hour (10 new contacts a day) would hold it.
    account = Account(
        name=name,
        provider="web",
        delayMs=0,
        hourlyCap=1000,
        dailyCap=1000,
        newContactsDailyCap=1000,
    )
    await r.hset(Keys().accounts, name, account.model_dump_json())


async def test_login_from_the_terminal_and_refusal_while_held(
    redis_url: str, tmp_path: Path, r: aioredis.Redis
) -> None:
    data = tmp_path / "data"
    await _add(r, "cli1")
    env = _env(redis_url, data, fake_web_autoscan_s=0.5)
    done = await asyncio.to_thread(_run, ["web", "login", "cli1", "--timeout", "20"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ("Scan with WhatsApp" in done.stdout and "█" in done.stdout) or "▀" in done.stdout
    assert "linked +966500009999" in done.stdout
    assert (data / "web" / "cli1.db").read_bytes().startswith(b"fake-paired:")
    assert await r.get(Keys().web_lease("cli1")) is None  # handed back
    # Someone else holds it: refused, naming the holder.
    await r.set(Keys().web_lease("cli1"), "otherhost:4242:abc", px=10_000)
    refused = await asyncio.to_thread(_run, ["web", "login", "cli1"], env)
    assert refused.returncode == 1 and "otherhost:4242:abc" in refused.stderr


async def test_one_connection_across_workers_and_takeover_after_sigkill(
    redis_url: str, tmp_path: Path, r: aioredis.Redis
) -> None:
    data = tmp_path / "data"
    pair_file(data / "web" / "lw.db")
    await _add(r, "lw")
    env = _env(redis_url, data, max_retries=20)
    logs = [tmp_path / f"w{i}.log" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.web_main", "worker"],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).parent.parent,
        )
        for log in logs
    ]
    try:
        deadline = time.monotonic() + 20
        holder = None
        while time.monotonic() < deadline and holder is None:
            holder = await r.get(Keys().web_lease("lw"))
            await asyncio.sleep(0.1)
        assert holder, "no worker took the account"
        pid = int(str(holder).split(":")[1])
        assert pid in [p.pid for p in procs]
        await asyncio.sleep(1.0)
        assert await r.get(Keys().web_lease("lw")) == holder  # renewed, never shared
        # A campaign through the API of neither worker: a third process relays to the holder.
        from tests.conftest import App, make_settings

        settings = make_settings(
            redis_url, tmp_path, instant_threshold=0, web_min_gap_ms=100, web_lease_ms=1500
        )
        async with App(settings, run_worker=False) as app:
            phones = [f"96650{i:07d}" for i in range(40)]
            resp = await app.post(
                "/api/messages/send-bulk",
                json={
                    "account": "lw",
                    "recipients": [{"phone": p, "message": "Hi"} for p in phones],
                },
            )
            job_id = resp.json()["data"]["jobId"]
            while len(sent_log(data / "web")) < 8:
                await asyncio.sleep(0.05)
            victim = next(p for p in procs if p.pid == pid)
            victim.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            victim.wait()
            deadline = time.monotonic() + 60
            new_holder = None
            while time.monotonic() < deadline:
                new_holder = await r.get(Keys().web_lease("lw"))
                if new_holder and new_holder != holder:
                    break
                await asyncio.sleep(0.1)
            assert new_holder and new_holder != holder, "nobody took the account over"
            # Within the lease (1.5 s) and one round of the survivor (a third of it), plus
            # slack for a loaded machine.
            assert time.monotonic() - killed < 1.5 + 0.5 + 3.0
            deadline = time.monotonic() + 60
            job: dict[str, Any] = {}
            while time.monotonic() < deadline:
                job = (await app.get(f"/api/queue/jobs/{job_id}")).json()["data"]
                if job["status"] == "completed":
                    break
                await asyncio.sleep(0.2)
            logs_text = "\n".join(log.read_text()[-3000:] for log in logs)
            assert job["status"] == "completed", (json.dumps(job)[:2500], logs_text)
        counts = job["recipients"]
        # A kill between the send and its record leaves that one recipient unknown.
        assert counts["sent"] + counts["unknown"] == 40 and counts["unknown"] <= 1, counts
        sent = sent_log(data / "web")
        duplicates = [p for p, n in Counter(m["phone"] for m in sent).items() if n > 1]
        assert duplicates == []
        assert {m["pid"] for m in sent} == {pid, int(str(new_holder).split(":")[1])}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=20)
