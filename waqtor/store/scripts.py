"""The Lua scripts behind every multi-key state change, registered once per client."""

from __future__ import annotations

from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

NAMES = (
    "claim",
    "claim_batch",
    "finish_batch",
    "recover",
    "close_open",
    "delete",
    "reserve",
    "retry_failed",
    "resolve",
    "strike",
    "find_phone",
    # the reconciler: jobs removed outside waqtor, drifted backlog counters
    "reconcile_scan",
    "backlog_set",
    # WhatsApp Cloud API: throughput, status webhooks, status callbacks
    "throttle",
    "wh_status",
    "cb_enqueue",
    "cb_claim",
    "cb_result",
    "cb_requeue",
    # WhatsApp Web gateways: session state changes, the new-contact cap
    "gw_session",
    "gw_contact",
    # security: failed logins and API keys per client address; dashboard sessions
    "auth_fail",
    "session_start",
    # Idempotency-Key: give back a key whose request failed
    "idem_release",
)


_INCLUDE = "--!include "


def source(name: str) -> str:
    """A script's text, with each ``--!include <file>`` line replaced by that file."""
    text = resources.files("waqtor.store").joinpath(f"lua/{name}.lua").read_text()
    lines = [
        source(line[len(_INCLUDE) :].strip()) if line.startswith(_INCLUDE) else line
        for line in text.splitlines()
    ]
    return "\n".join(lines) + "\n"


class Scripts:
    def __init__(self, redis: Redis) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(source(name)) for name in NAMES
        }

    def __getitem__(self, name: str) -> AsyncScript:
        return self._scripts[name]
