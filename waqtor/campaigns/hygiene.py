"""Recipient hygiene: opt-outs (suppression lists) and the identical-text warning."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from waqtor.domain.recipients import Parsed, Recipient
from waqtor.domain.templates import placeholders, variants
from waqtor.runtime.parts import HasSuppressions


async def suppressed_among(s: HasSuppressions, account: str, phones: list[str]) -> set[str]:
    return await s.suppressions.among(account, phones)


async def drop_suppressed(
    s: HasSuppressions, account: str, parsed: Parsed
) -> list[dict[str, object]]:
    """Remove opted-out numbers from ``parsed``; return them by request index."""
    hits = await suppressed_among(s, account, [r.phone for r in parsed.accepted])
    if not hits:
        return []
    dropped: list[dict[str, object]] = []
    kept: list[Recipient] = []
    kept_idx: list[int] = []
    kept_given: list[str | int] = []
    given = parsed.given if len(parsed.given) == len(parsed.accepted) else []
    for n, (rec, idx) in enumerate(zip(parsed.accepted, parsed.indexes, strict=True)):
        if rec.phone in hits:
            dropped.append({"index": idx, "phone": rec.phone})
        else:
            kept.append(rec)
            kept_idx.append(idx)
            if given:
                kept_given.append(given[n])
    parsed.accepted, parsed.indexes, parsed.given = kept, kept_idx, kept_given
    return dropped


def identical_text(parsed: Parsed, limit: int) -> list[str]:
    """Warn when more than ``limit`` recipients would get the very same text.

    Texts are compared by the values they use, so nothing has to be rendered.
    """
    if limit <= 0:
        return []
    shared = _shared_template_counts(parsed)
    if shared is not None:
        biggest = shared
        if biggest <= limit:
            return []
        return [_IDENTICAL.format(biggest)]
    used: dict[str, tuple[str, ...]] = {}
    groups: Counter[tuple[object, ...]] = Counter()
    for rec in parsed.accepted:
        template = rec.message or parsed.template
        names = used.get(template)
        if names is None:
            names = used[template] = tuple(sorted(placeholders(template) - {"date", "time"}))
        values = tuple(rec.phone if n == "phone" else rec.variables.get(n) for n in names)
        groups[(template, *values)] += 1
    spread = {t: variants(t) for t in used}
    biggest = max((n // spread[key[0]] for key, n in groups.items()), default=0)  # type: ignore[index]
    if biggest <= limit:
        return []
    return [_IDENTICAL.format(biggest)]


_IDENTICAL = (
    "{} recipients would get the identical text: personalise it (e.g. {{name}}) or vary it, "
    "as identical bulk messages are a spam signal"
)


def _shared_template_counts(parsed: Parsed) -> int | None:
    """The usual case, counted cheaply: every recipient uses the request's template, which
    uses at most one variable. The most recipients sharing one text (spintax spreads them),
    or None for any other case."""
    template = parsed.template
    if any(rec.message is not None for rec in parsed.accepted):
        return None
    names = placeholders(template) - {"date", "time"}
    if len(names) > 1:
        return None
    spread = variants(template)
    if not names:
        return len(parsed.accepted) // spread
    (name,) = names
    if name == "phone":  # phones are unique after the duplicate check
        return 1 // spread
    counts = Counter(rec.variables.get(name) for rec in parsed.accepted)
    return max(counts.values(), default=0) // spread


async def add(s: HasSuppressions, account: str, phones: Iterable[str]) -> int:
    items = list(phones)
    return await s.suppressions.add(account, items) if items else 0
