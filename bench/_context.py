"""What the parts of one benchmark run share: a temp dir, the baseline install, a cache."""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench._baseline import Baseline
from bench._report import Part, machine, save, table


@dataclass
class Context:
    root: Path
    baseline: Baseline
    #: Figures one part measured that another reuses (the throughput run's command counts).
    cache: dict[str, Any] = field(default_factory=dict)
    redis_version: str = ""

    def scratch(self, name: str) -> Path:
        """A fresh directory under the run's temp dir."""
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so every ``finally`` stops its children.
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def open_context() -> Iterator[Context]:
    root = Path(tempfile.mkdtemp(prefix="waqtor-bench-"))
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        yield Context(root=root, baseline=Baseline(root))
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(root, ignore_errors=True)


def standalone(run: Callable[[Context], Part]) -> int:
    """``python -m bench.<part>``: run one part, print its table, write its JSON."""
    with open_context() as ctx:
        before = machine()
        print(where(before, "at the start"), flush=True)
        part = run(ctx)
        info = machine(ctx.redis_version)
        print(table(part.rows))
        print(where(info, "at the end"))
        path = save(part, {"machine": info, "loadavg_at_start": before["loadavg"]})
        print(f"written: {path}")
    return 0


def where(info: dict[str, Any], when: str) -> str:
    """The machine beside the figures: CPU model, cores, and the load average."""
    one, five, fifteen = info["loadavg"]
    return (
        f"{info['nproc']} x {info['cpu']}; load average {when} {one:.2f} {five:.2f} "
        f"{fifteen:.2f} (1, 5, 15 min)"
    )
