"""What the relay to a WhatsApp Web session's holder costs per message.

``python -m bench.web_relay [N]``: a redis-server of its own, one holder of a web account (our
adapter faked, as in the tests: no WhatsApp), and N sends (default 200, each to a new number,
so each includes the number check) made by the holder itself and by another ``Services`` that
holds nothing and relays through Redis. Prints the median and p95 of each.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench._redis_child import RedisChild
from tests.fake_web import FakeWebClient, pair_file
from waqtor.config import Settings
from waqtor.domain.accounts import Account
from waqtor.providers.base import OutgoingMessage
from waqtor.runtime.services import build


async def run(n: int, folder: Path) -> None:
    redis = RedisChild(folder / "redis", appendonly=False)
    (folder / "redis").mkdir()
    redis.start()
    settings = Settings(redis_url=redis.url, api_key="k" * 32, data_dir=folder / "data")
    holder, other = build(settings, redis.url), build(settings, redis.url)
    try:
        holder.web._factory = FakeWebClient
        pair_file(holder.web.db_path("bench"))
        account = await holder.accounts.put(Account(name="bench", provider="web"))
        await holder.web.tick()
        await holder.web.sessions["bench"].connected.wait()
        for who, services in (("holder (in process)", holder), ("another process", other)):
            provider = services.providers.get(account)
            took = []
            for i in range(n):
                message = OutgoingMessage("bench", f"+96650{i:07d}", "Hi", "c", f"{who}{i}")
                started = time.perf_counter()
                await provider.send(message)
                took.append((time.perf_counter() - started) * 1000)
            took.sort()
            p95 = took[int(len(took) * 0.95) - 1]
            print(f"{who:22s} median {statistics.median(took):.2f} ms, p95 {p95:.2f} ms")
    finally:
        await holder.close()
        await other.close()
        redis.stop()


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 200
    print(f"load average at start: {Path('/proc/loadavg').read_text().split()[:3]}")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(n, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
