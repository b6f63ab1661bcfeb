"""``LOG_FORMAT=json``: a live ``waqtor serve`` writes one JSON object per line; send-path lines
carry the campaign, account and attempt id; phones stay masked."""

from __future__ import annotations

import json
import re
import shutil
import time
from typing import Any

import httpx

from tests.conftest import HEADERS
from tests.live_service import LiveService, phones


def test_json_lines_with_send_path_fields_and_masked_phones() -> None:
    service = LiveService(log_format="json", message_delay=20, instant_threshold=0).start()
    try:
        numbers = phones(3, 900)
        bad = "+" + numbers[1]
        # No answer and no lookup: the send path (paced: one at a time) logs the unknown
        # outcome of that recipient.
        service.faults(phones={bad: "ambiguous"}, lookup=False)
        resp = httpx.post(
            service.url + "/api/messages/send-bulk",
            json={"recipients": numbers, "message": "Hi"},
            headers=HEADERS,
            timeout=30,
        )
        job_id = resp.json()["data"]["jobId"]
        deadline = time.monotonic() + 20
        while "outcome unknown" not in service.log.read_text():
            assert time.monotonic() < deadline, service.log.read_text()[-2000:]
            time.sleep(0.1)
    finally:
        service.stop(keep_files=True)
    text = service.log.read_text()
    shutil.rmtree(service.dir)
    lines = [line for line in text.splitlines() if line.strip()]
    parsed: list[dict[str, Any]] = [json.loads(line) for line in lines]  # every line is JSON
    assert all({"ts", "level", "logger", "message"} <= set(p) for p in parsed)
    (unknown,) = [p for p in parsed if p["message"].startswith("outcome unknown")]
    assert unknown["campaign"] == job_id and unknown["account"] == "default"
    assert re.fullmatch(r"[0-9a-f]{32}", unknown["attempt"])
    for number in numbers:
        assert number not in text
    assert "+9665*" in unknown["message"]
