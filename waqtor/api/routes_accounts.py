"""``/api/accounts/{account}/suppressions``: the opt-out list of a sender account."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from waqtor import hygiene
from waqtor.api.deps import services
from waqtor.api.errors import ApiError
from waqtor.api.models import ok
from waqtor.domain.phones import PhoneError, normalise
from waqtor.services import Services

router = APIRouter(prefix="/api/accounts", tags=["accounts"])

Account = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class SuppressRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phones: list[str] = Field(..., min_length=1, max_length=100_000)


@router.get("/{account}/suppressions")
async def list_suppressions(
    account: Account,
    s: Annotated[Services, Depends(services)],
    cursor: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    key = s.keys.suppressed(account)
    nxt, phones = await s.redis.sscan(key, cursor=cursor, count=limit)
    total = await s.redis.scard(key)
    return ok({"phones": sorted(phones), "cursor": int(nxt), "total": total})


@router.post("/{account}/suppressions")
async def add_suppressions(
    account: Account, body: SuppressRequest, s: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    """Bulk import: phones in any accepted spelling; invalid ones are reported by index."""
    valid: list[str] = []
    invalid: list[dict[str, Any]] = []
    for index, raw in enumerate(body.phones):
        try:
            valid.append(normalise(raw, s.settings.default_region))
        except PhoneError as exc:
            invalid.append({"index": index, "phone": raw, "error": exc.reason})
    added = await hygiene.add(s, account, valid)
    return ok({"added": added, "invalid": invalid})


@router.delete("/{account}/suppressions/{phone}")
async def remove_suppression(
    account: Account, phone: str, s: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    try:
        number = normalise(phone, s.settings.default_region)
    except PhoneError as exc:
        raise ApiError(400, f"phone: {exc.reason}") from exc
    removed = await s.redis.srem(s.keys.suppressed(account), number)
    if not removed:
        raise ApiError(404, "Phone is not on the suppression list")
    return ok({"removed": number})
