# Shared by quickstart.sh and test.sh: a Python >= 3.11 virtualenv in .venv, and redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "waqtor needs Python 3.11 or newer (sudo apt-get install -y python3 python3-venv)" >&2
  return 1
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_redis() {
  command -v redis-server >/dev/null 2>&1 && return 0
  echo "redis-server is missing; installing it..." >&2
  if command -v apt-get >/dev/null 2>&1; then
    as_root apt-get update -qq && as_root apt-get install -y -qq redis-server >/dev/null
  elif command -v brew >/dev/null 2>&1; then
    brew install redis
  else
    echo "Could not install redis-server. Install it yourself (Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis), or set REDIS_URL to a running Redis." >&2
    return 1
  fi
}

ensure_venv() {
  local extras="$1"
  if [ ! -x .venv/bin/python ]; then
    "$(find_python)" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".${extras}"
}

# neonize (the "web" extra: WhatsApp Web built in) imports python-magic, which needs libmagic.
ensure_libmagic() {
  if python3 -c 'import ctypes.util, sys; sys.exit(0 if ctypes.util.find_library("magic") else 1)' 2>/dev/null; then
    return 0
  fi
  if command -v apt-get >/dev/null 2>&1; then
    echo "libmagic is missing; installing it for WhatsApp Web accounts..." >&2
    { as_root apt-get update -qq && as_root apt-get install -y -qq libmagic1 >/dev/null; } ||
      echo "could not install libmagic1: WhatsApp Web accounts will say what is missing" >&2
  elif command -v brew >/dev/null 2>&1; then
    brew install libmagic
  fi
}
