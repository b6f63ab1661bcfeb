"""Pacing benchmark: is MESSAGE_DELAY held, across processes, and is the rate reached?

    python -m bench.pacing [--part gap|accounts]

gap:      4 worker processes, 3 campaigns on one account, 200 ms delay, jitter off, 300 sends.
          Prints the minimum and mean gap, the p99 of |gap - 200 ms| and the violations
          (gaps under 200 ms), measured at the ledger's claim (where the gap is enforced) and
          at the simulator's receipt of each request.
          Targets: 0 violations, mean within 2 %, p99 deviation <= 20 ms.
accounts: 500 accounts at 1 s each, one campaign each, one worker process, for 30 s.
          Prints the achieved rate against the ideal 500 messages/s. Target: >= 95 %.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._procs import wait_until
from bench._redis import RedisServer
from bench._waqtor import Waqtor, recipients

DELAY_MS = 200


def _gaps(stamps: list[int], target: int) -> dict[str, float]:
    stamps = sorted(stamps)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    deviations = sorted(abs(g - target) for g in gaps)
    return {
        "sends": len(stamps),
        "min_gap_ms": min(gaps),
        "mean_gap_ms": round(statistics.fmean(gaps), 2),
        "p99_dev_ms": deviations[int(0.99 * (len(deviations) - 1))],
        "violations": sum(1 for g in gaps if g < target),
    }


def gap_part(tmp: Path) -> dict[str, Any]:
    with RedisServer(tmp) as store:
        r = store.client()
        settings = {"MESSAGE_DELAY": str(DELAY_MS), "MESSAGE_JITTER": "0"}
        with Waqtor(store.url, tmp / "gap", **settings) as app:
            app.start_workers(4, r)
            jobs = []
            for c in range(3):
                body = {"recipients": recipients(100, c * 1000), "message": "Hi {name}"}
                resp = app.http.post("/api/messages/send-bulk", json=body)
                jobs.append(resp.json()["data"]["jobId"])

            def finished() -> bool | None:
                states = [
                    app.http.get(f"/api/queue/jobs/{j}").json()["data"]["status"] for j in jobs
                ]
                return True if all(s == "completed" for s in states) else None

            wait_until("3 campaigns", finished, 120, 0.5)
            claims = [int(json.loads(raw)["ts"]) for j in jobs for raw in r.hvals(f"wq:c:{j}:d")]
            received = [int(json.loads(e)["ts"]) for e in r.lrange("wq:sim:outbox", 0, -1)]
            workers = {json.loads(raw)["w"] for j in jobs for raw in r.hvals(f"wq:c:{j}:d")}
    return {
        "claim": _gaps(claims, DELAY_MS),
        "provider": _gaps(received, DELAY_MS),
        "workers_that_sent": len(workers),
    }


def accounts_part(tmp: Path, accounts: int = 500, seconds: float = 30.0) -> dict[str, Any]:
    with RedisServer(tmp) as store:
        r = store.client()
        settings = {"MESSAGE_DELAY": "1000", "MESSAGE_JITTER": "0", "WORKER_CONCURRENCY": "600"}
        with Waqtor(store.url, tmp / "accounts", **settings) as app:
            app.http.post("/api/queue/pause")
            for a in range(accounts):
                name = f"acct{a}"
                app.http.post("/api/accounts", json={"name": name, "tier": None, "warmup": False})
                body = {
                    "recipients": recipients(int(seconds) + 10, a * 1000),
                    "message": "Hi {name}",
                    "account": name,
                }
                resp = app.http.post("/api/messages/send-bulk", json=body)
                if resp.status_code != 200:
                    raise RuntimeError(resp.text[:300])
            app.start_workers(1, r)
            app.http.post("/api/queue/resume")
            time.sleep(5)  # every campaign has started its loop
            start_count = r.llen("wq:sim:outbox")
            started = time.monotonic()
            time.sleep(seconds)
            sent = r.llen("wq:sim:outbox") - start_count
            elapsed = time.monotonic() - started
            app.http.post("/api/queue/pause")
            entries = [json.loads(e) for e in r.lrange("wq:sim:outbox", 0, -1)]
    per_account: dict[str, list[int]] = {}
    for e in entries:
        per_account.setdefault(e["account"], []).append(int(e["ts"]))
    violations = 0
    for stamps in per_account.values():
        stamps.sort()
        violations += sum(1 for a, b in itertools.pairwise(stamps) if b - a < 1000)
    rate = sent / elapsed
    return {
        "accounts": accounts,
        "rate_per_s": round(rate, 1),
        "ideal_per_s": float(accounts),
        "ratio": round(rate / accounts, 3),
        "violations": violations,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pacing", description=__doc__)
    parser.add_argument("--part", choices=("gap", "accounts", "all"), default="all")
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=1, help="accounts part: runs (median shown)")
    args = parser.parse_args(argv)
    import os
    import platform

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"{os.cpu_count()} x {cpu}; load average at the start {os.getloadavg()}", flush=True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="waqtor-pacing-") as tmp:
        if args.part in ("gap", "all"):
            results["gap"] = gap_part(Path(tmp))
            g = results["gap"]
            for where in ("claim", "provider"):
                f = g[where]
                print(
                    f"pacing gap @{where:8s} sends={f['sends']} min={f['min_gap_ms']}ms "
                    f"mean={f['mean_gap_ms']}ms p99|gap-{DELAY_MS}|={f['p99_dev_ms']}ms "
                    f"violations={f['violations']}",
                    flush=True,
                )
        if args.part in ("accounts", "all"):
            runs = []
            for n in range(args.runs):
                load = os.getloadavg()[0]
                folder = Path(tmp) / f"run{n}"
                folder.mkdir()
                a = accounts_part(folder, args.accounts, args.seconds)
                a["load_at_start"] = round(load, 2)
                runs.append(a)
                print(
                    f"pacing accounts={a['accounts']} rate={a['rate_per_s']}/s "
                    f"ideal={a['ideal_per_s']}/s ratio={a['ratio']:.1%} "
                    f"violations={a['violations']} load={load:.2f}",
                    flush=True,
                )
            results["accounts"] = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2]
            results["accounts_runs"] = runs
            if args.runs > 1:
                print(f"median of {args.runs}: {results['accounts']['ratio']:.1%}", flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "pacing.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
