"""Rows of figures, the printed table, and the JSON written under ``bench/results/``."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    """One figure. ``met`` is None when the row has no target."""

    part: str
    metric: str
    ours: float | None
    unit: str
    baseline: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Part:
    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: list[Row]) -> str:
    head = ("part", "metric", "ours", "baseline", "unit", "target", "met", "note")
    body = [
        (
            r.part,
            r.metric,
            _fmt(r.ours),
            _fmt(r.baseline),
            r.unit,
            r.target,
            {True: "yes", False: "NO", None: ""}[r.met],
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [head, *body]) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), rule, *(line(b) for b in body)])


def _git(where: Path, *args: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(where), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(redis_version: str = "") -> dict[str, Any]:
    import waqtor

    source = Path(waqtor.__file__).resolve().parent
    node = shutil.which("node")
    node_version = _version_of([node, "--version"]) if node else ""
    return {
        "nproc": os.cpu_count(),
        # Other work on the machine skews every figure; the 1/5/15-minute load says how much.
        "loadavg": os.getloadavg(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "redis": redis_version,
        "node": node_version,
        # The waqtor measured is the one the child processes import (PYTHONPATH may point at a
        # snapshot); its commit, and whether that checkout has uncommitted changes.
        "waqtor_path": str(source),
        "commit": _git(source, "rev-parse", "--short", "HEAD"),
        "dirty": bool(_git(source, "status", "--porcelain", "--", ".")),
    }


def _version_of(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def save(part: Part, extra: dict[str, Any] | None = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "part": part.name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
        "rows": [asdict(r) for r in part.rows],
        "data": part.data,
    }
    path = RESULTS / f"{part.name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
