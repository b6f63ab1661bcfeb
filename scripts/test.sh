#!/usr/bin/env bash
# Install the test dependencies and run the whole suite: lint, types, tests.
source "$(dirname "$0")/_env.sh"
ensure_redis
ensure_venv "[test]"
.venv/bin/ruff check waqtor tests bench
.venv/bin/ruff format --check waqtor tests bench
.venv/bin/mypy
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
# pytest exits 5 when no test was collected (e.g. a -k filter matched nothing): not a failure.
if [ "$code" = 5 ]; then exit 0; fi
exit "$code"
