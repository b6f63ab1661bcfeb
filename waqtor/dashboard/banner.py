"""Which sender accounts go through the simulator, for the banner on every page.

The simulator is the default provider; an account that names another (the Cloud API) sends for
real. All simulated: the banner says no real WhatsApp message is sent. Some: it names them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from waqtor.runtime.parts import HasAccounts, HasProviders, HasSimulator
from waqtor.store.errors import REDIS_DOWN


class Simulates(HasProviders, HasSimulator, Protocol):
    """What telling a simulated account reads."""


class Banners(HasAccounts, HasProviders, HasSimulator, Protocol):
    """What the simulation banner reads."""


@dataclass(frozen=True)
class Simulation:
    kind: str  # "all", "some" or "none"
    accounts: list[str] = field(default_factory=list)  # the simulated ones, when "some"


def simulates(s: Simulates, provider: str | None) -> bool:
    return s.simulator is not None and (provider or s.providers.default_name) == (
        s.providers.default_name
    )


async def simulation(s: Banners | None) -> Simulation:
    if s is None or s.simulator is None:
        return Simulation("none")
    try:
        accounts = await s.accounts.all()
    except REDIS_DOWN:
        return Simulation("all")
    simulated = [a.name for a in accounts if simulates(s, a.provider)]
    if len(simulated) == len(accounts):
        return Simulation("all")
    return Simulation("some", simulated) if simulated else Simulation("none")
