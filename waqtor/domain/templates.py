"""Message templates: ``Hello {name}!`` rendered per recipient.

Only ``{identifier}`` placeholders are substituted, by plain lookup in a dict: never
``str.format``, so ``{__class__}``, ``{0}`` or ``{a.b}`` cannot reach Python objects. A
placeholder a recipient lacks, with no default, is an error for that recipient; it is never
sent as the literal ``{foo}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache

from waqtor.domain.spintax import MAX_DEPTH, MAX_GROUPS, TemplateError, parse

__all__ = [
    "BUILTINS",
    "DEFAULT_NAME",
    "MAX_DEPTH",
    "MAX_GROUPS",
    "MAX_MESSAGE_CHARS",
    "TemplateError",
    "builtin_values",
    "check",
    "missing",
    "placeholders",
    "render",
    "spin",
    "variants",
]

MAX_MESSAGE_CHARS = 4096  # WhatsApp's limit for a text body
DEFAULT_NAME = "Valued Customer"


def check(template: str) -> None:
    """Raise TemplateError when ``template`` is past a limit: WhatsApp's 4,096 characters,
    MAX_DEPTH nested groups or MAX_GROUPS choice groups. Linear in its length."""
    if len(template) > MAX_MESSAGE_CHARS:
        raise TemplateError(f"longer than {MAX_MESSAGE_CHARS} characters (WhatsApp's limit)")
    if "{" in template:  # plain text (WaQtor's own message per recipient) needs no parse
        parse(template)


_NONE: frozenset[str] = frozenset()


def placeholders(template: str) -> frozenset[str]:
    """Variables the template may use (in any spintax branch)."""
    if "{" not in template:  # a recipient's own plain text: no cache entry for each one
        return _NONE
    return parse(template).names


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
    if "{" not in template:  # plain text, as WaQtor's clients send one per recipient
        return []
    need = _needed(template)
    if not need:  # the usual case, checked once per recipient of a large list
        return []
    return sorted(p for p in need if p not in variables)


@lru_cache(maxsize=256)
def _needed(template: str) -> frozenset[str]:
    return parse(template).names - BUILTINS


def spin(template: str, seed: str | None) -> str:
    """Resolve spintax only, placeholders left as they are. The same ``seed`` (campaign id and
    recipient index) always picks the same words, so a report can show exactly what was sent."""
    if "{" not in template:
        return template
    return parse(template).render(lambda name: "{" + name + "}", seed)


def variants(template: str) -> int:
    """How many different texts spintax can make of ``template``."""
    if "|" not in template or "{" not in template:
        return 1
    return parse(template).variants


def render(
    template: str,
    variables: Mapping[str, object],
    builtins: Mapping[str, str],
    seed: str | None = None,
) -> str:
    def value(key: str) -> str:
        if key in variables and variables[key] is not None and variables[key] != "":
            return str(variables[key])
        if key in builtins:
            return builtins[key]
        raise TemplateError(f"missing variable {{{key}}}")

    text = template if "{" not in template else parse(template).render(value, seed)
    if len(text) > MAX_MESSAGE_CHARS:
        raise TemplateError(f"rendered message is {len(text)} characters; the limit is 4096")
    return text
