"""The chaos harness, shortened: workers SIGKILLed, Redis restarted, 20 % provider faults."""

from __future__ import annotations

from bench.chaos import run


def test_chaos_no_duplicates_no_losses() -> None:
    result = run(kills=6, big=400, small=6, seed=11)
    assert result["finished"] == 1
    assert result["accepted"] == 400 + 6 * 15
    assert result["duplicates"] == 0
    assert result["lost"] == 0
    assert result["unknown"] <= result["kills"]
    assert result["sent"] + result["failed"] + result["unknown"] == result["accepted"]
