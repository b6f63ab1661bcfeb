from __future__ import annotations

from datetime import datetime

import pytest

from waqtor.domain.eta import estimate_ms, humanise, mean_gap_ms
from waqtor.domain.phones import PhoneError, mask, normalise
from waqtor.domain.recipients import parse
from waqtor.domain.status import TERMINAL, RecipientStatus
from waqtor.domain.templates import TemplateError, builtin_values, missing, render


@pytest.mark.parametrize(
    "raw", ["966501234567", "+966 50 123 4567", "00966501234567", "+966-50-123-4567", 966501234567]
)
def test_one_number_many_spellings(raw: object) -> None:
    assert normalise(raw) == "+966501234567"


@pytest.mark.parametrize("raw", ["", "12", "abc", "+1234", None, True, "9".ljust(30, "9")])
def test_invalid_numbers(raw: object) -> None:
    with pytest.raises(PhoneError):
        normalise(raw)


def test_default_region_reads_national_numbers() -> None:
    assert normalise("0501234567", "SA") == "+966501234567"
    with pytest.raises(PhoneError):
        normalise("0501234567")


def test_mask_hides_the_middle() -> None:
    assert mask("+966501234567") == "+9665*****567"


def test_render_personalises_and_defaults() -> None:
    now = datetime(2026, 11, 29, 14, 5)
    b = builtin_values("+966501234567", "-- Shop", now)
    assert render("Hi {name}, {phone} {date} {time} {signature}", {}, b) == (
        "Hi Valued Customer, +966501234567 2026-11-29 14:05 -- Shop"
    )
    assert render("Hi {name} {code}", {"name": "John", "code": "X1"}, b) == "Hi John X1"


def test_template_injection_is_inert() -> None:
    b = builtin_values("+966501234567", "", datetime(2026, 1, 1))
    assert missing("{__class__} {0} {a.b}", {}) == ["__class__"]
    with pytest.raises(TemplateError):
        render("{__class__}", {}, b)
    # Non-identifier braces are plain text, never format fields.
    assert render("{0} {a.b} {} {1x}", {}, b) == "{0} {a.b} {} {1x}"
    assert render("{__class__}", {"__class__": "ok"}, b) == "ok"


def test_unicode_rtl_and_emoji_render() -> None:
    b = builtin_values("+966501234567", "", datetime(2026, 1, 1))
    assert render("مرحبا {name} 👋", {"name": "أحمد"}, b) == "مرحبا أحمد 👋"


def test_rendered_length_is_capped() -> None:
    b = builtin_values("+966501234567", "", datetime(2026, 1, 1))
    with pytest.raises(TemplateError):
        render("{x}", {"x": "a" * 5000}, b)


def test_parse_reports_by_index_and_keeps_the_rest() -> None:
    parsed = parse(
        [
            "966501234567",
            {"phone": "+966 50 123 4567", "name": "dup"},
            {"phone": "12"},
            {"phone": "966507654321", "message": "Own {code}"},
            {"name": "no phone"},
            42.5,
            {"phone": "966507654322", "code": "Z"},
        ],
        "Hello {name} {code}",
    )
    assert [r.phone for r in parsed.accepted] == ["+966507654322"]
    errors = {r.index: r.error for r in parsed.rejected}
    assert errors[0] == "missing variable {code}"
    assert errors[1] == "missing variable {code}"
    assert errors[2] == "not a valid phone number"
    assert errors[3] == "missing variable {code}"
    assert errors[4] == "phone is required"
    assert "phone string or an object" in errors[5]
    assert parsed.indexes == [6]


def test_parse_duplicates_and_own_messages() -> None:
    parsed = parse(
        ["966501234567", "00966501234567", {"phone": "966507654321", "message": "Own"}],
        "Hi {name}",
    )
    assert [r.phone for r in parsed.accepted] == ["+966501234567", "+966507654321"]
    assert parsed.rejected[0].index == 1 and "duplicate of recipient 0" in parsed.rejected[0].error
    assert parsed.accepted[0].message is None
    assert parsed.accepted[1].message == "Own"


def test_first_own_message_becomes_the_template_when_none_given() -> None:
    parsed = parse([{"phone": "966501234567", "message": "A"}], None)
    assert parsed.template == "A" and parsed.accepted[0].message is None


def test_eta_counts_backlog_delay_and_send_time() -> None:
    gap = mean_gap_ms(2000, 0.5, 100)
    assert gap == 2500
    assert estimate_ms(100, 0, gap) == 250_000
    assert estimate_ms(100, 100, gap) == 500_000
    assert mean_gap_ms(0, 0.5, 40) == 40
    assert humanise(250_000) == "~5 minutes"
    assert humanise(1500) == "~2 seconds"
    assert humanise(3 * 3600_000) == "~3.0 hours"


def test_status_codes_round_trip() -> None:
    for status in RecipientStatus:
        assert RecipientStatus.from_code(status.code) is status
    assert RecipientStatus.SENT in TERMINAL and RecipientStatus.PENDING not in TERMINAL


def test_spintax_is_per_recipient_and_repeatable() -> None:
    from waqtor.domain.templates import spin

    b = builtin_values("+966501234567", "", datetime(2026, 1, 1))
    template = "{Hi|Hello|Hey} {name}, {great|nice} {day|{morning|evening}}"
    texts = {render(template, {"name": "A"}, b, seed=f"c1:{i}") for i in range(60)}
    assert len(texts) > 5  # choices vary across recipients
    assert all("{" not in t and "|" not in t for t in texts)
    assert render(template, {"name": "A"}, b, seed="c1:7") == render(
        template, {"name": "A"}, b, seed="c1:7"
    )
    assert spin("no spin {name}", "x") == "no spin {name}"
    assert missing("{Hi|Hello} {name} {code}", {}) == ["code"]


def test_daily_windows_and_quiet_hours_cross_midnight() -> None:
    from datetime import UTC
    from datetime import datetime as dt

    from waqtor.domain.schedule import Daily, recipient_zone

    def ms(text: str) -> int:
        return int(dt.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)

    window = Daily("09:00", "18:00", "UTC")
    assert window.inside(ms("2026-11-29T10:00")) == (True, ms("2026-11-29T18:00"))
    assert window.inside(ms("2026-11-29T19:00")) == (False, ms("2026-11-30T09:00"))
    quiet = Daily("21:00", "09:00", "UTC")
    assert quiet.inside(ms("2026-11-29T23:30")) == (True, ms("2026-11-30T09:00"))
    assert quiet.inside(ms("2026-11-30T03:00")) == (True, ms("2026-11-30T09:00"))
    assert quiet.inside(ms("2026-11-30T12:00"))[0] is False
    # Riyadh is UTC+3: 19:00 UTC is 22:00 there, inside quiet hours; 12:00 UTC is not.
    assert recipient_zone("+966501234567", "UTC") == "Asia/Riyadh"
    assert quiet.inside(ms("2026-11-29T19:00"), "Asia/Riyadh")[0] is True
    assert quiet.inside(ms("2026-11-29T12:00"), "Asia/Riyadh")[0] is False
    # A region with several zones falls back to the account's.
    assert recipient_zone("+12025550123", "Europe/London") in ("America/New_York", "Europe/London")
    assert recipient_zone("+79161234567", "Europe/Berlin") == "Europe/Berlin"


def test_fast_phone_path_agrees_with_phonenumbers() -> None:
    import random

    import phonenumbers

    rng = random.Random(7)
    codes = [966, 971, 20, 44, 1, 49, 33, 39, 91, 234, 7, 55, 62, 81, 86, 90, 212, 962, 974]
    for _ in range(5000):
        digits = str(rng.choice(codes)) + "".join(
            rng.choice("0123456789") for _ in range(rng.randint(6, 12))
        )
        try:
            number = phonenumbers.parse("+" + digits, None)
            valid = phonenumbers.is_valid_number(number)
            expected = (
                phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                if valid
                else None
            )
        except phonenumbers.NumberParseException:
            expected = None
        try:
            got: str | None = normalise(digits)
        except PhoneError:
            got = None
        assert got == expected, digits
