"""Where a WhatsApp Web gateway is and how to reach it: the environment only.

An account names its gateway (``"gateway": "main"``); the gateway's URL and key are read from
``GATEWAY_MAIN_URL`` and ``GATEWAY_MAIN_KEY`` (or the file in ``GATEWAY_MAIN_KEY_FILE``), and
the secret its webhooks are checked with from ``GATEWAY_MAIN_WEBHOOK_KEY`` (or ``_FILE``). No
API call can set any of them, so no API client can send a gateway's key to a host of its
choosing. Keys are re-read on every call (a rotated file is picked up) and never logged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from waqtor.domain.accounts import GATEWAY_NAME

Environ = Callable[[str], str | None]


class GatewayConfigError(Exception):
    """The gateway an account names is not configured (or badly)."""


def _prefix(name: str) -> str:
    if not GATEWAY_NAME.fullmatch(name):
        raise GatewayConfigError(f"gateway name {name!r}: letters, digits and _ only")
    return f"GATEWAY_{name.upper()}_"


def _secret(environ: Environ, var: str) -> str | None:
    value = environ(var)
    if value and value.strip():
        return value.strip()
    path = environ(var + "_FILE")
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class Gateway:
    name: str
    url: str  # no trailing slash

    def __repr__(self) -> str:  # never a key
        return f"Gateway({self.name}, {self.url})"


def gateway(name: str, environ: Environ = os.environ.get) -> Gateway:
    """The gateway ``name``: its URL, checked (http or https, a host, nothing after the path)."""
    var = _prefix(name) + "URL"
    url = (environ(var) or "").strip().rstrip("/")
    if not url:
        raise GatewayConfigError(f"gateway {name}: set {var} (the gateway's base URL)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.username:
        raise GatewayConfigError(f"gateway {name}: {var} must be http(s)://host[:port][/path]")
    return Gateway(name, url)


def api_key(name: str, environ: Environ = os.environ.get) -> str | None:
    """The gateway's API key (WAHA ``X-Api-Key``, Evolution ``apikey``), or None."""
    return _secret(environ, _prefix(name) + "KEY")


def webhook_key(name: str, environ: Environ = os.environ.get) -> str | None:
    """The secret the gateway's webhooks carry: WAHA's HMAC key, or the key Evolution puts in
    the body's ``apikey``. None: that gateway's webhook route refuses everything."""
    return _secret(environ, _prefix(name) + "WEBHOOK_KEY")


def webhook_key_var(name: str) -> str:
    return _prefix(name) + "WEBHOOK_KEY"
