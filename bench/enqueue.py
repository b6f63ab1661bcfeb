"""Enqueue: POST send-bulk with 1,000, 10,000 and 100,000 recipients to ``serve --no-worker``.

Median time to the response over 5 runs, and Redis memory per queued recipient (``INFO memory``
used_memory delta / recipients). Beside it, the seed's Bull ``queue.add`` of one job holding the
same list, timed inside Node (no HTTP).
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

from bench._context import Context, standalone
from bench._redis import RedisServer, used_memory, version
from bench._report import Part, Row
from bench._waqtor import Waqtor, bulk_body

NAME = "enqueue"
SIZES = (1_000, 10_000, 100_000)
RUNS = 5
TARGET_S = 1.5  # for 100,000 recipients
TARGET_BYTES = 200.0


def measure_ours(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with RedisServer(ctx.root) as server, Waqtor(server.url, ctx.scratch("enqueue")) as wq:
        r = server.client()
        ctx.redis_version = version(r)
        # Warm-up, not timed: first imports, phone metadata, script loading, connection pools.
        wq.send_bulk(bulk_body(1_000, start=50_000_000))
        for size in SIZES:
            body = bulk_body(size)
            times: list[float] = []
            memory: list[int] = []
            for _ in range(RUNS):
                m0 = used_memory(r)
                elapsed, data = wq.send_bulk(body)
                memory.append(used_memory(r) - m0)
                times.append(elapsed)
                if data["total"] != size or data["invalid"]:
                    raise RuntimeError(f"{size} sent, {data['total']} accepted")
            out[str(size)] = {"times_s": times, "memory_bytes": memory, "body_bytes": len(body)}
        r.close()
    return out


def measure_baseline(ctx: Context) -> dict[str, Any]:
    with RedisServer(ctx.root) as server:
        raw = ctx.baseline.run("enqueue", server.url, timeout_s=300, sizes=list(SIZES), runs=RUNS)
    return {
        size: {"times_s": [t / 1000 for t in v["timesMs"]], "memory_bytes": v["memoryBytes"]}
        for size, v in raw.items()
    }


def run(ctx: Context) -> Part:
    part = Part(NAME)
    ours = measure_ours(ctx)
    base = measure_baseline(ctx)
    part.data = {"runs": RUNS, "ours": ours, "baseline": base}
    for size in SIZES:
        o, b = ours[str(size)], base[str(size)]
        median_s = statistics.median(o["times_s"])
        per_rcpt = statistics.median(o["memory_bytes"]) / size
        base_per_rcpt = statistics.median(b["memory_bytes"]) / size
        big = size == max(SIZES)
        part.rows.append(
            Row(
                NAME,
                f"send-bulk {size:,}: median response",
                median_s * 1000,
                "ms",
                statistics.median(b["times_s"]) * 1000,
                target=f"<= {TARGET_S * 1000:,.0f} ms" if big else "",
                met=(median_s <= TARGET_S) if big else None,
                note="baseline: Bull queue.add in Node, no HTTP",
            )
        )
        part.rows.append(
            Row(
                NAME,
                f"send-bulk {size:,}: Redis memory / recipient",
                per_rcpt,
                "bytes",
                base_per_rcpt,
                target=f"<= {TARGET_BYTES:g} B",
                met=per_rcpt <= TARGET_BYTES,
            )
        )
        print(f"[enqueue] {size:,}: {median_s * 1000:,.0f} ms, {per_rcpt:.0f} B", file=sys.stderr)
    return part


if __name__ == "__main__":
    sys.exit(standalone(run))
