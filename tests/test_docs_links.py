"""The repository's markdown stays inside the repository: every relative link (and its
``#anchor``) resolves to a file here, nothing points above the checkout (``../shared``), and
the README stays a short start page that links to ``docs/``."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Not the project's own pages: tools, installed packages, generated output.
SKIP_DIRS = {".venv", "node_modules", "data", "test-artifacts", "__pycache__", "build", "dist"}
README_LIMIT = 6500

INLINE = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
CODE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files() -> list[Path]:
    out = []
    for path in ROOT.rglob("*.md"):
        parts = path.relative_to(ROOT).parts
        if any(p in SKIP_DIRS or p.startswith(".") for p in parts[:-1]):
            continue
        out.append(path)
    return sorted(out)


def _prose(text: str) -> str:
    """The text without code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", CODE.sub("", text))


def links(text: str) -> list[str]:
    prose = _prose(text)
    return INLINE.findall(prose) + REFERENCE.findall(prose)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(CODE.sub("", path.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def problems(path: Path) -> list[str]:
    found = []
    where = path.relative_to(ROOT)
    for target in links(path.read_text()):
        if EXTERNAL.match(target):
            if not target.startswith(("https://", "http://", "mailto:")):
                found.append(f"{where}: {target}: not a web link")
            continue
        file_part, _, anchor = target.partition("#")
        if file_part.startswith("/"):
            found.append(f"{where}: {target}: absolute path; link relative to the page")
            continue
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(ROOT):
            found.append(f"{where}: {target}: outside the repository")
        elif not resolved.exists():
            found.append(f"{where}: {target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            found.append(f"{where}: {target}: no heading #{anchor} in {resolved.name}")
    return found


def test_the_checks_catch_bad_links(tmp_path: Path) -> None:
    text = (
        "[a](../shared/seed/QUEUE_SYSTEM.md) [b](docs/nope.md) `[c](../x.md)` "
        "[d](https://example.com) [e](#the-top)\n\n```\n[f](../y.md)\n```\n"
    )
    assert links(text) == [
        "../shared/seed/QUEUE_SYSTEM.md",
        "docs/nope.md",
        "https://example.com",
        "#the-top",
    ]
    assert slug("`POST /api/messages/send-bulk`") == "post-apimessagessend-bulk"
    assert slug("Accounts, tiers and limits") == "accounts-tiers-and-limits"


def test_no_markdown_links_outside_the_repository() -> None:
    files = markdown_files()
    assert ROOT / "README.md" in files and ROOT / "docs" / "index.md" in files
    found = [p for path in files for p in problems(path)]
    assert not found, "broken or outside links:\n" + "\n".join(found)


def test_readme_is_a_short_start_page() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text) <= README_LIMIT, (
        f"README.md has {len(text)} characters (at most {README_LIMIT})"
    )
    assert "docs/index.md" in links(text)


def test_every_docs_page_is_in_the_index() -> None:
    index = links((ROOT / "docs" / "index.md").read_text())
    listed = {target.partition("#")[0] for target in index}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"index.md"}
    assert pages <= listed, f"docs pages missing from docs/index.md: {sorted(pages - listed)}"
