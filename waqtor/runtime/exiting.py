"""Whether uvicorn was asked to stop, so long-lived streams (dashboard, job events) end at once.

uvicorn waits for open responses to finish before it shuts down; a stream that never ends would
hold up a graceful stop until its own lifetime ran out.
"""

from __future__ import annotations

import threading
from typing import Any

exiting = threading.Event()


def watch_server_exit() -> None:
    """Patch ``uvicorn.Server.handle_exit`` once to set :data:`exiting`."""
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - uvicorn is a dependency
        return
    original = uvicorn.Server.handle_exit
    if getattr(original, "_waqtor", False):
        return

    def handle_exit(self: Any, sig: int, frame: Any) -> None:
        exiting.set()
        original(self, sig, frame)

    handle_exit._waqtor = True  # type: ignore[attr-defined]
    setattr(uvicorn.Server, "handle_exit", handle_exit)  # noqa: B010
