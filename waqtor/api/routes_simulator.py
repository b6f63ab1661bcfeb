"""``/api/simulator/*``: the simulated outbox and its fault switches (simulator only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from waqtor.api.deps import Parts
from waqtor.api.errors import ApiError
from waqtor.api.models import FaultsRequest, ok
from waqtor.providers.simulator import FAULT_CLASSES, SimulatorProvider
from waqtor.runtime.parts import HasSimulator

router = APIRouter(
    prefix="/api/simulator",
    tags=["simulator"],
    responses={404: {"description": "The simulator provider is not active."}},
)


def _simulator(s: HasSimulator) -> SimulatorProvider:
    if s.simulator is None:
        raise ApiError(404, "The simulator provider is not active")
    return s.simulator


@router.get("/messages")
async def messages(
    s: Parts[HasSimulator],
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> dict[str, Any]:
    rows, total = await _simulator(s).outbox(offset, limit)
    return ok({"messages": rows, "total": total, "offset": offset})


@router.get("/faults")
async def get_faults(s: Parts[HasSimulator]) -> dict[str, Any]:
    faults = await _simulator(s).faults()
    return ok(faults.to_dict())


@router.put("/faults")
async def set_faults(body: FaultsRequest, s: Parts[HasSimulator]) -> dict[str, Any]:
    sim = _simulator(s)
    rates = {name: getattr(body, name) for name in FAULT_CLASSES if getattr(body, name)}
    await sim.set_faults(rates, body.latencyMs, dict(body.phones), body.lookup)
    sim_faults = await sim.faults()
    return ok(sim_faults.to_dict())
