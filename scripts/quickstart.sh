#!/usr/bin/env bash
# Install everything (virtualenv, package, redis-server if missing), then start waqtor at
# http://127.0.0.1:8080 with the simulator provider. Extra arguments go to `waqtor serve`.
source "$(dirname "$0")/_env.sh"
ensure_redis
ensure_libmagic
ensure_venv "[web]"
exec .venv/bin/waqtor serve "$@"
