"""A closed-loop HTTP load generator on asyncio streams, run as its own process.

The fallback when ``wrk`` is not installed: ``python bench/_loadgen.py URL --concurrency 50
--duration 20 --header 'X-API-Key: ...'`` prints one JSON line. Each client holds one
keep-alive connection and sends its next GET when the previous answer has arrived; latency is
measured per request here. It speaks just enough HTTP/1.1 for our API's answers (Content-Length
bodies). httpx was tried first: at 50 clients its own overhead (about 1.5 ms per request on this
machine, one core saturated) became most of the measured latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


def _request(url: str, headers: dict[str, str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname or "127.0.0.1"
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{parts.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return host, parts.port or 80, ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one response; return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise ValueError("response without Content-Length")
    await reader.readexactly(length)
    return status


async def _client(
    address: tuple[str, int, bytes], deadline: float, latencies: list[float], errors: list[str]
) -> None:
    host, port, request = address
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            writer.write(request)
            status = await asyncio.wait_for(_answer(reader), 30)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors.append(f"http {status}")
    except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
        errors.append(type(exc).__name__)
    finally:
        writer.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def load(
    url: str, concurrency: int, duration_s: float, headers: dict[str, str]
) -> dict[str, float | int | str]:
    latencies: list[float] = []
    errors: list[str] = []
    address = _request(url, headers)
    started = time.monotonic()
    deadline = started + duration_s
    await asyncio.gather(
        *(_client(address, deadline, latencies, errors) for _ in range(concurrency))
    )
    elapsed = time.monotonic() - started
    return {
        "tool": "asyncio",
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / elapsed,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
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
