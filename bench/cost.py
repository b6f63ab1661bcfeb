"""Cost per message: Redis commands per sent message, and the ceiling that implies.

Commands are ``INFO commandstats`` calls (commands run inside Lua scripts count too) from just
before the 10,000-recipient submission to the last recipient recorded, minus the benchmark's
own probes, divided by the messages sent. The ceiling is one Redis core's measured
``redis-benchmark -q -n 200000 -t set,get`` ops/s (the mean of SET and GET) divided by that.
Commands run inside Lua cost Redis less than a client's command, and since the batch send path
one command carries up to 100 recipients (an HSET of 100 fields), so the commands ceiling is an
upper bound only; the second ceiling, from what Redis actually spent (messages/s divided by the
share of one core Redis was busy), is the one to plan with.
Reuses the throughput part's 1-worker run when it ran in the same invocation.
"""

from __future__ import annotations

import sys
from typing import Any

from bench import throughput
from bench._context import Context, standalone
from bench._redis import RedisServer, benchmark_ops
from bench._report import Part, Row

NAME = "cost"


def _per_message(calls: dict[str, int], n: int) -> float:
    return sum(calls.values()) / n


def run(ctx: Context) -> Part:
    part = Part(NAME)
    ours: dict[str, Any] = ctx.cache.get("ours_throughput_1") or throughput.measure_ours(ctx, 1)
    base: dict[str, Any] = ctx.cache.get("baseline_throughput") or throughput.measure_baseline(ctx)
    with RedisServer(ctx.root) as server:
        ops = benchmark_ops(server.port, ctx.root)
    redis_ops = (ops["set"] + ops["get"]) / 2
    ours_cmds = _per_message(ours["calls"], ours["sent"])
    base_cmds = _per_message(base["calls"], base["sent"])
    top = sorted(ours["calls"].items(), key=lambda kv: -kv[1])[:12]
    part.data = {
        "redis_benchmark_ops": ops,
        "ours": {"per_message": ours_cmds, "calls": ours["calls"], "sent": ours["sent"]},
        "baseline": {"per_message": base_cmds, "calls": base["calls"], "sent": base["sent"]},
        "ours_top_per_message": {name: n / ours["sent"] for name, n in top},
    }
    part.rows += [
        Row(NAME, "redis-benchmark SET/GET (one core)", redis_ops, "ops/s"),
        Row(
            NAME,
            "Redis commands per message",
            ours_cmds,
            "cmd/msg",
            base_cmds,
            note="incl. calls inside Lua; ours: one command serves a batch of recipients",
        ),
        Row(
            NAME,
            "implied ceiling (ops/s / cmd per msg)",
            redis_ops / ours_cmds,
            "msg/s",
            redis_ops / base_cmds,
            note="ours: an upper bound, as a batch command costs more than a SET",
        ),
        Row(
            NAME,
            "ceiling from Redis CPU (msg/s / busy share)",
            ours["msgs_per_s"] / ours["cpu_busy"]["redis"],
            "msg/s",
            base["msgs_per_s"] / base["cpuBusy"]["redis"],
            note=f"Redis busy {ours['cpu_busy']['redis']:.0%} (ours), "
            f"{base['cpuBusy']['redis']:.0%} (baseline)",
        ),
    ]
    return part


if __name__ == "__main__":
    sys.exit(standalone(run))
