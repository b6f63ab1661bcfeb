"""A message template parsed once, in one pass: text, ``{placeholders}`` and ``{a|b|c}`` choices.

Rendering walks the parsed tree, so its cost is linear in the template's length whatever the
nesting (the regex it replaces re-scanned the whole text once per nesting level: about 0.1 s per
recipient for ``"{a|" * 1023 + "x" + "}" * 1023``). Templates past :data:`MAX_DEPTH` nested
groups or :data:`MAX_GROUPS` choice groups are refused, with the limit named.

- ``{name}`` (an identifier alone) is a placeholder.
- ``{…|…}`` (a ``|`` at the group's own level) is a choice; options may hold placeholders and
  further choices. A ``|`` outside any group is plain text.
- Any other ``{…}`` (``{0}``, ``{ a b }``) is plain text with its braces, and so is a brace
  without a partner.

Choices are drawn in the order the regex resolved them (innermost first, then left to right),
one ``Random.choice`` each, so a seed picks the same words as before for every template the
regex could read: a report re-rendered after an upgrade shows what was sent.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

#: Deepest nesting of ``{…}`` groups a template may have.
MAX_DEPTH = 10
#: Most ``{a|b}`` choice groups a template may have.
MAX_GROUPS = 1000

_SPECIAL = re.compile(r"[{}|]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TemplateError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Var:
    name: str


@dataclass(slots=True)
class Choice:
    options: list[list[Part]]
    order: int = 0  # position in the draw order
    indexes: range = range(0)  # range(len(options)), built once: drawn from per recipient


Part = str | Var | Choice


@dataclass(slots=True)
class Template:
    parts: list[Part]
    names: frozenset[str]  # placeholders, in any branch
    choices: int
    depth: int
    variants: int  # how many different texts the choices can make
    _ordered: list[Choice] = field(default_factory=list)

    def render(self, lookup: Callable[[str], str], seed: str | None) -> str:
        """The text for one recipient; ``lookup`` gives a placeholder's value (or raises)."""
        if not self.choices and not self.names:
            return "".join(self.parts)  # type: ignore[arg-type]  # plain text only
        if not self.choices:  # text and placeholders only (the usual "Hi {name}"): no walk
            return "".join(
                [part if type(part) is str else lookup(part.name) for part in self.parts]  # type: ignore[union-attr]
            )
        picks: list[int] = []
        if self.choices:
            draw = random.Random(seed).choice
            picks = [draw(c.indexes) for c in self._ordered]
        out: list[str] = []
        _emit(self.parts, picks, lookup, out)
        return "".join(out)


def _emit(
    parts: list[Part], picks: list[int], lookup: Callable[[str], str], out: list[str]
) -> None:
    for part in parts:
        if type(part) is str:
            out.append(part)
        elif type(part) is Var:
            out.append(lookup(part.name))
        else:
            assert isinstance(part, Choice)
            _emit(part.options[picks[part.order]], picks, lookup, out)


@lru_cache(maxsize=256)
def parse(text: str) -> Template:
    """The parsed template (cached: a 100,000-recipient list usually shares one). Raises
    TemplateError when it nests deeper than MAX_DEPTH or has more than MAX_GROUPS choices."""
    return _Parser(text).run()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = [(m.start(), m.group()) for m in _SPECIAL.finditer(text)]
        self.close_of: dict[int, int] = {}
        self.names: set[str] = set()
        self.found: list[tuple[int, int, Choice]] = []  # (height, position, choice)

    def run(self) -> Template:
        depth = self._match()
        if depth > MAX_DEPTH:
            raise TemplateError(
                f"spintax is nested {depth} levels deep; the limit is {MAX_DEPTH} levels"
            )
        groups = sum(1 for _, ch in self.tokens if ch == "|")  # an upper bound, cheap
        if groups > MAX_GROUPS:
            groups = self._count_choices()
            if groups > MAX_GROUPS:
                raise TemplateError(
                    f"{groups} spintax choice groups; the limit is {MAX_GROUPS} groups"
                )
        options, _, _ = self._group(0, 0, len(self.text), in_group=False)
        ordered = [c for _, _, c in sorted(self.found, key=lambda f: (f[0], f[1]))]
        for rank, choice in enumerate(ordered):
            choice.order = rank
            choice.indexes = range(len(choice.options))
        parts = options[0]
        return Template(
            parts=parts,
            names=frozenset(self.names),
            choices=len(ordered),
            depth=depth,
            variants=_variants(parts),
            _ordered=ordered,
        )

    def _match(self) -> int:
        """Pair the braces (a stack, one pass); returns the deepest nesting of paired ones."""
        stack: list[int] = []
        for pos, ch in self.tokens:
            if ch == "{":
                stack.append(pos)
            elif ch == "}" and stack:
                self.close_of[stack.pop()] = pos
        depth = deepest = 0
        closes = set(self.close_of.values())
        for pos, ch in self.tokens:
            if ch == "{" and pos in self.close_of:
                depth += 1
                deepest = max(deepest, depth)
            elif ch == "}" and pos in closes:
                depth -= 1
        return deepest

    def _count_choices(self) -> int:
        """Paired groups with a ``|`` at their own level (only needed near the limit)."""
        stack: list[list[bool]] = []
        count = 0
        closes = set(self.close_of.values())
        for pos, ch in self.tokens:
            if ch == "{" and pos in self.close_of:
                stack.append([False])
            elif ch == "}" and pos in closes:
                count += stack.pop()[0]
            elif ch == "|" and stack:
                stack[-1][0] = True
        return count

    def _group(
        self, ti: int, start: int, stop: int, *, in_group: bool
    ) -> tuple[list[list[Part]], int, int]:
        """``text[start:stop]`` split at its own ``|``; ``ti`` is its first token. Returns the
        options, the index of the first token at or after ``stop`` and the height (choices
        nested inside, counting this level's)."""
        text, tokens = self.text, self.tokens
        options: list[list[Part]] = [[]]
        current = options[0]
        pos = start
        height = 0
        while ti < len(tokens) and tokens[ti][0] < stop:
            at, ch = tokens[ti]
            if at > pos:
                current.append(text[pos:at])
            if ch == "|" and in_group:
                current = []
                options.append(current)
                pos, ti = at + 1, ti + 1
            elif ch == "{" and at in self.close_of:
                end = self.close_of[at]
                inner, ti, inner_height = self._group(ti + 1, at + 1, end, in_group=True)
                ti += 1  # the closing brace
                pos = end + 1
                height = max(height, inner_height)
                if len(inner) > 1:
                    choice = Choice(inner)
                    self.found.append((inner_height + 1, at, choice))
                    height = max(height, inner_height + 1)
                    current.append(choice)
                elif _IDENTIFIER.fullmatch(text, at + 1, end):
                    name = text[at + 1 : end]
                    self.names.add(name)
                    current.append(Var(name))
                else:  # literal braces around whatever is inside
                    current.append("{")
                    current.extend(inner[0])
                    current.append("}")
            else:  # a lone '|', or a brace without a partner: text
                current.append(ch)
                pos, ti = at + 1, ti + 1
        if pos < stop:
            current.append(text[pos:stop])
        return [_joined(option) for option in options], ti, height


def _joined(parts: list[Part]) -> list[Part]:
    """Runs of text as one string each (joined once: linear, however many pieces)."""
    out: list[Part] = []
    run: list[str] = []
    for part in parts:
        if type(part) is str:
            run.append(part)
            continue
        if run:
            out.append("".join(run))
            run = []
        out.append(part)
    if run:
        out.append("".join(run))
    return out


def _variants(parts: list[Part]) -> int:
    total = 1
    for part in parts:
        if isinstance(part, Choice):
            total *= sum(_variants(option) for option in part.options)
    return total
