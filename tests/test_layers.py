"""The import rules of the layers, checked over the source with ``ast``.

domain and config at the bottom, then store (the only Redis user), engine.py (the only bullmq
user), providers, runtime, sending, campaigns, web (the HTTP plumbing both faces share), api
and dashboard (side by side, never each other), cli at the top. A module may import its own
layer and any layer below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "waqtor"

#: Layer of each top-level part of ``waqtor``, lowest first. api and dashboard share a rank but
#: are kept apart by ``APART``.
RANK = {
    "": 0,  # waqtor/__init__.py: the version, nothing else
    "domain": 0,
    "config": 0,
    "store": 1,
    "engine": 2,
    "providers": 3,
    "runtime": 4,
    "sending": 5,
    "campaigns": 6,
    "web": 7,
    "api": 8,
    "dashboard": 8,
    "cli": 9,
    "__main__": 9,
    # The compat shim for ``waqtor.callbacks.verify``, which the docs tell users to call.
    "callbacks": 9,
    # The HTTP client: imports nothing of the service (``STANDALONE``); the CLI uses it.
    "client": 0,
}
APART = {("api", "dashboard"), ("dashboard", "api")}
#: Parts that import no other part of ``waqtor``: they can be used (or copied) on their own.
STANDALONE = {"client"}
#: Third-party packages only one part of ``waqtor`` may import.
OWNED = {"redis": {"store", "engine"}, "bullmq": {"engine"}}


def _part(module: str) -> str:
    """``waqtor.store.keys`` -> ``store``; ``waqtor.engine`` -> ``engine``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append((".".join(parts), path))
    return found


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            # ``from waqtor import api`` names the part in the alias, not the module.
            if target == "waqtor":
                out.extend((node.lineno, f"waqtor.{alias.name}") for alias in node.names)
    return out


def violations() -> list[str]:
    found: list[str] = []
    for module, path in _modules():
        part = _part(module)
        if part not in RANK:
            found.append(f"{module}: not placed in a layer (add it to RANK)")
            continue
        for line, target in _imports(path, module):
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            top = target.split(".")[0]
            if top in OWNED and part not in OWNED[top]:
                found.append(f"{where}: {part} imports {top} (only {sorted(OWNED[top])} may)")
            if top != "waqtor" or target == "waqtor":
                continue
            other = _part(target)
            if other == part or other not in RANK:
                continue
            if part in STANDALONE:
                found.append(f"{where}: {part} imports {target} (it stands alone)")
            elif (part, other) in APART:
                found.append(f"{where}: {part} imports {other} (they never import each other)")
            elif RANK[other] > RANK[part]:
                found.append(f"{where}: {part} imports {target}, a higher layer")
    return found


def test_every_layer_imports_only_downward() -> None:
    assert violations() == []


#: Attributes that reach Redis itself (a client, its scripts or pipelines): only the store's
#: readers and writers, and the engine, use them.
REDIS_ATTRIBUTES = frozenset({"redis", "scripts", "pipeline", "register_script", "eval", "evalsha"})


def redis_reaches() -> list[str]:
    found: list[str] = []
    for module, path in _modules():
        if _part(module) in OWNED["redis"]:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in REDIS_ATTRIBUTES:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: .{node.attr}")
    return found


def test_only_the_store_and_the_engine_reach_redis() -> None:
    """No ``s.store.redis.get(...)`` above the store: a command goes through a typed reader
    or writer of ``waqtor.store``."""
    assert redis_reaches() == []


def test_the_redis_check_catches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "waqtor"
    for part in ("store", "dashboard"):
        (root / part).mkdir(parents=True)
        (root / part / "__init__.py").write_text("")
        (root / part / "m.py").write_text("async def f(s):\n    await s.store.redis.get('k')\n")
    (root / "__init__.py").write_text("")
    monkeypatch.setitem(globals(), "PACKAGE", root)
    assert redis_reaches() == ["waqtor/dashboard/m.py:2: .redis"]


@pytest.mark.parametrize(
    ("part", "source", "expected"),
    [
        ("store", "from waqtor.sending import callbacks\n", "a higher layer"),
        ("api", "from waqtor.dashboard.errors import X\n", "never import each other"),
        ("dashboard", "import waqtor.api.errors\n", "never import each other"),
        ("sending", "import redis\n", "imports redis"),
        ("store", "import bullmq\n", "imports bullmq"),
        ("providers", "from redis.asyncio import Redis\n", "imports redis"),
        ("providers", "from waqtor import runtime\n", "a higher layer"),
        ("client", "from waqtor.domain import phones\n", "stands alone"),
    ],
)
def test_the_checker_catches(
    part: str, source: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checker itself fails on each kind of breach (run over a throwaway package)."""
    root = tmp_path / "waqtor"
    (root / part).mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / part / "__init__.py").write_text("")
    (root / part / "bad.py").write_text(source)
    monkeypatch.setitem(globals(), "PACKAGE", root)
    found = violations()
    assert len(found) == 1 and expected in found[0], found


#: The composition roots: the only modules that may name ``Services`` (the whole bag of one
#: process's parts). Everything above the store takes narrow interfaces instead: protocols
#: composed of ``waqtor.runtime.parts`` (``Controls``, ``Submits``, ``Parts[...]``, ``Svc[...]``).
COMPOSITION_ROOTS = frozenset(
    {
        "waqtor.runtime.services",  # defines and builds it
        "waqtor.api.deps",  # hands it to the API's routes (``Parts[...]``)
        "waqtor.api.app",  # the API's app factory
        "waqtor.dashboard.auth",  # hands it to the dashboard's pages (``Svc[...]``)
        "waqtor.sending.worker",  # the worker process: owns the parts, closes them
    }
)
#: Parts of ``waqtor`` that may name it anywhere: process entry points.
ROOT_PARTS = frozenset({"cli", "__main__"})


def services_namers() -> list[str]:
    """Modules outside the composition roots that name ``Services`` (import, annotation or
    any other use), one line each."""
    found: list[str] = []
    for module, path in _modules():
        if module in COMPOSITION_ROOTS or _part(module) in ROOT_PARTS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            named = (
                (isinstance(node, ast.Name) and node.id == "Services")
                or (isinstance(node, ast.Attribute) and node.attr == "Services")
                or (
                    isinstance(node, ast.ImportFrom)
                    and any(alias.name == "Services" for alias in node.names)
                )
                or (isinstance(node, ast.Constant) and node.value == "Services")
            )
            if named:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_only_composition_roots_name_services() -> None:
    """Everything above the store receives narrow interfaces, not the whole ``Services``:
    a function declares the parts it uses (``waqtor.runtime.parts``), and mypy holds it to
    them."""
    assert services_namers() == []


def test_every_part_is_checked_against_services() -> None:
    """``parts.Every`` (which mypy checks ``Services`` against, in ``services.py``) lists every
    ``Has*`` part, so FastAPI's untyped injection cannot hand a route a bag that lacks one."""
    tree = ast.parse((PACKAGE / "runtime" / "parts.py").read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    parts = {name for name in classes if name.startswith("Has")}
    every = {ast.unparse(base) for base in classes["Every"].bases} - {"Protocol"}
    assert len(parts) >= 18 and every == parts


@pytest.mark.parametrize(
    "source",
    [
        "from waqtor.runtime.services import Services\n",
        "from __future__ import annotations\nimport waqtor.runtime.services as rs\n"
        "def f(s: rs.Services) -> None: ...\n",
        "from typing import Annotated\nSvc = Annotated['Services', 0]\n",
    ],
)
def test_the_services_check_catches(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "waqtor"
    for part in ("campaigns", "api", "cli"):
        (root / part).mkdir(parents=True)
        (root / part / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "campaigns" / "bad.py").write_text(source)
    # The same source in a composition root, and in the CLI, is fine.
    (root / "api" / "deps.py").write_text(source)
    (root / "cli" / "main.py").write_text(source)
    monkeypatch.setitem(globals(), "PACKAGE", root)
    found = services_namers()
    assert len(found) == 1 and found[0].startswith("waqtor/campaigns/bad.py:"), found


def test_relative_imports_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "waqtor"
    (root / "store").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "store" / "__init__.py").write_text("")
    (root / "store" / "bad.py").write_text("from ..campaigns import x\nfrom . import keys\n")
    monkeypatch.setitem(globals(), "PACKAGE", root)
    assert [v.split(": ", 1)[1] for v in violations()] == [
        "store imports waqtor.campaigns, a higher layer"
    ]
