"""Message templates: ``Hello {name}!`` rendered per recipient.

Only ``{identifier}`` placeholders are substituted, by plain lookup in a dict: never
``str.format``, so ``{__class__}``, ``{0}`` or ``{a.b}`` cannot reach Python objects. A
placeholder a recipient lacks, with no default, is an error for that recipient; it is never
sent as the literal ``{foo}``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Innermost ``{a|b|c}``: spintax, one choice per recipient.
SPIN = re.compile(r"\{([^{}|]*(?:\|[^{}|]*)+)\}")
MAX_MESSAGE_CHARS = 4096  # WhatsApp's limit for a text body
DEFAULT_NAME = "Valued Customer"


class TemplateError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_NONE: frozenset[str] = frozenset()


def placeholders(template: str) -> frozenset[str]:
    """Variables the template may use (in any spintax branch)."""
    if "{" not in template:  # a recipient's own plain text: no cache entry for each one
        return _NONE
    return _placeholders(template)


@lru_cache(maxsize=256)
def _placeholders(template: str) -> frozenset[str]:
    # Cached: a 100,000-recipient list usually shares one template.
    return frozenset(PLACEHOLDER.findall(template))


def builtin_values(phone: str, signature: str, now: datetime) -> dict[str, str]:
    """Variables every recipient has unless it gives its own."""
    return {
        "name": DEFAULT_NAME,
        "phone": phone,
        "signature": signature,
        "date": now.strftime("%Y-%m-%d"),
        "time": now.strftime("%H:%M"),
    }


BUILTINS = frozenset({"name", "phone", "signature", "date", "time"})


def missing(template: str, variables: Mapping[str, object]) -> list[str]:
    """Placeholders in ``template`` that neither ``variables`` nor the built-ins provide."""
    if "{" not in template:  # plain text, as the seed's clients send one per recipient
        return []
    need = _needed(template)
    if not need:  # the usual case, checked once per recipient of a large list
        return []
    return sorted(p for p in need if p not in variables)


@lru_cache(maxsize=256)
def _needed(template: str) -> frozenset[str]:
    return _placeholders(template) - BUILTINS


def spin(template: str, seed: str | None) -> str:
    """Resolve spintax, innermost first. The same ``seed`` (campaign id and recipient index)
    always picks the same words, so a report can show exactly what was sent."""
    if "|" not in template:
        return template
    rng = random.Random(seed)
    previous = None
    while previous != template:
        previous = template
        template = SPIN.sub(lambda m: rng.choice(m.group(1).split("|")), template)
    return template


def variants(template: str) -> int:
    """How many different texts spintax can make of ``template`` (nesting counted loosely)."""
    if "|" not in template:
        return 1
    total = 1
    for match in SPIN.finditer(template):
        total *= len(match.group(1).split("|"))
    return total


def render(
    template: str,
    variables: Mapping[str, object],
    builtins: Mapping[str, str],
    seed: str | None = None,
) -> str:
    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in variables and variables[key] is not None and variables[key] != "":
            return str(variables[key])
        if key in builtins:
            return builtins[key]
        raise TemplateError(f"missing variable {{{key}}}")

    text = PLACEHOLDER.sub(sub, spin(template, seed))
    if len(text) > MAX_MESSAGE_CHARS:
        raise TemplateError(f"rendered message is {len(text)} characters; the limit is 4096")
    return text
