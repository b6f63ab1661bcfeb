"""A provider's messages-per-second limit, held in Redis so every process shares it.

``Capabilities.messages_per_second`` belongs to ``Capabilities.throttle_key`` (the Cloud API's
phone number, whichever account uses it) or else to the account. Slots are reserved *before*
the claim of the recipients that will use them: a send waiting for its slot holds no recipient,
so a worker that dies while it waits leaves nothing ``unknown``.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from waqtor.providers.base import Capabilities
from waqtor.runtime.parts import HasClock, HasPacer


class Slots(HasClock, HasPacer, Protocol):
    """What reserving send slots reads and writes."""


_SLOT_TTL_MS = 60_000
#: Slots are spaced for this share of the declared rate. A request leaves a few ms late now
#: and then (a busy event loop, the network); the one after it, on time, then arrives closer
#: than the spacing, and a provider counting arrivals in a sliding second (Meta's 130429) would
#: see a burst above its limit. The headroom absorbs about 15 ms of such lateness per second.
RATE_SHARE = 0.97


def interval_ms(caps: Capabilities) -> float:
    """The spacing (ms) of consecutive request slots; 0 when there is no limit."""
    mps = caps.messages_per_second
    return 1000.0 / (mps * RATE_SHARE) if mps else 0.0


def owner(account: str, caps: Capabilities) -> str:
    """Whose limit it is: the throttle key, else the account."""
    return caps.throttle_key or account


async def reserve(s: Slots, account: str, caps: Capabilities, count: int = 1) -> float:
    """Reserve ``count`` consecutive request slots; the first one's time (ms). Slot ``i``
    starts ``i`` x ``interval_ms`` later. 0 when there is no limit."""
    interval = interval_ms(caps)
    if not interval:
        return 0.0
    return await s.pacer.request_slot(
        owner(account, caps), s.clock.now_ms(), interval, _SLOT_TTL_MS, count
    )


async def throttle(
    s: Slots, account: str, caps: Capabilities, wake: asyncio.Event | None = None
) -> bool:
    """Wait for the account's next slot under its provider's limit. False if ``wake``
    interrupted the wait."""
    if not caps.messages_per_second:
        return True
    slot = await reserve(s, account, caps)
    return await s.clock.sleep_until(int(slot), wake)
