"""Which HTTP client for the hot path to a provider: httpx against aiohttp, measured.

    python -m bench.http_clients [--in-flight 32] [--seconds 5] [--latency-ms 0]

Both clients POST a Cloud API message body to the fake Graph API (``bench/fake_graph.py``,
its own process, no rate limit) for ``--seconds``: ``--in-flight`` requests at once over one
keep-alive pool each, then httpx one request at a time. Prints requests/s per client. The
provider (``waqtor/providers/cloud_api.py``) uses the faster one; httpx stays where requests
are rare (status callbacks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable

from bench._context import Context, standalone
from bench._report import Part, Row
from bench.cloud_api import FakeGraphProcess
from bench.fake_graph import TOKEN

NAME = "http_clients"
BODY = json.dumps(
    {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "966500000001",
        "type": "text",
        "text": {"preview_url": False, "body": "Hi Person 1"},
        "biz_opaque_callback_data": "wq1:c:a.1",
    }
).encode()
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


async def _drive(one: Callable[[], Awaitable[None]], in_flight: int, seconds: float) -> float:
    done = 0
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await one()
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(in_flight)))
    return done / (time.monotonic() - started)


async def httpx_rate(url: str, in_flight: int, seconds: float) -> float:
    import httpx

    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:

        async def one() -> None:
            resp = await http.post("/v23.0/1/messages", content=BODY, headers=HEADERS)
            resp.raise_for_status()

        return await _drive(one, in_flight, seconds)


async def aiohttp_rate(url: str, in_flight: int, seconds: float) -> float:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one() -> None:
            async with http.post(f"{url}/v23.0/1/messages", data=BODY, headers=HEADERS) as resp:
                await resp.read()
                resp.raise_for_status()

        return await _drive(one, in_flight, seconds)


def run(ctx: Context, in_flight: int = 32, seconds: float = 5.0, latency_ms: float = 0) -> Part:
    part = Part(NAME, data={"in_flight": in_flight, "latency_ms": latency_ms})
    fake = FakeGraphProcess(ctx, latency_ms, 0)
    try:
        import uvloop

        rates = {
            "aiohttp": uvloop.run(aiohttp_rate(fake.url, in_flight, seconds)),
            "httpx": uvloop.run(httpx_rate(fake.url, in_flight, seconds)),
            "httpx, one at a time": uvloop.run(httpx_rate(fake.url, 1, seconds)),
            "aiohttp, one at a time": uvloop.run(aiohttp_rate(fake.url, 1, seconds)),
        }
    finally:
        fake.stop()
    part.data["rates"] = rates
    part.data["load"] = os.getloadavg()
    for name, rate in rates.items():
        where = "" if "one at a time" in name else f", {in_flight} in flight"
        part.rows.append(Row(NAME, f"{name}{where}", rate, "req/s"))
    part.rows.append(
        Row(
            NAME,
            f"aiohttp / httpx, {in_flight} in flight",
            rates["aiohttp"] / rates["httpx"],
            "x",
            target=">= 1,000 req/s (aiohttp)",
            met=rates["aiohttp"] >= 1000,
        )
    )
    return part


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_clients", description=__doc__)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    return standalone(lambda ctx: run(ctx, args.in_flight, args.seconds, args.latency_ms))


if __name__ == "__main__":
    sys.exit(main())
