"""A closed-loop HTTP load generator (asyncio + httpx), run as its own process.

The fallback when ``wrk`` is not installed: ``python -m bench._loadgen URL --concurrency 50
--duration 20 --header 'X-API-Key: ...'`` prints one JSON line. Each client sends its next
request when the previous answer arrives; latency is measured per request in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx


async def _client(
    http: httpx.AsyncClient, url: str, deadline: float, latencies: list[float], errors: list[str]
) -> None:
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            resp = await http.get(url)
            await resp.aread()
            if resp.status_code != 200:
                errors.append(f"http {resp.status_code}")
        except httpx.HTTPError as exc:
            errors.append(type(exc).__name__)
        latencies.append(time.perf_counter() - started)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(
    url: str, concurrency: int, duration_s: float, headers: dict[str, str]
) -> dict[str, float | int | str]:
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as http:
        started = time.monotonic()
        deadline = started + duration_s
        await asyncio.gather(
            *(_client(http, url, deadline, latencies, errors) for _ in range(concurrency))
        )
        elapsed = time.monotonic() - started
    return {
        "tool": "httpx",
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / elapsed,
        "p50_ms": _percentile(latencies, 0.50) * 1000 if latencies else 0.0,
        "p99_ms": _percentile(latencies, 0.99) * 1000 if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    print(json.dumps(asyncio.run(load(args.url, args.concurrency, args.duration, headers))))


if __name__ == "__main__":
    main()
