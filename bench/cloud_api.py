"""The Cloud API send path against a fake Graph API run as a separate process.

    python -m bench.cloud_api [--latency-ms 50] [--mps 500] [--recipients 5000] [--runs 1]

One ``waqtor serve --no-worker`` and ONE ``waqtor worker`` process, ``CLOUD_API_MPS=500``, one
``business`` account (``delayMs`` 0) on the Cloud API, whose base URL is the fake
(``bench/fake_graph.py``): each answer after ``--latency-ms``, and Meta's ``130429`` past
``--mps`` requests a second. One campaign of 5,000 recipients, timed from just before the POST
to the last recipient's outcome in the ledger. Target: >= 90 % of ``--mps`` msg/s, with 0
``130429`` at the fake. Before it, the fake's own ceiling at the same latency (its limit off,
256 requests in flight from an aiohttp client in this process, 3 s) is measured and printed
beside it: the figure must be well under it to say anything about waqtor. Also: CPU time per
message of the worker process and of Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import httpx

from bench._context import Context, open_context
from bench._procs import Child, cpu_seconds, free_port, wait_until
from bench._redis import RedisServer
from bench._redis import cpu_seconds as redis_cpu_seconds
from bench._report import Part, Row, machine, save, table
from bench._waqtor import Waqtor
from bench.fake_graph import TOKEN
from waqtor.store.keys import Keys

NAME = "cloud_api"
NUMBER_ID = "106540352242922"
TOKEN_ENV = "WA_TOKEN_BENCH"  # accounts may name WA_TOKEN_* variables only
TARGET_SHARE = 0.9
KEYS = Keys()
TERMINAL_COUNTS = ["n:D", "n:F", "n:U", "n:C", "n:R"]


class FakeGraphProcess:
    """``python -m bench.fake_graph`` as a child process."""

    def __init__(self, ctx: Context, latency_ms: float, mps_limit: float, **hooks: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "bench.fake_graph", "--port", str(self.port)]
        args += ["--latency-ms", str(latency_ms), "--mps-limit", str(mps_limit)]
        for name, value in hooks.items():
            args += [f"--{name.replace('_', '-')}", value]
        from bench._procs import clean_env

        tmp = ctx.scratch("fake-graph")
        self.child = Child(args, tmp / "fake.log", env=clean_env(), cwd=tmp)
        self.http = httpx.Client(base_url=self.url, timeout=30)

        def up() -> bool | None:
            if not self.child.alive():
                raise RuntimeError(f"fake graph exited:\n{self.child.tail()}")
            try:
                return True if self.http.get("/_fake/stats").status_code == 200 else None
            except httpx.HTTPError:
                return None

        wait_until("fake graph", up, 15, 0.05)

    def stats(self) -> dict[str, Any]:
        found: dict[str, Any] = self.http.get("/_fake/stats").json()
        return found

    def sent(self) -> list[list[Any]]:
        found: list[list[Any]] = self.http.get("/_fake/sent").json()
        return found

    def config(self, **change: Any) -> None:
        self.http.post("/_fake/config", json=change).raise_for_status()

    def stop(self) -> None:
        self.http.close()
        self.child.stop()


def ceiling(url: str, in_flight: int = 256, seconds: float = 3.0) -> float:
    """Requests/s the fake answers with its limit off: ``in_flight`` aiohttp requests at once."""
    import aiohttp

    body = json.dumps(
        {"messaging_product": "whatsapp", "to": "966500000000", "type": "text",
         "text": {"body": "ceiling"}}
    ).encode()  # fmt: skip
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    async def load() -> float:
        done = 0
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as http:
            deadline = time.monotonic() + seconds

            async def client() -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    async with http.post(
                        f"{url}/v23.0/999/messages", data=body, headers=headers
                    ) as resp:
                        await resp.read()
                    done += 1

            started = time.monotonic()
            await asyncio.gather(*(client() for _ in range(in_flight)))
            return done / (time.monotonic() - started)

    return asyncio.run(load())


def measure(
    ctx: Context, n: int, mps: float, latency_ms: float, workers: int = 1
) -> dict[str, Any]:
    load_before = _load()
    fake = FakeGraphProcess(ctx, latency_ms, 0)
    try:
        fake_ceiling = ceiling(fake.url)
        fake.config(mpsLimit=mps, reset=True)
        with (
            RedisServer(ctx.root) as server,
            Waqtor(
                server.url,
                ctx.scratch("cloud"),
                CLOUD_API_BASE_URL=fake.url,
                CLOUD_API_MPS=str(mps),
                **{TOKEN_ENV: TOKEN},
            ) as wq,
        ):
            r = server.client()
            account = {
                "name": "cloud",
                "tier": "business",
                "warmup": False,
                "delayMs": 0,
                "provider": "cloud_api",
                "phoneNumberId": NUMBER_ID,
                "accessTokenEnv": TOKEN_ENV,
            }
            resp = wq.http.post("/api/accounts", json=account)
            if resp.status_code != 201:
                raise RuntimeError(f"account: {resp.status_code} {resp.text[:200]}")
            wq.start_workers(workers, r)
            body = json.dumps(
                {
                    "recipients": [{"phone": f"9665{i:08d}", "name": f"P{i}"} for i in range(n)],
                    "message": "Hi {name}",
                    "account": "cloud",
                },
                separators=(",", ":"),
            ).encode()
            pids = {f"worker{i}": w.pid for i, w in enumerate(wq.workers)}
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            redis0 = redis_cpu_seconds(r)
            started_ms = time.time() * 1000
            post_s, data = wq.send_bulk(body)
            cid = str(data["jobId"])

            def finished() -> bool | None:
                done = sum(int(v or 0) for v in r.hmget(KEYS.meta(cid), TERMINAL_COUNTS[:4]))
                return True if done >= n else None

            wait_until(f"{n} recipients recorded", finished, 300, 0.02)
            cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
            redis_cpu = redis_cpu_seconds(r) - redis0
            details = [json.loads(v) for v in r.hvals(KEYS.detail(cid))]
            counts = dict(
                zip(TERMINAL_COUNTS, r.hmget(KEYS.meta(cid), TERMINAL_COUNTS), strict=True)
            )
            r.close()
        last_ms = max(max(d.get(f"t{c}", 0) for c in "DFUC") for d in details)
        stats = fake.stats()
        sent = fake.sent()
    finally:
        fake.stop()
    at = sorted(row[0] for row in sent)
    busiest, lo = 0, 0  # the most arrivals in any sliding second, as the fake counts them
    for hi, t in enumerate(at):
        while t - at[lo] > 1.0:
            lo += 1
        busiest = max(busiest, hi - lo + 1)
    seconds = (last_ms - started_ms) / 1000
    per_phone: dict[str, int] = {}
    for row in sent:
        per_phone[row[1]] = per_phone.get(row[1], 0) + 1
    return {
        "n": n,
        "mps": mps,
        "latency_ms": latency_ms,
        "workers": workers,
        "seconds": seconds,
        "msgs_per_s": n / seconds,
        "fake_rate": (len(at) - 1) / (at[-1] - at[0]) if len(at) > 1 else 0.0,
        "post_s": post_s,
        "fake_ceiling": fake_ceiling,
        "fake": stats,
        "throttled": int(stats["rejected"].get("130429", 0)),
        "busiest_second": busiest,
        "duplicates": sum(c - 1 for c in per_phone.values()),
        "ledger": counts,
        "cpu_us_per_msg": {k: v * 1e6 / n for k, v in cpu.items()} | {"redis": redis_cpu * 1e6 / n},
        "load_before": load_before,
        "load_after": _load(),
    }


def _load() -> float:
    import os

    return round(os.getloadavg()[0], 2)


def run(ctx: Context, runs: int = 1, **kw: Any) -> Part:
    n = kw.get("n", 5000)
    mps = kw.get("mps", 500.0)
    latency = kw.get("latency_ms", 50.0)
    results = [measure(ctx, n, mps, latency) for _ in range(runs)]
    pick = sorted(results, key=lambda x: x["msgs_per_s"])[len(results) // 2]
    part = Part(NAME, data={"runs": results})
    share = pick["msgs_per_s"] / mps
    cpu = pick["cpu_us_per_msg"]
    clean = pick["duplicates"] == 0 and pick["ledger"]["n:D"] == str(n)
    label = f"{n:,} recipients, {latency:g} ms latency"
    part.rows += [
        Row(NAME, f"msg/s, {label}, 1 worker", pick["msgs_per_s"], "msg/s",
            note=f"CLOUD_API_MPS={mps:g}; at the fake {pick['fake_rate']:,.0f}/s"
            + ("" if clean else "; NOT ALL SENT EXACTLY ONCE")),
        Row(NAME, "share of CLOUD_API_MPS", share * 100, "%", target=">= 90 %",
            met=share >= TARGET_SHARE),
        Row(NAME, "130429 answers at the fake", pick["throttled"], "", target="0",
            met=pick["throttled"] == 0),
        Row(NAME, f"the fake's own ceiling, {latency:g} ms, 256 in flight",
            pick["fake_ceiling"], "req/s"),
        Row(NAME, "worker CPU per message", cpu["worker0"], "µs"),
        Row(NAME, "Redis CPU per message", cpu["redis"], "µs"),
    ]  # fmt: skip
    if runs > 1:
        part.data["median_msgs_per_s"] = statistics.median(r["msgs_per_s"] for r in results)
    return part


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cloud_api", description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--mps", type=float, default=500.0)
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    with open_context() as ctx:
        part = run(ctx, args.runs, n=args.recipients, mps=args.mps, latency_ms=args.latency_ms)
        info = machine(ctx.redis_version)
        print(table(part.rows))
        for i, res in enumerate(part.data["runs"]):
            print(
                f"run {i + 1}: {res['msgs_per_s']:,.0f} msg/s, 130429={res['throttled']}, "
                f"busiest second {res['busiest_second']}, "
                f"fake ceiling {res['fake_ceiling']:,.0f} req/s, load {res['load_before']} -> "
                f"{res['load_after']}"
            )
        print(f"\n{info['nproc']} x {info['cpu']}; load average {info['loadavg']}")
        print(f"written: {save(part, {'machine': info})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
