"""Memory and threads per WhatsApp Web session, with real neonize clients built offline.

``python -m bench.web_sessions [N]`` builds N clients (default 50), each on its own SQLite
session database in a temp dir, through waqtor's adapter, and prints the process's resident
memory and thread count before and after. Nothing connects (nothing may reach WhatsApp here),
so this is a lower bound: a connected session adds its connection thread, the Go runtime's
goroutines and the keys it loads.
"""

from __future__ import annotations

import gc
import sys
import tempfile
import threading
from pathlib import Path


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def os_threads() -> int:
    return len(list(Path("/proc/self/task").iterdir()))


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 50
    before_rss, before_threads = rss_kib(), os_threads()
    from waqtor.providers.web import neonize_client  # loads the Go library (once)

    with tempfile.TemporaryDirectory() as tmp:
        warm = neonize_client.NeonizeClient(Path(tmp) / "warm.db", lambda _e: None)
        gc.collect()
        base_rss, base_threads = rss_kib(), os_threads()
        clients = [
            neonize_client.NeonizeClient(Path(tmp) / f"acct{i}.db", lambda _e: None)
            for i in range(n)
        ]
        gc.collect()
        rss, threads = rss_kib(), os_threads()
        print(f"neonize: {n} clients built offline")
        print(
            f"  before neonize:            RSS {before_rss / 1024:.1f} MiB, "
            f"{before_threads} OS threads"
        )
        print(
            f"  after loading the library: RSS {base_rss / 1024:.1f} MiB, {base_threads} OS threads"
        )
        print(f"  after {n} clients:         RSS {rss / 1024:.1f} MiB, {threads} OS threads")
        print(
            f"  per client: {(rss - base_rss) / n:.1f} KiB, "
            f"{(threads - base_threads) / n:.2f} OS threads "
            f"(python threads: {threading.active_count()})"
        )
        del clients, warm
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
