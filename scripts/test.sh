#!/usr/bin/env bash
# Install the test dependencies and run the whole suite: lint, types, tests.
source "$(dirname "$0")/_env.sh"
ensure_redis
ensure_libmagic
ensure_venv "[test]"  # includes the web extra (neonize)
# The dashboard's browser tests drive Debian's Chromium (never a browser that Playwright
# downloads). Without apt they are skipped, and pytest says why.
if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "chromium is missing; installing it for the dashboard's browser tests..." >&2
    { as_root apt-get update -qq && as_root apt-get install -y -qq chromium >/dev/null; } ||
      echo "could not install chromium: the dashboard's browser tests will be skipped" >&2
  else
    echo "no apt-get: the dashboard's browser tests will be skipped (no /usr/bin/chromium)" >&2
  fi
fi
# `waqtor send --wait`'s progress bar is tested in a real terminal: tmux.
if ! command -v tmux >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "tmux is missing; installing it for the progress-bar tests..." >&2
    { as_root apt-get update -qq && as_root apt-get install -y -qq tmux >/dev/null; } ||
      echo "could not install tmux: the progress-bar tests will be skipped" >&2
  else
    echo "no apt-get: the progress-bar tests will be skipped (no tmux)" >&2
  fi
fi
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
