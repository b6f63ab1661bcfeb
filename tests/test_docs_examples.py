"""The request examples of ``docs/api.md``, run against a live ``waqtor serve`` (real HTTP, real
Redis), each answer compared in shape with the one the page shows.

An example is a fenced ``http`` block (request line, headers, a blank line, an optional body)
followed by a fenced ``json`` block: the documented answer, with its status after the language
when it is not 200 (a fence that opens with json and then 404). In requests, ``$KEY`` is the
API key and ``$JOB_ID`` the last ``jobId`` an answer carried. The examples run in page order.

Shapes are compared recursively: an object has exactly the documented keys (a documented key
that is missing, or an undocumented one, fails); ``"<name>"`` as a key stands for any key, its
value giving the shape of every key not listed; each element of an array must match one of the
documented elements (an empty documented array leaves them unchecked); a key ending in ``?`` may
be absent; strings, numbers and booleans must keep their type; ``null`` on either side stands
for a field that may be null.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import KEY, Proc, env_for, free_port, wait_http
from waqtor.cli.app import create_app
from waqtor.config import Settings

ROOT = Path(__file__).resolve().parent.parent
API_PAGE = ROOT / "docs" / "api.md"
FENCE = re.compile(r"^```(\S*)\s*(.*)$")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: `POST /api/queue/jobs/{jobId}/pause` in prose, and `/resume` after it on the same line.
ROUTE = re.compile(r"`(" + "|".join(METHODS) + r") (/[^`\s?]*)[^`]*`|`(/[a-z.-]+)`")


@dataclass
class Example:
    line: int
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    status: int = 200
    expected: Any = None

    def __str__(self) -> str:
        return f"docs/api.md:{self.line} {self.method} {self.path}"


def _blocks(text: str) -> list[tuple[int, str, str, str]]:
    """Every fenced block: (line of its opening fence, language, rest of the info, content)."""
    out: list[tuple[int, str, str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        out.append((start + 1, opening.group(1), opening.group(2).strip(), "\n".join(body)))
        i += 1
    return out


def parse_examples(text: str) -> list[Example]:
    blocks = _blocks(text)
    examples: list[Example] = []
    for n, (line, lang, _, content) in enumerate(blocks):
        if lang != "http":
            continue
        if n + 1 >= len(blocks) or blocks[n + 1][1] != "json":
            raise AssertionError(f"docs/api.md:{line}: an http example needs a json answer next")
        head, _, body = content.partition("\n\n")
        request_line, *header_lines = head.splitlines()
        method, path = request_line.split(None, 1)
        headers = {}
        for h in header_lines:
            name, _, value = h.partition(":")
            headers[name.strip()] = value.strip()
        info = blocks[n + 1][2]
        examples.append(
            Example(
                line=line,
                method=method,
                path=path.strip(),
                headers=headers,
                body=body.strip(),
                status=int(info) if info else 200,
                expected=json.loads(blocks[n + 1][3]),
            )
        )
    return examples


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _wildcard(key: str) -> bool:
    return key.startswith("<") and key.endswith(">")


def shape_errors(doc: Any, actual: Any, at: str = "$") -> list[str]:
    """How ``actual`` differs in shape from the documented ``doc`` (empty: it matches)."""
    if doc is None or actual is None:
        return []
    if _kind(doc) != _kind(actual):
        return [f"{at}: documented {_kind(doc)}, answered {_kind(actual)} ({actual!r:.80})"]
    if isinstance(doc, dict):
        errors: list[str] = []
        fixed = {k.removesuffix("?"): v for k, v in doc.items() if not _wildcard(k)}
        optional = {k.removesuffix("?") for k in doc if k.endswith("?")}
        any_key = [v for k, v in doc.items() if _wildcard(k)]
        for key in sorted(fixed.keys() - actual.keys() - optional):
            errors.append(f"{at}.{key}: documented, missing from the answer")
        for key in sorted(actual.keys() - fixed.keys()):
            if not any_key:
                errors.append(f"{at}.{key}: in the answer, not documented")
            else:
                errors += shape_errors(any_key[0], actual[key], f"{at}.{key}")
        for key in sorted(fixed.keys() & actual.keys()):
            errors += shape_errors(fixed[key], actual[key], f"{at}.{key}")
        return errors
    if isinstance(doc, list):
        errors = []
        for i, item in enumerate(actual if doc else []):
            tries: list[list[str]] = [shape_errors(alt, item, f"{at}[{i}]") for alt in doc]
            if all(tries):
                # None of the documented elements fits: report the nearest one's differences.
                errors += sorted(tries, key=len)[0]
        return errors
    return []


def test_shape_rules() -> None:
    """The comparison itself: it catches a lost field, a new field and a changed type."""
    doc = {
        "a": 1,
        "b": {"<status>": 0, "total": 0},
        "c": [{"x": "s"}, {"y": True}],
        "d": None,
        "e?": "",
    }
    fine = {"a": 2, "b": {"sent": 3, "total": 3}, "c": [{"y": False}], "d": 1, "e": "x"}
    assert shape_errors(doc, fine) == []
    assert shape_errors(doc, {"a": 2, "b": {"total": 1}, "c": [], "d": None}) == []
    assert shape_errors(doc, {"b": {"total": 1}, "c": [], "d": None}) == [
        "$.a: documented, missing from the answer"
    ]
    assert shape_errors(doc, {**fine, "f": 0}) == ["$.f: in the answer, not documented"]
    assert shape_errors(doc, {**fine, "a": "1", "b": {"total": 1, "sent": "x"}}) == [
        "$.a: documented number, answered string ('1')",
        "$.b.sent: documented number, answered string ('x')",
    ]
    assert shape_errors(doc, {**fine, "c": [{"x": "s", "z": 1}]}) == [
        "$.c[0].z: in the answer, not documented"
    ]


@pytest.fixture
def serve(tmp_path: Path, redis_url: str) -> Any:
    port = free_port()
    env = {
        **env_for(),
        "REDIS_URL": redis_url,
        "API_KEY": KEY,
        "WAQTOR_DATA_DIR": str(tmp_path / "data"),
    }
    proc = Proc(["serve", "--port", str(port)], env, tmp_path / "serve.log").start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/health")
        yield base
    finally:
        proc.stop()


def _expand(text: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        text = text.replace(f"${name}", value)
    return text


def _wait_healthy(client: httpx.Client) -> None:
    """The health example expects a live worker: serve's own reports within a heartbeat."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if client.get("/api/queue/health", headers={"X-API-Key": KEY}).status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError("the service did not become healthy")


def _send(client: httpx.Client, ex: Example, headers: dict[str, str], path: str) -> httpx.Response:
    """One example's request. A documented success answered 409 is tried again for a few
    seconds: the step before it (a campaign canceled, the queue resumed) may still be with a
    worker."""
    deadline = time.monotonic() + 5
    while True:
        resp = client.request(ex.method, path, headers=headers, content=ex.body or None)
        if resp.status_code != 409 or ex.status == 409 or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def test_every_api_example_answers_as_documented(serve: str) -> None:
    examples = parse_examples(API_PAGE.read_text())
    assert len(examples) >= 25, "docs/api.md lost its examples"
    variables = {"KEY": KEY, "JOB_ID": ""}
    failures: list[str] = []
    with httpx.Client(base_url=serve, timeout=20) as client:
        _wait_healthy(client)
        for ex in examples:
            headers = {k: _expand(v, variables) for k, v in ex.headers.items()}
            resp = _send(client, ex, headers, _expand(ex.path, variables))
            if resp.status_code != ex.status:
                failures.append(
                    f"{ex}: status {resp.status_code}, documented {ex.status}: {resp.text:.300}"
                )
                continue
            answer = resp.json()
            errors = shape_errors(ex.expected, answer)
            if errors:
                failures.append(f"{ex}:\n    " + "\n    ".join(errors))
            data = answer.get("data") if isinstance(answer, dict) else None
            if isinstance(data, dict) and isinstance(data.get("jobId"), str):
                variables["JOB_ID"] = data["jobId"]
    assert not failures, "docs/api.md does not match the service:\n" + "\n".join(failures)


def _route(path: str) -> str:
    """A path with its parameters blanked: ``/api/queue/jobs/{}/pause``."""
    return re.sub(r"\{[^}]*\}|\$[A-Z_]+", "{}", path.split("?")[0])


def documented_routes(text: str) -> set[tuple[str, str]]:
    """(method, path) of every http example, and of every `METHOD /path` in the prose (with the
    `/sibling` shorthand that follows one on the same line)."""
    found = {(ex.method, _route(ex.path)) for ex in parse_examples(text)}
    for line in text.splitlines():
        last: tuple[str, str] | None = None
        for method, path, sibling in ROUTE.findall(line):
            if method:
                last = (method, _route(path))
                found.add(last)
            elif last is not None:
                found.add((last[0], last[1].rsplit("/", 1)[0] + sibling))
    return found


def test_every_route_of_the_service_is_documented(tmp_path: Path) -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", api_key=KEY, data_dir=tmp_path)
    app = create_app(settings, "redis://127.0.0.1:1/0", [KEY], run_worker=False)
    routes = {
        (method.upper(), _route(path))
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert len(routes) >= 35
    missing = routes - documented_routes(API_PAGE.read_text())
    assert not missing, f"routes missing from docs/api.md: {sorted(missing)}"
