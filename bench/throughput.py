"""Engine throughput: one 10,000-recipient campaign, end to end, for 1 and 2 worker processes.

Submitted over HTTP to a real ``waqtor serve --no-worker``; sent by real ``waqtor worker``
processes with ``MESSAGE_DELAY=0`` and the zero-latency simulator. Timed from just before the
POST to the last recipient's outcome in the ledger; each configuration runs 3 times on a fresh
Redis and the median run is reported. The seed's design (Bull, one job holding
the list) runs the same list in the same run for the ratio, in rounds: a baseline run, then one
run of each configuration, three times (the load of a shared machine moves within a minute), and
each round's own ratio is printed beside the medians' ratio.

Two paths: the simulator taking batches (one request per batch), and the simulator taking one
message per call (``SIM_BATCH_SIZE=1``, the per-message engine: what every real provider
needs). Each row also gives the CPU time per message of the worker process(es) and of Redis,
and the 1-minute load average when the run started (other work on the machine skews it).

    python -m bench.throughput [--path batch|message|both] [--workers 1 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
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


#: The simulator's mode per path.
PATHS = {"batch": {}, "message": {"SIM_BATCH_SIZE": "1"}}


def measure_ours(
    ctx: Context, workers: int, n: int = RECIPIENTS, path: str = "batch"
) -> dict[str, Any]:
    """One campaign of ``n`` through ``workers`` worker processes on a fresh Redis."""
    load = os.getloadavg()[0]
    with (
        RedisServer(ctx.root) as server,
        Waqtor(server.url, ctx.scratch(f"ours{workers}"), **PATHS[path]) as wq,
    ):
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
    worker_cpu = sum(v for k, v in cpu.items() if k.startswith("worker"))
    return {
        "path": path,
        "load": round(load, 2),
        "cpu_us_per_msg": {
            "workers": worker_cpu * 1e6 / n,
            "redis": cpu["redis"] * 1e6 / n,
            "serve": cpu["serve"] * 1e6 / n,
        },
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
        load = os.getloadavg()[0]
    with RedisServer(ctx.root) as server:
        result = ctx.baseline.run("throughput", server.url, timeout_s=TIMEOUT_S, n=n)
    result["msgs_per_s"] = n / result["seconds"]
    result["load"] = round(load, 2)
    busy, span = result["cpuBusy"], result["completedSeconds"]
    result["cpu_us_per_msg"] = {k: v * span * 1e6 / n for k, v in busy.items()}
    result["bull"] = ctx.baseline.versions()
    return result


def _note(ours: dict[str, Any]) -> str:
    used = len(ours["by_worker"])
    cpu = ours["cpu_us_per_msg"]
    return (
        f"sent by {used} of {ours['workers']}; CPU/msg: workers {cpu['workers']:.0f} µs, "
        f"redis {cpu['redis']:.1f} µs; load {ours['load']:.2f}"
    )


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate (runs are whole measurements; nothing is averaged)."""
    return sorted(runs, key=lambda r: float(r["msgs_per_s"]))[len(runs) // 2]


def run(
    ctx: Context,
    paths: tuple[str, ...] = ("batch", "message"),
    workers: tuple[int, ...] = (1, 2),
    runs: int = RUNS,
) -> Part:
    part = Part(NAME, data={"runs": runs})
    configs = [
        (path, count) for path in paths for count in (workers if path == "batch" else workers[:1])
    ]
    # Rounds, each a baseline run then one run of every configuration: on a shared machine the
    # load moves within a minute, and three baseline runs first, then ours, compared two loads.
    bases: list[dict[str, Any]] = []
    ours_runs: dict[tuple[str, int], list[dict[str, Any]]] = {c: [] for c in configs}
    for _ in range(runs):
        bases.append(measure_baseline(ctx))
        for path, count in configs:
            ours_runs[(path, count)].append(measure_ours(ctx, count, path=path))
    base = _median_run(bases)
    ctx.cache["baseline_throughput"] = base
    part.data["baseline"] = bases
    bcpu = base["cpu_us_per_msg"]
    print(f"[throughput] baseline: {base['msgs_per_s']:,.0f} msg/s", file=sys.stderr)
    part.rows.append(
        Row(
            NAME,
            "baseline: the seed's engine (Bull 4), 10k campaign",
            base["msgs_per_s"],
            "msg/s",
            note=f"CPU/msg: node {bcpu['node']:.0f} µs, redis {bcpu['redis']:.1f} µs; "
            f"load {base['load']:.2f}",
        )
    )
    for path, count in configs:
        runs_of = ours_runs[(path, count)]
        ours = _median_run(runs_of)
        if path == "batch":
            ctx.cache[f"ours_throughput_{count}"] = ours
        part.data[f"ours_{path}_{count}"] = runs_of
        rates = ", ".join(f"{r['msgs_per_s']:,.0f}" for r in runs_of)
        print(f"[throughput] {path}, {count} worker(s): {rates} msg/s", file=sys.stderr)
        ok = all(r["sent"] == RECIPIENTS and r["duplicates"] == 0 for r in runs_of)
        ratio = ours["msgs_per_s"] / base["msgs_per_s"]
        label = f"{count} worker{'s' if count > 1 else ''}"
        # Each round's own ratio (its baseline and our run a minute apart, under one load).
        rounds = ", ".join(
            f"{o['msgs_per_s'] / b['msgs_per_s']:.2f}" for o, b in zip(runs_of, bases, strict=True)
        )
        what = "batch path" if path == "batch" else "per-message provider"
        part.rows.append(
            Row(
                NAME,
                f"msg/s, 10k campaign, {what}, {label}",
                ours["msgs_per_s"],
                "msg/s",
                base["msgs_per_s"],
                note=_note(ours) if ok else "NOT ALL SENT EXACTLY ONCE: see JSON",
            )
        )
        part.rows.append(
            Row(
                NAME,
                f"ours / baseline, {what}, {label}",
                ratio,
                "x",
                target=f">= {TARGET_RATIO:g}x" if count == 1 else "",
                met=ratio >= TARGET_RATIO if count == 1 else None,
                note=f"each round: {rounds}",
            )
        )
    return part


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--path", choices=("batch", "message", "both"), default="both")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args(argv)
    paths = ("batch", "message") if args.path == "both" else (args.path,)
    return standalone(lambda ctx: run(ctx, paths, tuple(args.workers), args.runs))


if __name__ == "__main__":
    sys.exit(main())
