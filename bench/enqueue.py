"""Enqueue: POST send-bulk with 1,000, 10,000 and 100,000 recipients to ``serve --no-worker``.

Median time to the response over 5 runs, and Redis memory per queued recipient (``INFO memory``
used_memory delta / recipients). Beside it, the seed's Bull ``queue.add`` of one job holding the
same list, timed inside Node (no HTTP). The 100,000 runs twice: with a template and a variable
per recipient, and in the seed's own shape (a ``message`` on every recipient, no template).
"""

from __future__ import annotations

import os
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
SEED_SIZE = 100_000


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
        body = bulk_body(SEED_SIZE, start=1_000_000, seed_shape=True)
        seed_times: list[float] = []
        for run_no in range(RUNS):
            body = bulk_body(SEED_SIZE, start=1_000_000 + run_no * SEED_SIZE, seed_shape=True)
            elapsed, data = wq.send_bulk(body)
            seed_times.append(elapsed)
            if data["total"] != SEED_SIZE or data["invalid"]:
                raise RuntimeError(f"seed shape: {data['total']} of {SEED_SIZE} accepted")
        out["seed"] = {"times_s": seed_times, "body_bytes": len(body)}
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
    seed_s = statistics.median(ours["seed"]["times_s"])
    part.rows.append(
        Row(
            NAME,
            f"send-bulk {SEED_SIZE:,}, the seed's shape: median response",
            seed_s * 1000,
            "ms",
            target=f"<= {TARGET_S * 1000:,.0f} ms",
            met=seed_s <= TARGET_S,
            note="a message on every recipient; load "
            + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        )
    )
    return part


if __name__ == "__main__":
    sys.exit(standalone(run))
