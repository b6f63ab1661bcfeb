"""The seed's design in Node (``bench/baseline/``), installed with npm into a temp dir."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bench._procs import run

SOURCE = Path(__file__).resolve().parent / "baseline"
FILES = ("package.json", "seed_bench.js")


class Baseline:
    def __init__(self, parent: Path) -> None:
        self.dir = parent / "baseline"
        self._installed = False

    def install(self) -> None:
        """``npm install --prefix <tmp>``: bull@4 and ioredis, never into the repository."""
        if self._installed:
            return
        for tool in ("node", "npm"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} not found on PATH: the baseline needs Node and npm")
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copy(SOURCE / name, self.dir / name)
        run(
            [
                "npm",
                "install",
                "--prefix",
                str(self.dir),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--omit=dev",
            ],
            timeout_s=300,
            cwd=self.dir,
        )
        self._installed = True

    def versions(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in ("bull", "ioredis"):
            meta = self.dir / "node_modules" / name / "package.json"
            if meta.exists():
                out[name] = str(json.loads(meta.read_text())["version"])
        return out

    def run(self, mode: str, redis_url: str, *, timeout_s: float, **args: Any) -> dict[str, Any]:
        self.install()
        payload = json.dumps({**args, "timeoutS": timeout_s})
        out = run(
            ["node", "seed_bench.js", mode, redis_url, payload],
            timeout_s=timeout_s + 30,
            cwd=self.dir,
        )
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result
