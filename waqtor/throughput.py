"""A provider's messages-per-second limit, held in Redis so every process shares it.

``Capabilities.messages_per_second`` belongs to ``Capabilities.throttle_key`` (the Cloud API's
phone number, whichever account uses it) or else to the account. Slots are reserved *before*
the claim of the recipients that will use them: a send waiting for its slot holds no recipient,
so a worker that dies while it waits leaves nothing ``unknown``.
"""

from __future__ import annotations

import asyncio

from waqtor.providers.base import Capabilities
from waqtor.services import Services

_SLOT_TTL_MS = 60_000


def owner(account: str, caps: Capabilities) -> str:
    """Whose limit it is: the throttle key, else the account."""
    return caps.throttle_key or account


async def reserve(s: Services, account: str, caps: Capabilities, count: int = 1) -> float:
    """Reserve ``count`` consecutive request slots; the first one's time (ms). Slot ``i``
    starts ``i`` x ``1000 / messages_per_second`` ms later. 0 when there is no limit."""
    mps = caps.messages_per_second
    if not mps:
        return 0.0
    slot = await s.scripts["throttle"](
        keys=[s.keys.throughput_next_ms(owner(account, caps))],
        args=[s.clock.now_ms(), 1000.0 / mps, _SLOT_TTL_MS, count],
    )
    return float(slot)


async def throttle(
    s: Services, account: str, caps: Capabilities, wake: asyncio.Event | None = None
) -> bool:
    """Wait for the account's next slot under its provider's limit. False if ``wake``
    interrupted the wait."""
    if not caps.messages_per_second:
        return True
    slot = await reserve(s, account, caps)
    return await s.clock.sleep_until(int(slot), wake)
