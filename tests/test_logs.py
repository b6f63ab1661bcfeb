from __future__ import annotations

import logging

from waqtor.runtime.logs import MaskPhones


def test_phones_are_masked_in_log_lines() -> None:
    record = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "sent to %s and %s", ("+966501234567", "966507654321"), None
    )
    MaskPhones().filter(record)
    text = record.getMessage()
    assert "+966501234567" not in text and "966507654321" not in text
    assert "+9665*****567" in text


def test_non_phone_numbers_are_left_alone() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "took 1234 ms", (), None)
    MaskPhones().filter(record)
    assert record.getMessage() == "took 1234 ms"
