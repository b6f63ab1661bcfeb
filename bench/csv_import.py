"""CSV import benchmark: a 100,000-row upload streamed into send-bulk, and the API process's
peak memory growth (VmHWM after minus VmRSS before). Target: under 100 MB.

    python -m bench.csv_import [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench._redis import RedisServer
from bench._waqtor import Waqtor


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def rows(n: int) -> Iterator[bytes]:
    yield "\ufeffphone;name;code\r\n".encode()
    batch: list[str] = []
    for i in range(n):
        batch.append(f"9665{i:08d};Customer {i};C{i % 997}\r\n")
        if len(batch) == 2000:
            yield "".join(batch).encode()
            batch = []
    if batch:
        yield "".join(batch).encode()


def run(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="waqtor-csv-") as tmp, RedisServer(Path(tmp)) as store:
        with Waqtor(store.url, Path(tmp) / "api", MAX_RECIPIENTS=str(n)) as app:
            assert app.serve is not None
            pid = app.serve.pid
            app.http.post("/api/queue/pause")  # only the intake is measured
            before_kb = _status_kb(pid, "VmRSS")
            started = time.perf_counter()
            resp = app.http.post(
                "/api/messages/send-bulk",
                params={"message": "Hello {name}, your code is {code}"},
                content=rows(n),
                headers={"Content-Type": "text/csv"},
            )
            seconds = time.perf_counter() - started
            data = resp.json()["data"]
            peak_kb = _status_kb(pid, "VmHWM")
    if data["total"] != n:
        raise RuntimeError(f"accepted {data['total']} of {n}")
    return {
        "rows": n,
        "seconds": round(seconds, 2),
        "peak_growth_mb": round((peak_kb - before_kb) / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.csv_import", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    result = run(args.rows)
    print(
        f"csv import rows={result['rows']} time={result['seconds']}s "
        f"peak memory growth={result['peak_growth_mb']} MB (target < 100 MB)",
        flush=True,
    )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "csv_import.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
