"""Event-loop lag under heavy requests: how long ``GET /health`` waits while one request does
CPU-heavy work in a real ``waqtor serve`` (issue 12, item 1).

A thread polls ``/health`` every 20 ms on its own connection while the main thread sends one
heavy request at a time; the figures are /health's worst and p99 latency during each request
(an idle /health answers in about 1 ms).

    python -m bench.loop_lag [--src DIR]

``--src`` runs the service from another checkout (for example the code before the fix, from
``git archive``), with this benchmark unchanged, to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench._redis import RedisServer
from bench._waqtor import Waqtor, recipients

ATTACK = "{a|" * 1023 + "x" + "}" * 1023  # under the 4,096-character limit
HEAVY = "{Hi|Hello|Hey} {a|b} " * 190  # legal: 380 choice groups in 3,990 characters
POLL_S = 0.02


class HealthProbe:
    def __init__(self, base: str) -> None:
        self.base = base
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                client.get("/health")
                self.samples.append(time.perf_counter() - started)
                time.sleep(POLL_S)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        time.sleep(0.2)
        self.samples.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.1)
        self._stop.set()
        self._thread.join()

    def figures(self) -> dict[str, float]:
        ordered = sorted(self.samples) or [0.0]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return {"worst_ms": round(ordered[-1] * 1000, 1), "p99_ms": round(p99 * 1000, 1)}


def _scenarios() -> list[tuple[str, dict[str, Any]]]:
    json_headers = {"Content-Type": "application/json"}
    rows = "phone,name\n" + "".join(f"9665{i:08d},N{i}\n" for i in range(100_000))
    return [
        (
            "preview, 100 recipients, 1,023-deep spintax",
            {
                "url": "/api/messages/preview",
                "content": json.dumps({"recipients": recipients(100), "message": ATTACK}),
                "headers": json_headers,
            },
        ),
        (
            "preview, 1,000 recipients, 380 choice groups",
            {
                "url": "/api/messages/preview",
                "content": json.dumps({"recipients": recipients(1000), "message": HEAVY}),
                "headers": json_headers,
            },
        ),
        (
            "preview, 100,000-row CSV",
            {
                "url": "/api/messages/preview",
                "params": {"message": "Hi {name}"},
                "content": rows.encode(),
                "headers": {"Content-Type": "text/csv"},
            },
        ),
        (
            "dry run, 100,000 JSON recipients",
            {
                "url": "/api/messages/send-bulk?dryRun=true",
                "content": json.dumps({"recipients": recipients(100_000), "message": "Hi {name}"}),
                "headers": json_headers,
            },
        ),
        (
            "send-bulk, 100,000 JSON recipients queued",
            {
                "url": "/api/messages/send-bulk",
                "content": json.dumps({"recipients": recipients(100_000), "message": "Hi {name}"}),
                "headers": json_headers,
            },
        ),
    ]


def run(src: str | None) -> list[dict[str, Any]]:
    extra = {"PYTHONPATH": src} if src else {}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="waqtor-lag-") as tmp, RedisServer(Path(tmp)) as store:
        with Waqtor(store.url, Path(tmp) / "api", **extra) as app:
            app.http.post("/api/queue/pause")  # only the API's own work is measured
            for name, request in _scenarios():
                with HealthProbe(app.base) as probe:
                    started = time.perf_counter()
                    resp = app.http.post(**request)
                    seconds = time.perf_counter() - started
                results.append(
                    {
                        "request": name,
                        "status": resp.status_code,
                        "seconds": round(seconds, 2),
                        **probe.figures(),
                    }
                )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loop_lag", description=__doc__)
    parser.add_argument("--src", help="run the service from this source tree")
    args = parser.parse_args(argv)
    src = str(Path(args.src).resolve()) if args.src else None
    results = run(src)
    load = os.getloadavg()[0]
    print(f"event-loop lag (GET /health while one request runs), load average {load:.2f}")
    for r in results:
        print(
            f"  {r['request']:<46} HTTP {r['status']} in {r['seconds']:>5.2f} s   "
            f"/health worst {r['worst_ms']:>7.1f} ms  p99 {r['p99_ms']:>7.1f} ms",
            flush=True,
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    name = "loop_lag_src.json" if src else "loop_lag.json"
    (out / name).write_text(json.dumps({"load": load, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
