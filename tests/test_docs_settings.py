"""Every setting the code reads is documented in ``docs/settings.md``, by its variable name."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices

from waqtor.config import Settings

PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def variable_names() -> list[str]:
    names = []
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names += [str(choice).upper() for choice in alias.choices]
        else:
            names.append(name.upper())
    return names


def test_every_setting_is_documented() -> None:
    text = PAGE.read_text()
    missing = [name for name in variable_names() if f"`{name}`" not in text]
    assert not missing, f"docs/settings.md does not document: {missing}"


def test_the_check_sees_every_field() -> None:
    names = variable_names()
    assert "WAQTOR_DATA_DIR" in names and "MESSAGE_DELAY" in names and len(names) >= 60
