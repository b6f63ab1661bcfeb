"""``waqtor accounts add`` takes the gateway providers, and refuses a gateway the environment
does not configure (its URL and key never come from the command line either)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from waqtor.cli.main import main


def test_accounts_add_a_waha_and_an_evolution_account(
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("WAQTOR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GATEWAY_MAIN_URL", "http://127.0.0.1:3000")
    assert main(["accounts", "add", "wa", "--provider", "waha", "--gateway", "main"]) == 0
    assert (
        main(
            [
                "accounts",
                "add",
                "evo",
                "--provider",
                "evolution",
                "--gateway",
                "main",
                "--session",
                "shop",
                "--new-contacts-cap",
                "5",
            ]
        )
        == 0
    )
    stored = redis.Redis.from_url(redis_url, decode_responses=True).hgetall("wq:accounts")
    wa, evo = json.loads(stored["wa"]), json.loads(stored["evo"])
    assert (wa["provider"], wa["gateway"], wa["session"], wa["tier"]) == (
        "waha",
        "main",
        "default",
        "new",
    )
    assert (evo["session"], evo["newContactsDailyCap"]) == ("shop", 5)
    capsys.readouterr()
    assert main(["accounts", "add", "x", "--provider", "waha", "--gateway", "nowhere"]) == 2
    assert "GATEWAY_NOWHERE_URL" in capsys.readouterr().err
    assert main(["accounts", "add", "y", "--provider", "evolution", "--gateway", "main"]) == 2
    assert "session" in capsys.readouterr().err
    assert main(["accounts", "list"]) == 0
    listing = capsys.readouterr().out
    assert "wa " in listing and "waha" in listing and "evolution" in listing
