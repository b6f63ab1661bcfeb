"""``/api/accounts``: sender accounts (CRUD, pause, resume, caps in force) and opt-out lists."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from waqtor.api.deps import services
from waqtor.api.errors import ApiError
from waqtor.api.models import ok
from waqtor.api.openapi import EXTRA_SCHEMAS
from waqtor.campaigns import hygiene
from waqtor.config import TOKEN_ENV_PREFIX
from waqtor.domain.accounts import Account, effective_caps
from waqtor.domain.phones import MAX_RAW_CHARS, PhoneError, normalise
from waqtor.runtime.services import Services
from waqtor.sending.breaker import Breaker
from waqtor.store.accounts import DEFAULT

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


def _token_env(s: Services, account: Account) -> None:
    """An account names the variable its Cloud API token is read from: only variables meant
    for that, never the service's own secrets (an admin key must not read them out)."""
    name = account.accessTokenEnv
    if name is not None and not s.settings.token_env_allowed(name):
        raise ApiError(
            400,
            f"accessTokenEnv: {name!r} is not allowed; use a variable whose name starts with "
            f"{TOKEN_ENV_PREFIX} (or list it in CLOUD_API_TOKEN_ENVS)",
        )


async def view(s: Services, account: Account) -> dict[str, Any]:
    """The account with what is in force right now: caps today, sends in the windows, rest."""
    now = s.clock.now_ms()
    caps = effective_caps(account, date.today(), now)
    hour, day = await s.accounts.sends_in_window(account.name, now)
    cool = await s.accounts.cooling_until(account.name)
    body = account.model_dump(mode="json")
    body["today"] = {
        **caps.as_dict(),
        "sentLastHour": hour,
        "sentLast24h": day,
        "coolingUntilMs": cool if cool > now else None,
        "backlog": await s.pacer.backlog(account.name),
    }
    return body


async def _get(s: Services, name: str) -> Account:
    account = await s.accounts.get(name, fresh=True)
    if account is None:
        raise ApiError(404, "Account not found")
    return account


@router.get("")
async def list_accounts(s: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    accounts = [await view(s, a) for a in await s.accounts.all()]
    return ok({"accounts": accounts, "count": len(accounts)})


@router.post("", status_code=201, responses={409: {}})
async def create_account(
    body: Account, s: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    _token_env(s, body)
    if body.name != DEFAULT and await s.accounts.exists(body.name):
        raise ApiError(409, f"name: account {body.name!r} already exists")
    return ok(await view(s, await s.accounts.put(body)))


@router.get("/{name}", responses={404: {}})
async def get_account(name: Name, s: Annotated[Services, Depends(services)]) -> dict[str, Any]:
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
async def update_account(
    name: Name, body: dict[str, Any], s: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    current = await _get(s, name)
    if "name" in body and body["name"] != name:
        raise ApiError(400, "name: an account cannot be renamed")
    try:
        # As JSON, like a POST: a date is "YYYY-MM-DD", never a number of seconds.
        updated = Account.model_validate_json(
            json.dumps({**current.model_dump(mode="json"), **body})
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise ApiError(400, f"{field}: {first.get('msg', 'invalid')}") from None
    _token_env(s, updated)
    return ok(await view(s, await s.accounts.put(updated)))


@router.delete("/{name}", responses={404: {}, 409: {}})
async def delete_account(name: Name, s: Annotated[Services, Depends(services)]) -> dict[str, Any]:
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
async def pause_account(name: Name, s: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    account = await _get(s, name)
    updated = account.model_copy(update={"paused": True, "pausedReason": "paused by an operator"})
    return ok(await view(s, await s.accounts.put(updated)))


@router.post("/{name}/resume", responses={404: {}})
async def resume_account(name: Name, s: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    """Manual resume (also after the breaker): at half the caps and double the delay for
    RESUME_REDUCED_MS when the breaker had paused it."""
    account = await _get(s, name)
    tripped = bool(account.pausedReason and account.pausedReason.startswith("breaker"))
    reduced = s.settings.resume_reduced_ms if tripped else 0
    resumed = await Breaker(s).resume(account, reduced)
    return ok(await view(s, resumed))


@router.get("/{name}/suppressions")
async def list_suppressions(
    name: Name,
    s: Annotated[Services, Depends(services)],
    cursor: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    key = s.keys.suppressed(name)
    nxt, phones = await s.redis.sscan(key, cursor=cursor, count=limit)
    total = await s.redis.scard(key)
    return ok({"phones": sorted(phones), "cursor": int(nxt), "total": total})


@router.post("/{name}/suppressions")
async def add_suppressions(
    name: Name, body: SuppressRequest, s: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    """Bulk import: phones in any accepted spelling; invalid ones are reported by index."""
    valid: list[str] = []
    invalid: list[dict[str, Any]] = []
    for index, raw in enumerate(body.phones):
        try:
            valid.append(normalise(raw, s.settings.default_region))
        except PhoneError as exc:
            shown = raw[:MAX_RAW_CHARS] if isinstance(raw, str) else None
            invalid.append({"index": index, "phone": shown, "error": exc.reason})
    added = await hygiene.add(s, name, valid)
    return ok({"added": added, "invalid": invalid})


@router.delete("/{name}/suppressions/{phone}", responses={404: {}})
async def remove_suppression(
    name: Name, phone: str, s: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    try:
        number = normalise(phone, s.settings.default_region)
    except PhoneError as exc:
        # Not a phone number, so certainly not on the list.
        raise ApiError(404, f"phone: {exc.reason}; it is not on the suppression list") from exc
    removed = await s.redis.srem(s.keys.suppressed(name), number)
    if not removed:
        raise ApiError(404, "Phone is not on the suppression list")
    return ok({"removed": number})
