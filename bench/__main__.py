"""``python -m bench``: every part in one run, one table, JSON under ``bench/results/``.

Each part also runs alone: ``python -m bench.enqueue``, ``bench.throughput``, ``bench.cost``,
``bench.cloud_api``, ``bench.http_clients``, ``bench.api_load``. A part that fails is reported
and the others still run. The CPU model and the load average are printed at the start and end.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable

from bench import api_load, cloud_api, cost, enqueue, http_clients, throughput
from bench._context import Context, open_context, where
from bench._report import Part, Row, machine, save, table

PARTS: list[tuple[str, Callable[[Context], Part]]] = [
    (throughput.NAME, throughput.run),
    (cost.NAME, cost.run),  # after throughput: reuses its 1-worker run
    (enqueue.NAME, enqueue.run),
    (cloud_api.NAME, cloud_api.run),
    (http_clients.NAME, http_clients.run),
    (api_load.NAME, api_load.run),
]


def main() -> int:
    rows: list[Row] = []
    failed: list[str] = []
    started = time.monotonic()
    print(where(machine(), "at the start"), flush=True)
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
        f"\nPython {info['python']}, Redis {info['redis']}, Node {info['node']}; "
        f"waqtor {info['commit']}{' (dirty)' if info['dirty'] else ''}"
    )
    print(where(info, "at the end"))
    print(f"written: {save(summary, {'machine': info})} and one JSON per part beside it")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
