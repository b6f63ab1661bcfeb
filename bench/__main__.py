"""``python -m bench``: every part in one run, one table, JSON under ``bench/results/``.

Each part also runs alone: ``python -m bench.enqueue``, ``bench.throughput``, ``bench.cost``,
``bench.api_load``. A part that fails is reported and the others still run.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable

from bench import api_load, cost, enqueue, throughput
from bench._context import Context, open_context
from bench._report import Part, Row, machine, save, table

PARTS: list[tuple[str, Callable[[Context], Part]]] = [
    (throughput.NAME, throughput.run),
    (cost.NAME, cost.run),  # after throughput: reuses its 1-worker run
    (enqueue.NAME, enqueue.run),
    (api_load.NAME, api_load.run),
]


def main() -> int:
    rows: list[Row] = []
    failed: list[str] = []
    started = time.monotonic()
    with open_context() as ctx:
        for name, run in PARTS:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            try:
                part = run(ctx)
            except Exception as exc:
                traceback.print_exc()
                failed.append(name)
                rows.append(Row(name, "FAILED", None, "", note=f"{type(exc).__name__}: {exc}"[:90]))
                continue
            rows.extend(part.rows)
            save(part, {"machine": machine(ctx.redis_version)})
        summary = Part("summary", rows, {"failed": failed})
        summary.data["seconds"] = round(time.monotonic() - started, 1)
        summary.data["baseline_packages"] = ctx.baseline.versions()
        info = machine(ctx.redis_version)
    print()
    print(table(rows))
    print(
        f"\n{info['nproc']} x {info['cpu']}, Python {info['python']}, Redis {info['redis']}, "
        f"Node {info['node']}; waqtor {info['commit']}{' (dirty)' if info['dirty'] else ''}; "
        f"load average at the end {info['loadavg'][0]:.2f}"
    )
    print(f"written: {save(summary, {'machine': info})} and one JSON per part beside it")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
