"""``waqtor --help`` and every subcommand's help read as plain text: no reST markup."""

from __future__ import annotations

import pytest

from waqtor.cli.main import main

COMMANDS = [
    [],
    ["serve"],
    ["worker"],
    ["accounts"],
    ["accounts", "list"],
    ["accounts", "add"],
    ["accounts", "pause"],
    ["accounts", "resume"],
    ["accounts", "remove"],
    ["web"],
    ["web", "login"],
    ["send"],
    ["jobs"],
    ["job"],
    ["pause"],
    ["resume"],
    ["cancel"],
    ["report"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "waqtor")
def test_help_is_plain_text(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: waqtor")
    assert "``" not in text and ":class:" not in text, text


def test_every_verb_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["accounts", "--help"])
    text = capsys.readouterr().out
    for verb in ("list", "add", "pause", "resume", "remove"):
        described = [row for row in text.splitlines() if row.strip().startswith(verb + " ")]
        assert described, f"{verb} has no help text"
