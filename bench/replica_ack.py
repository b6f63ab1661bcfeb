"""What waiting for a replica costs: one campaign with and without ``REDIS_MIN_REPLICAS_ACK``.

A primary with one replica (both on loopback, no persistence), a ``serve --no-worker`` and one
worker with the zero-latency simulator and ``MESSAGE_DELAY=0``. Each configuration sends one
campaign of ``--n`` recipients on a fresh pair, timed from just before the POST to the last
outcome in the ledger; ``--runs`` times, the two configurations alternating, the medians
reported. ``ack 1`` puts ``WAIT 1`` after
every claim and every recorded outcome (one more round trip, and the replica's own round trip
to acknowledge); ``ack 0`` sends none.

    python -m bench.replica_ack [--n 5000] [--runs 3] [--path batch|message|paced|both] [--latency]

First, the latency of one guarded write against the same write unguarded (2,000 each).

Also prints the worker's and Redis's CPU µs per message and the WAIT commands per message (each
guarded write sends up to 5, ``store.replicas.steps``; those after the acknowledgement return at
once).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench._procs import cpu_seconds, wait_until
from bench._redis import cpu_seconds as redis_cpu_seconds
from bench._redis_child import RedisChild
from bench._topology import NODE_ARGS
from bench._waqtor import Waqtor, bulk_body
from waqtor.store.keys import Keys

KEYS = Keys()
TERMINAL_COUNTS = ["n:D", "n:F", "n:U", "n:C"]
#: ``paced``: a 1 ms gap between messages, so each recipient is claimed, sent and recorded on
#: its own (the path of every account with a delay): the most Redis work per message.
PATHS = {
    "batch": {},
    "message": {"SIM_BATCH_SIZE": "1"},
    "paced": {"MESSAGE_DELAY": "1", "MESSAGE_JITTER": "0"},
}


def measure(root: Path, ack: int, path: str, n: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="ack-", dir=root))
    primary = RedisChild(folder / "primary", appendonly=False, extra=NODE_ARGS)
    replica = RedisChild(folder / "replica", appendonly=False)
    try:
        primary.dir.mkdir()
        primary.start()
        replica.extra = ["--replicaof", "127.0.0.1", str(primary.port)]
        replica.dir.mkdir()
        replica.start()
        r = redis.Redis(port=primary.port, decode_responses=True)
        wait_until(
            "replica online",
            lambda: (
                True if r.info("replication").get("slave0", {}).get("state") == "online" else None
            ),
            15,
            0.05,
        )
        settings = {"REDIS_MIN_REPLICAS_ACK": str(ack), **PATHS[path]}
        with Waqtor(primary.url, folder / "wq", **settings) as wq:
            wq.start_workers(1, r)
            worker = wq.workers[0].pid
            cpu0, rcpu0 = cpu_seconds(worker), redis_cpu_seconds(r)
            started_ms = time.time() * 1000
            _, data = wq.send_bulk(bulk_body(n))
            cid = str(data["jobId"])

            def finished() -> bool | None:
                done = sum(int(v or 0) for v in r.hmget(KEYS.meta(cid), TERMINAL_COUNTS))
                return True if done >= n else None

            wait_until(f"{n} recorded", finished, 600, 0.01)
            seconds = (time.time() * 1000 - started_ms) / 1000
            cpu, rcpu = cpu_seconds(worker) - cpu0, redis_cpu_seconds(r) - rcpu0
            waits = int(r.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))
        r.close()
        return {
            "ack": ack,
            "path": path,
            "msgs_per_s": n / seconds,
            "worker_us": cpu * 1e6 / n,
            "redis_us": rcpu * 1e6 / n,
            "waits_per_msg": waits / n,
            "load": os.getloadavg()[0],
        }
    finally:
        replica.stop()
        primary.stop()
        shutil.rmtree(folder, ignore_errors=True)


def latency(root: Path, n: int = 2000) -> None:
    """p50/p99/max of one guarded write (a one-key script and its WAIT steps) against the
    script alone, on one connection after another, with one replica."""
    import asyncio

    from waqtor.store.connection import connect
    from waqtor.store.replicas import ReplicaGuard

    folder = Path(tempfile.mkdtemp(prefix="lat-", dir=root))
    primary = RedisChild(folder / "primary", appendonly=False, extra=NODE_ARGS)
    replica = RedisChild(folder / "replica", appendonly=False)
    try:
        primary.dir.mkdir()
        primary.start()
        replica.extra = ["--replicaof", "127.0.0.1", str(primary.port)]
        replica.dir.mkdir()
        replica.start()

        async def go() -> None:
            client = connect(primary.url)
            while (await client.info("replication")).get("slave0", {}).get("state") != "online":
                await asyncio.sleep(0.05)
            script = client.register_script("return redis.call('SET', KEYS[1], ARGV[1])")
            for wanted in (0, 1):
                guard = ReplicaGuard(client, wanted, 1000)
                took: list[float] = []
                for i in range(n):
                    t0 = time.perf_counter()
                    await guard.run(script, [f"k{i}"], ["x" * 200])
                    took.append((time.perf_counter() - t0) * 1000)
                took.sort()
                print(
                    f"one write, ack={wanted}: p50 {took[n // 2]:.3f} ms, "
                    f"p99 {took[n * 99 // 100]:.3f} ms, max {took[-1]:.1f} ms ({n} writes)",
                    flush=True,
                )
            await client.aclose()

        asyncio.run(go())
    finally:
        replica.stop()
        primary.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replica_ack", description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--path", choices=(*PATHS, "both"), default="both")
    parser.add_argument("--latency", action="store_true", help="only one write's latency")
    args = parser.parse_args(argv)
    paths = ("batch", "message") if args.path == "both" else (args.path,)
    root = Path(tempfile.mkdtemp(prefix="waqtor-ack-"))
    try:
        latency(root)
        if args.latency:
            return 0
        for path in paths:
            # Alternated, so that a change in the machine's load falls on both alike.
            runs: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
            for _ in range(args.runs):
                for ack in (0, 1):
                    runs[ack].append(measure(root, ack, path, args.n))
            medians = {}
            for ack in (0, 1):
                ordered = sorted(runs[ack], key=lambda m: float(m["msgs_per_s"]))
                m = ordered[len(ordered) // 2]
                medians[ack] = m
                rates = ", ".join(f"{x['msgs_per_s']:,.0f}" for x in runs[ack])
                print(
                    f"{path:7} ack={ack}: {m['msgs_per_s']:8,.0f} msg/s (runs {rates}); "
                    f"worker {m['worker_us']:.0f} µs/msg, redis {m['redis_us']:.1f} µs/msg, "
                    f"WAIT commands {m['waits_per_msg']:.3f}/msg, load {m['load']:.2f}",
                    flush=True,
                )
            cost = 1 - medians[1]["msgs_per_s"] / medians[0]["msgs_per_s"]
            print(f"{path:7} WAIT costs {cost:.0%} of the throughput (medians)", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
