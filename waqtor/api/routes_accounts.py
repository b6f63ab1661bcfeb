"""``/api/accounts``: sender accounts (CRUD, pause, resume, caps in force) and opt-out lists."""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from waqtor.api.deps import Parts
from waqtor.api.errors import ApiError
from waqtor.api.models import ok
from waqtor.api.openapi import EXTRA_SCHEMAS
from waqtor.campaigns import accounts
from waqtor.domain.accounts import Account
from waqtor.runtime.parts import (
    HasAccounts,
    HasClock,
    HasGateways,
    HasPacer,
    HasSettings,
    HasSuppressions,
    HasWeb,
)
from waqtor.store.accounts import DEFAULT


class Manages(HasSettings, HasClock, HasPacer, HasAccounts, HasGateways, HasWeb, Protocol):
    """What the account routes read and write."""


router = APIRouter(prefix="/api/accounts", tags=["accounts"])

Name = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class SuppressRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phones: list[Any] = Field(
        ...,
        min_length=1,
        max_length=100_000,
        description="Phones in any accepted spelling; one that is not a phone number is "
        "reported by index, the others are added.",
    )


def _fail(exc: accounts.AccountError) -> ApiError:
    return ApiError(exc.status, exc.message)


async def view(s: accounts.AccountViews, account: Account) -> dict[str, Any]:
    return await accounts.view(s, account)


async def _get(s: HasAccounts, name: str) -> Account:
    try:
        return await accounts.get(s, name)
    except accounts.AccountError as exc:
        raise _fail(exc) from None


@router.get("")
async def list_accounts(s: Parts[Manages]) -> dict[str, Any]:
    found = [await view(s, a) for a in await s.accounts.all()]
    return ok({"accounts": found, "count": len(found)})


@router.post("", status_code=201, responses={409: {}})
async def create_account(body: Account, s: Parts[Manages]) -> dict[str, Any]:
    try:
        return ok(await view(s, await accounts.create(s, body)))
    except accounts.AccountError as exc:
        raise _fail(exc) from None


@router.get("/{name}", responses={404: {}})
async def get_account(name: Name, s: Parts[Manages]) -> dict[str, Any]:
    return ok(await view(s, await _get(s, name)))


def _patch_doc() -> dict[str, Any]:
    """The PATCH body: any of an account's fields but its name, each as POST takes it."""
    schema = Account.model_json_schema(ref_template="#/components/schemas/{model}")
    EXTRA_SCHEMAS.update(schema.pop("$defs", {}))
    schema["properties"].pop("name", None)
    schema.pop("required", None)
    schema["title"] = "AccountChange"
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }


@router.patch("/{name}", responses={404: {}}, openapi_extra=_patch_doc())
async def update_account(name: Name, body: dict[str, Any], s: Parts[Manages]) -> dict[str, Any]:
    try:
        return ok(await view(s, await accounts.update(s, name, body)))
    except accounts.AccountError as exc:
        raise _fail(exc) from None


@router.delete("/{name}", responses={404: {}, 409: {}})
async def delete_account(name: Name, s: Parts[Manages]) -> dict[str, Any]:
    if name == DEFAULT:
        raise ApiError(409, "The default account cannot be deleted")
    if await s.pacer.backlog(name) > 0:
        raise ApiError(409, "Account still has messages to send: cancel its campaigns first")
    account = await s.accounts.get(name, fresh=True)
    if not await s.accounts.delete(name):
        raise ApiError(404, "Account not found")
    if account is not None and account.provider == "web":
        await s.web.removed(name)  # unlinks the device and deletes its session keys
    return ok(message=f"Account {name} deleted")


@router.post("/{name}/pause", responses={404: {}})
async def pause_account(name: Name, s: Parts[Manages]) -> dict[str, Any]:
    try:
        return ok(await view(s, await accounts.pause(s, name)))
    except accounts.AccountError as exc:
        raise _fail(exc) from None


@router.post("/{name}/resume", responses={404: {}})
async def resume_account(name: Name, s: Parts[Manages]) -> dict[str, Any]:
    """Manual resume (also after the breaker): at half the caps and double the delay for
    RESUME_REDUCED_MS when the breaker had paused it."""
    try:
        return ok(await view(s, await accounts.resume(s, name)))
    except accounts.AccountError as exc:
        raise _fail(exc) from None


@router.get("/{name}/suppressions")
async def list_suppressions(
    name: Name,
    s: Parts[HasSuppressions],
    cursor: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    phones, nxt, total = await s.suppressions.page(name, cursor, limit)
    return ok({"phones": sorted(phones), "cursor": nxt, "total": total})


@router.post("/{name}/suppressions")
async def add_suppressions(
    name: Name, body: SuppressRequest, s: Parts[accounts.Suppresses]
) -> dict[str, Any]:
    """Bulk import: phones in any accepted spelling; invalid ones are reported by index."""
    added, invalid = await accounts.suppress(s, name, body.phones)
    return ok({"added": added, "invalid": invalid})


@router.delete("/{name}/suppressions/{phone}", responses={404: {}})
async def remove_suppression(
    name: Name, phone: str, s: Parts[accounts.Suppresses]
) -> dict[str, Any]:
    try:
        return ok({"removed": await accounts.unsuppress(s, name, phone)})
    except accounts.AccountError as exc:
        raise _fail(exc) from None
