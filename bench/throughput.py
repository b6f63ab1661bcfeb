"""Engine throughput: one 10,000-recipient campaign, end to end, for 1 and 2 worker processes.

Submitted over HTTP to a real ``waqtor serve --no-worker``; sent by real ``waqtor worker``
processes with ``MESSAGE_DELAY=0`` and the zero-latency simulator. Timed from just before the
POST to the last recipient's outcome in the ledger; each configuration runs 3 times on a fresh
Redis and the median run is reported. The seed's design (Bull, one job holding
the list) runs the same list in the same run for the ratio.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any

from bench._context import Context, standalone
from bench._procs import cpu_seconds, wait_until
from bench._redis import RedisServer, command_calls, delta, version
from bench._redis import cpu_seconds as redis_cpu_seconds
from bench._report import Part, Row
from bench._waqtor import Waqtor, bulk_body
from waqtor.store.keys import Keys

NAME = "throughput"
RECIPIENTS = 10_000
TIMEOUT_S = 600.0
RUNS = 3  # per configuration; the median run is reported
TARGET_RATIO = 2.0
KEYS = Keys()
TERMINAL_COUNTS = ["n:D", "n:F", "n:U", "n:C"]


def measure_ours(ctx: Context, workers: int, n: int = RECIPIENTS) -> dict[str, Any]:
    """One campaign of ``n`` through ``workers`` worker processes on a fresh Redis."""
    with RedisServer(ctx.root) as server, Waqtor(server.url, ctx.scratch(f"ours{workers}")) as wq:
        r = server.client()
        ctx.redis_version = version(r)
        wq.start_workers(workers, r)
        body = bulk_body(n)
        procs = {"serve": wq.serve.pid if wq.serve else 0}
        procs.update({f"worker{i}": w.pid for i, w in enumerate(wq.workers)})
        cpu0 = {name: cpu_seconds(pid) for name, pid in procs.items()}
        cpu0["redis"] = redis_cpu_seconds(r)
        before = command_calls(r)
        started_ms = time.time() * 1000
        post_s, data = wq.send_bulk(body)
        cid = str(data["jobId"])
        polls = 0

        def finished() -> bool | None:
            nonlocal polls
            polls += 1
            done = sum(int(v or 0) for v in r.hmget(KEYS.meta(cid), TERMINAL_COUNTS))
            return True if done >= n else None

        wait_until(f"{n} recipients recorded", finished, TIMEOUT_S, 0.01)
        calls = delta(command_calls(r), before)
        cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in procs.items()}
        cpu["redis"] = redis_cpu_seconds(r) - cpu0["redis"]
        # Our own probes are not the engine's cost: the polls above and the first INFO.
        calls["hmget"] = calls.get("hmget", 0) - polls
        calls["info"] = calls.get("info", 0) - 1
        details = [json.loads(v) for v in r.hvals(KEYS.detail(cid))]
        last_ms = max(max(d.get(f"t{c}", 0) for c in "DFUC") for d in details)
        outbox = r.lrange(KEYS.sim_outbox, 0, -1)
        phones = Counter(json.loads(row)["phone"] for row in outbox)
        counts = dict(zip(TERMINAL_COUNTS, r.hmget(KEYS.meta(cid), TERMINAL_COUNTS), strict=True))
        r.close()
    seconds = (last_ms - started_ms) / 1000
    return {
        "workers": workers,
        "n": n,
        "seconds": seconds,
        "msgs_per_s": n / seconds,
        "post_s": post_s,
        "sent": len(phones),
        "duplicates": sum(c - 1 for c in phones.values()),
        "ledger": counts,
        "by_worker": Counter(str(d.get("w")) for d in details).most_common(),
        "calls": {k: v for k, v in calls.items() if v},
        "cpu_busy": {
            name: round(used * 1000 / (last_ms - started_ms), 3) for name, used in cpu.items()
        },
    }


def measure_baseline(ctx: Context, n: int = RECIPIENTS) -> dict[str, Any]:
    with RedisServer(ctx.root) as server:
        result = ctx.baseline.run("throughput", server.url, timeout_s=TIMEOUT_S, n=n)
    result["msgs_per_s"] = n / result["seconds"]
    result["bull"] = ctx.baseline.versions()
    return result


def _note(ours: dict[str, Any]) -> str:
    busy = ours["cpu_busy"]
    worker = max(v for k, v in busy.items() if k.startswith("worker"))
    used = len(ours["by_worker"])
    redis = busy["redis"]
    return f"sent by {used} of {ours['workers']}; CPU: worker {worker:.0%}, redis {redis:.0%}"


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate (runs are whole measurements; nothing is averaged)."""
    return sorted(runs, key=lambda r: float(r["msgs_per_s"]))[len(runs) // 2]


def run(ctx: Context) -> Part:
    part = Part(NAME, data={"runs": RUNS})
    bases = [measure_baseline(ctx) for _ in range(RUNS)]
    base = _median_run(bases)
    ctx.cache["baseline_throughput"] = base
    part.data["baseline"] = bases
    print(f"[throughput] baseline: {base['msgs_per_s']:,.0f} msg/s", file=sys.stderr)
    for workers in (1, 2):
        runs = [measure_ours(ctx, workers) for _ in range(RUNS)]
        ours = _median_run(runs)
        ctx.cache[f"ours_throughput_{workers}"] = ours
        part.data[f"ours_{workers}"] = runs
        rates = ", ".join(f"{r['msgs_per_s']:,.0f}" for r in runs)
        print(f"[throughput] {workers} worker(s): {rates} msg/s", file=sys.stderr)
        ok = all(r["sent"] == RECIPIENTS and r["duplicates"] == 0 for r in runs)
        ratio = ours["msgs_per_s"] / base["msgs_per_s"]
        label = f"{workers} worker{'s' if workers > 1 else ''}"
        part.rows.append(
            Row(
                NAME,
                f"msg/s, 10k campaign, {label}",
                ours["msgs_per_s"],
                "msg/s",
                base["msgs_per_s"],
                note=_note(ours) if ok else "NOT ALL SENT EXACTLY ONCE: see JSON",
            )
        )
        part.rows.append(
            Row(
                NAME,
                f"ours / baseline, {label}",
                ratio,
                "x",
                target=f">= {TARGET_RATIO:g}x",
                met=ratio >= TARGET_RATIO,
            )
        )
    return part


if __name__ == "__main__":
    sys.exit(standalone(run))
