"""Fuzz the API from its own OpenAPI schema over real HTTP: no generated request gets a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import HEADERS, KEY, Proc, RedisServer, env_for, free_port, wait_http

SEEN: dict[str, int] = {"requests": 0, "5xx": 0}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    redis = RedisServer()
    redis.start()
    port = free_port()
    env = {
        **env_for(message_delay=0, instant_threshold=3, max_recipients=200),
        "REDIS_URL": redis.url,
        "API_KEY": KEY,
        "WAQTOR_DATA_DIR": str(tmp / "data"),
        # Configured, so the webhook routes are fuzzed past "not configured".
        "WHATSAPP_VERIFY_TOKEN": "fuzz-verify-token-0123",
        "WHATSAPP_APP_SECRET": "fuzz-app-secret-0123456789",
        "CALLBACK_SECRET": "fuzz-callback-secret-0123",
    }
    serve = Proc(["serve", "--port", str(port)], env, tmp / "serve.log").start()
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        yield schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")
    finally:
        serve.stop()
        redis.cleanup()
    log = (tmp / "serve.log").read_text()
    assert "Traceback" not in log, "the server logged a crash during fuzzing"


def _check(case: Any) -> None:
    response = case.call(headers=HEADERS, timeout=30)
    SEEN["requests"] += 1
    if response.status_code >= 500:
        SEEN["5xx"] += 1
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        body = response.json()
        assert body["success"] is False and isinstance(body["error"], str) and body["error"]


def test_no_generated_request_gets_a_server_error(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=70,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            _check(case)

        run()
    assert SEEN["5xx"] == 0
    print(f"fuzz: {SEEN}")
    assert SEEN["requests"] >= 1000, SEEN
