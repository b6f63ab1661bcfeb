"""Rules written once: the caps in force on a day (from the injected clock), worker liveness,
and the instant-or-queued decision shared by the API and the dashboard."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from tests.conftest import FakeClock, make_settings, recipients
from waqtor.campaigns import submission
from waqtor.domain.accounts import Account, Tier, caps_on, effective_caps
from waqtor.domain.clock import day_of
from waqtor.domain.liveness import MISSED_BEATS, alive
from waqtor.domain.recipients import parse
from waqtor.runtime.services import build

DAY_MS = 86_400_000


def _ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp() * 1000)


def test_caps_go_by_the_clocks_day_not_the_machines() -> None:
    start = date(2031, 3, 1)
    account = Account(name="a", tier=Tier.REGULAR, startDate=start)
    ten_days_on = _ms(start + timedelta(days=10))
    assert day_of(ten_days_on) == start + timedelta(days=10)
    assert caps_on(account, ten_days_on) == effective_caps(
        account, start + timedelta(days=10), ten_days_on
    )
    # Warm-up grows with the clock's days: on the start day the cap is far lower.
    first, later = caps_on(account, _ms(start)).daily, caps_on(account, ten_days_on).daily
    assert first is not None and later is not None and first < later


def test_liveness_is_three_missed_heartbeats() -> None:
    assert MISSED_BEATS == 3
    assert alive(seen_ms=0, now_ms=3 * 500, heartbeat_ms=500)
    assert not alive(seen_ms=0, now_ms=3 * 500 + 1, heartbeat_ms=500)


async def test_a_new_accounts_warmup_starts_on_the_clocks_day(
    redis_url: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    clock.advance(400 * DAY_MS)  # far from the machine's calendar
    s = build(make_settings(redis_url, tmp_path), redis_url, clock=clock)
    try:
        stored = await s.accounts.put(Account(name="fresh", tier=Tier.NEW))
        assert stored.startDate == day_of(clock.now_ms())
        assert stored.startDate != date.today()
    finally:
        await s.close()


async def test_instant_or_queued_is_decided_in_one_place(redis_url: str, tmp_path: Path) -> None:
    s = build(make_settings(redis_url, tmp_path, instant_threshold=5), redis_url)
    try:
        why = submission.why_queued
        assert await why(s, "default", 3, delay_ms=0, extra={}) == (True, None)
        assert await why(s, "default", 6, delay_ms=0, extra={}) == (False, None)
        timed = await why(s, "default", 3, delay_ms=60_000, extra={})
        assert timed[0] is False and "scheduled" in str(timed[1])
        assert (await why(s, "default", 3, delay_ms=0, extra={"window": "x"}))[0] is False
        await s.engine.pause()
        paused = await why(s, "default", 3, delay_ms=0, extra={})
        assert paused == (False, "the queue is paused: queued instead of sent now")
        await s.engine.resume()
        assert submission.small_enough(s, 5) and not submission.small_enough(s, 0)

        # Without a sender (the dashboard) a small list is queued, with its job and ETA.
        parsed = parse(recipients(2), "Hi", s.settings.default_region)
        done = await submission.submit(s, parsed, ["default"])
        assert done.instant is None and done.job_id and done.eta is not None
        assert await s.engine.exists(done.job_id)
    finally:
        await s.close()
