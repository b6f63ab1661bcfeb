"""``/api/accounts/{name}/web``: a WhatsApp Web account's session state, and pairing (by QR
code or pairing code), carried out by the process that holds the session."""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from waqtor.api.deps import Parts
from waqtor.api.errors import ApiError
from waqtor.api.models import ok
from waqtor.providers.web.hub import NAME
from waqtor.runtime.parts import HasAccounts, HasWeb


class Pairs(HasAccounts, HasWeb, Protocol):
    """What the WhatsApp Web routes read and write."""


router = APIRouter(prefix="/api/accounts", tags=["accounts"])
Name = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class PairRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str | None = Field(
        default=None,
        pattern=r"^\+?[0-9]{8,15}$",
        description="Link by pairing code for this number instead of a QR code",
    )


async def _web(s: HasAccounts, name: str) -> None:
    account = await s.accounts.get(name, fresh=True)
    if account is None:
        raise ApiError(404, "Account not found")
    if account.provider != NAME:
        raise ApiError(409, f"Account {name} is not a WhatsApp Web account (provider web)")


@router.get("/{name}/web", responses={404: {}, 409: {}})
async def web_state(name: Name, s: Parts[Pairs]) -> dict[str, Any]:
    await _web(s, name)
    state = await s.web.store.state(name)
    return ok({**state.as_dict(), "holder": await s.web.store.holder(name)})


@router.post("/{name}/web/pair", status_code=202, responses={404: {}, 409: {}})
async def web_pair(name: Name, body: PairRequest, s: Parts[Pairs]) -> dict[str, Any]:
    await _web(s, name)
    how = f"code:{body.phone.lstrip('+')}" if body.phone else "qr"
    await s.web.store.request_pairing(name, how)
    return ok(message="Pairing requested: GET this account's web state for the code")
