"""Fuzz the API from its own OpenAPI schema over real HTTP with schemathesis's full default run:
every check it has (no 5xx, documented statuses, content types and headers, response schemas,
schema-valid requests accepted, schema-violating ones refused, the API key enforced, ``Allow``
on 405) in every phase (examples, coverage, fuzzing, stateful).

Two exceptions, stated in the config below, each for a reason the schema cannot carry:

- ``send-bulk`` and ``preview`` may refuse a schema-valid request with 400 (no recipient is a
  valid phone number in the numbering plan; an account that does not exist; validUntil before
  sendAt), 413 (more recipients than MAX_RECIPIENTS) or 422 (an ``Idempotency-Key`` reused for
  another request).
- ``/api/queue/health`` answers 503 when the provider is unhealthy, which the fuzzer makes it
  by setting the simulator's faults: that 503 is its documented answer, not a crash.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import KEY, Proc, RedisServer, env_for, free_port, wait_http

CONFIG = f"""
[auth.openapi.ApiKey]
api_key = "{KEY}"

[[operations]]
include-path-regex = "^/api/messages/(send-bulk|preview)$"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", "400", "401", "403", "404", "409", "413", "422", "429", "5xx"
]

[[operations]]
include-path = "/api/queue/health"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]
"""


def test_schemathesis_default_run_passes(tmp_path: Path) -> None:
    redis = RedisServer()
    redis.start()
    port = free_port()
    env = {
        **env_for(message_delay=0, instant_threshold=3, max_recipients=200),
        "REDIS_URL": redis.url,
        "API_KEY": KEY,
        "WAQTOR_DATA_DIR": str(tmp_path / "data"),
        # Configured, so the webhook routes are fuzzed past "not configured".
        "WHATSAPP_VERIFY_TOKEN": "fuzz-verify-token-0123",
        "WHATSAPP_APP_SECRET": "fuzz-app-secret-0123456789",
        "CALLBACK_SECRET": "fuzz-callback-secret-0123",
        # The fuzzer sends wrong keys on purpose (ignored_auth): it must not lock itself out.
        "AUTH_FAIL_LIMIT": "0",
    }
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    serve = Proc(["serve", "--port", str(port)], env, tmp_path / "serve.log").start()
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "--config-file",
                str(config),
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--max-examples",
                "12",
                "--generation-deterministic",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    finally:
        serve.stop()
        redis.cleanup()
    summary = run.stdout[-3000:]
    print(summary)
    assert run.returncode == 0, summary + run.stderr[-2000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert generated and int(generated.group(1)) >= 1000, summary
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log, "the server logged a crash during fuzzing"
