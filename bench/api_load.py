"""The API under load: 50 concurrent clients for 20 s on the queue's read routes.

100,000 recipients are queued (one send-bulk) with no worker running, so they stay queued; 49
small campaigns are queued beside it so ``GET /api/queue/jobs?limit=50`` has 50 jobs to list.
The load comes from another process: ``wrk`` when it is installed, else ``bench/_loadgen.py``
(asyncio streams). Set ``BENCH_LOADGEN=asyncio`` to force the fallback. Loopback only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from bench._context import Context, standalone
from bench._procs import run as run_cmd
from bench._redis import RedisServer, command_calls, delta, version
from bench._report import Part, Row
from bench._waqtor import API_KEY, Waqtor, bulk_body

NAME = "api_load"
QUEUED = 100_000
SMALL_CAMPAIGNS, SMALL_SIZE = 49, 20
CONCURRENCY = 50
DURATION_S = 20
ROUTES = ("/api/queue/stats", "/api/queue/jobs?limit=50")
TARGET_P99_MS = 20.0  # for /api/queue/stats
LOADGEN = Path(__file__).resolve().parent / "_loadgen.py"

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)


def _wrk(url: str, cwd: Path) -> dict[str, Any]:
    out = run_cmd(
        [
            "wrk",
            "-t1",
            f"-c{CONCURRENCY}",
            f"-d{DURATION_S}s",
            "--latency",
            "--timeout",
            "10s",
            "-H",
            f"X-API-Key: {API_KEY}",
            url,
        ],
        timeout_s=DURATION_S + 60,
        cwd=cwd,
    )
    latency = {q: float(v) * _UNITS[u] for q, v, u in _LATENCY.findall(out)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rps is None or total is None or set(latency) != {"50", "99"}:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {
        "tool": "wrk",
        "requests": int(total.group(1)),
        "errors": errors,
        "rps": float(rps.group(1)),
        "p50_ms": latency["50"],
        "p99_ms": latency["99"],
    }


def _asyncio(url: str, cwd: Path) -> dict[str, Any]:
    out = run_cmd(
        [
            sys.executable,
            str(LOADGEN),
            url,
            "--concurrency",
            str(CONCURRENCY),
            "--duration",
            str(DURATION_S),
            "--header",
            f"X-API-Key: {API_KEY}",
        ],
        timeout_s=DURATION_S + 60,
        cwd=cwd,
    )
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def load(url: str, cwd: Path) -> dict[str, Any]:
    use_wrk = shutil.which("wrk") and os.environ.get("BENCH_LOADGEN", "wrk") != "asyncio"
    return _wrk(url, cwd) if use_wrk else _asyncio(url, cwd)


def run(ctx: Context) -> Part:
    part = Part(NAME)
    with RedisServer(ctx.root) as server, Waqtor(server.url, ctx.scratch("api")) as wq:
        r = server.client()
        ctx.redis_version = version(r)
        wq.send_bulk(bulk_body(QUEUED))
        for i in range(SMALL_CAMPAIGNS):
            wq.send_bulk(bulk_body(SMALL_SIZE, start=10_000_000 + i * SMALL_SIZE))
        stats = wq.http.get("/api/queue/stats").json()["data"]
        listed = wq.http.get("/api/queue/jobs", params={"limit": 50}).json()["data"]["count"]
        for route in ROUTES:  # warm-up, not measured
            for _ in range(20):
                wq.http.get(route).raise_for_status()
        part.data["queued"] = {"stats": stats, "jobs_listed": listed}
        for route in ROUTES:
            before = command_calls(r)
            result = load(wq.base + route, ctx.root)
            # Concurrent requests share reads: how many Redis commands one request cost, on
            # average (commandstats counts the calls inside Lua scripts too).
            calls = delta(command_calls(r), before)
            calls.pop("info", None)
            result["redis_commands_per_request"] = sum(calls.values()) / max(1, result["requests"])
            part.data[route] = result
            print(f"[api_load] {route}: {result}", file=sys.stderr)
            is_stats = route.endswith("/stats")
            note = f"{result['tool']}, {CONCURRENCY} clients, {DURATION_S} s"
            note += f", {result['redis_commands_per_request']:.2f} Redis commands/request"
            if result["errors"]:
                note += f", {result['errors']} errors"
            part.rows.append(Row(NAME, f"GET {route}: requests/s", result["rps"], "req/s"))
            part.rows.append(Row(NAME, f"GET {route}: p50", result["p50_ms"], "ms", note=note))
            part.rows.append(
                Row(
                    NAME,
                    f"GET {route}: p99",
                    result["p99_ms"],
                    "ms",
                    target=f"<= {TARGET_P99_MS:g} ms" if is_stats else "",
                    met=(result["p99_ms"] <= TARGET_P99_MS) if is_stats else None,
                )
            )
        r.close()
    return part


if __name__ == "__main__":
    sys.exit(standalone(run))
