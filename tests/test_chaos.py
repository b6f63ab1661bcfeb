"""The chaos harness, shortened: workers SIGKILLed, Redis restarted, 20 % provider faults."""

from __future__ import annotations

from bench.chaos import NEVER_SENT_PER_KILL, run


def test_chaos_no_duplicates_no_losses() -> None:
    result = run(kills=6, big=400, small=6, seed=11)
    assert result["finished"] == 1
    assert result["accepted"] == 400 + 6 * 15
    assert result["duplicates"] == 0
    assert result["lost"] == 0
    assert result["unknown"] <= result["kills"]
    assert result["sent"] + result["failed"] + result["unknown"] == result["accepted"]


def test_chaos_in_batches_no_duplicates_no_losses() -> None:
    """The batch send path (no delay) under the same damage: kills land while a batch of up
    to 100 is in flight at the provider, yet no recipient is sent twice or lost."""
    result = run(
        kills=6,
        big=1500,
        small=6,
        seed=12,
        delay_ms=0,
        latency_ms=300,
        faults={"transient": 0.02, "ambiguous": 0.01},
    )
    assert result["finished"] == 1
    assert result["accepted"] == 1500 + 6 * 15
    assert result["inflight_at_kills"] > 0  # the kills did land while sends were in flight
    assert result["duplicates"] == 0
    assert result["lost"] == 0
    assert result["unknown"] <= result["kills"]
    assert result["sent"] + result["failed"] + result["unknown"] == result["accepted"]


def test_chaos_on_the_cloud_api_no_duplicates_and_webhooks_settle_the_unknowns() -> None:
    """The Cloud API provider against a fake Graph API process that sends Meta's status
    webhooks; workers SIGKILLed with many requests in flight. Nothing reaches the fake twice,
    nothing is lost, and every unknown whose message reached the fake is settled by its
    webhook; the only ones left unknown never left a killed worker."""
    result = run(kills=4, big=1500, small=4, seed=13, delay_ms=0, cloud=True)
    assert result["finished"] == 1
    assert result["accepted"] == 1500 + 4 * 15
    assert result["inflight_at_kills"] > 0
    assert result["duplicates"] == 0
    assert result["lost"] == 0
    assert result["unsettled_sent"] == 0
    assert result["unknown"] == result["unknown_never_sent"] <= NEVER_SENT_PER_KILL * 4
    assert result["sent"] + result["failed"] + result["unknown"] == result["accepted"]
    assert result["webhooks"] > 0 and result["throttled"] == 0
