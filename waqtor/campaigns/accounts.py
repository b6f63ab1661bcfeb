"""Sender accounts as the API and the dashboard manage them: the checks a new or changed
account passes, what an account looks like with today's figures, pause and resume, and the
suppression list."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from typing import Any, Protocol

from pydantic import ValidationError

from waqtor.campaigns import hygiene
from waqtor.config import TOKEN_ENV_PREFIX
from waqtor.domain.accounts import (
    GATEWAY_PROVIDERS,
    OPERATOR_REASON,
    ORDINARY_NUMBER_PROVIDERS,
    Account,
    caps_on,
    new_contact_cap,
    operator_pause,
)
from waqtor.domain.phones import MAX_RAW_CHARS, PhoneError, normalise
from waqtor.providers import gateway_env
from waqtor.runtime.parts import (
    HasAccounts,
    HasClock,
    HasGateways,
    HasPacer,
    HasSettings,
    HasSuppressions,
)
from waqtor.sending.breaker import Breaker
from waqtor.store.accounts import DEFAULT


class Edits(HasSettings, HasAccounts, Protocol):
    """What creating and changing an account reads and writes."""


class Suppresses(HasSettings, HasSuppressions, Protocol):
    """What an account's suppression list reads and writes."""


class Rests(HasSettings, HasClock, HasPacer, HasAccounts, Protocol):
    """What pausing and resuming an account read and write (the breaker's parts)."""


class AccountViews(HasClock, HasPacer, HasAccounts, HasGateways, Protocol):
    """What an account's view reads."""


#: Providers an account may name.
PROVIDERS = ("simulator", "cloud_api", "waha", "evolution", "web")
#: A CSV of numbers to suppress, at most (bytes).
MAX_IMPORT_BYTES = 5 * 1024 * 1024


class AccountError(Exception):
    """A request about an account that cannot be done; ``status`` is the HTTP status and the
    message names the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check(s: HasSettings, account: Account) -> None:
    """What a stored account must satisfy beyond its own fields: a token variable meant for
    tokens (never the service's own secrets), and a gateway the environment configures (its
    URL and key come from GATEWAY_<NAME>_*, never from a request)."""
    name = account.accessTokenEnv
    if name is not None and not s.settings.token_env_allowed(name):
        raise AccountError(
            400,
            f"accessTokenEnv: {name!r} is not allowed; use a variable whose name starts with "
            f"{TOKEN_ENV_PREFIX} (or list it in CLOUD_API_TOKEN_ENVS)",
        )
    if account.provider in GATEWAY_PROVIDERS and account.gateway:
        try:
            gateway_env.gateway(account.gateway)
        except gateway_env.GatewayConfigError as exc:
            raise AccountError(400, f"gateway: {exc}") from None


def validate(fields: dict[str, Any]) -> Account:
    """An account from JSON-like fields, as a POST takes it; AccountError names the field."""
    try:
        return Account.model_validate_json(json.dumps(fields))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise AccountError(400, f"{field}: {first.get('msg', 'invalid')}") from None


async def create(s: Edits, account: Account) -> Account:
    check(s, account)
    if account.name != DEFAULT and await s.accounts.exists(account.name):
        raise AccountError(409, f"name: account {account.name!r} already exists")
    return await s.accounts.put(operator_pause(account, None))


async def get(s: HasAccounts, name: str) -> Account:
    account = await s.accounts.get(name, fresh=True)
    if account is None:
        raise AccountError(404, "Account not found")
    return account


async def update(s: Edits, name: str, changes: dict[str, Any]) -> Account:
    current = await get(s, name)
    if "name" in changes and changes["name"] != name:
        raise AccountError(400, "name: an account cannot be renamed")
    updated = validate({**current.model_dump(mode="json"), **changes})
    check(s, updated)
    return await s.accounts.put(operator_pause(updated, current))


async def pause(s: Rests, name: str) -> Account:
    account = await get(s, name)
    updated = account.model_copy(update={"paused": True, "pausedReason": OPERATOR_REASON})
    await s.accounts.log_breaker(name, s.clock.now_ms(), "paused", "by an operator")
    return await s.accounts.put(updated)


async def resume(s: Rests, name: str) -> Account:
    """Manual resume (also after the breaker): at half the caps and double the delay for
    RESUME_REDUCED_MS when the breaker had paused it."""
    account = await get(s, name)
    tripped = bool(account.pausedReason and account.pausedReason.startswith("breaker"))
    reduced = s.settings.resume_reduced_ms if tripped else 0
    return await Breaker(s).resume(account, reduced)


async def view(s: AccountViews, account: Account) -> dict[str, Any]:
    """The account with what is in force right now: caps today, sends in the windows, rest,
    and for gateway accounts the session and new contacts."""
    now = s.clock.now_ms()
    caps = caps_on(account, now)
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
    if account.provider in ORDINARY_NUMBER_PROVIDERS:
        body["today"]["newContacts"] = await s.gateways.new_contacts_today(account.name, now)
        body["today"]["newContactsCap"] = new_contact_cap(account, now)
        seen = await s.gateways.session(account.name)
        body["sessionState"] = (
            {
                "state": seen.state,
                "working": seen.working,
                "detail": seen.detail,
                "checkedAtMs": seen.at_ms,
                "sinceMs": seen.since_ms,
            }
            if seen is not None
            else None
        )
    return body


async def reply_rate(s: HasGateways, account: Account) -> tuple[int, int, float | None]:
    """``(repliers, contacts, rate)`` of a gateway account (rate None: no contact yet)."""
    if account.provider not in ORDINARY_NUMBER_PROVIDERS:
        return 0, 0, None
    repliers, contacts = await s.gateways.reply_rate(account.name)
    return repliers, contacts, (repliers / contacts if contacts else None)


async def suppress(s: Suppresses, name: str, raws: list[Any]) -> tuple[int, list[dict[str, Any]]]:
    """Add phones in any accepted spelling; returns (added, invalid ones by index)."""
    valid: list[str] = []
    invalid: list[dict[str, Any]] = []
    for index, raw in enumerate(raws):
        try:
            valid.append(normalise(raw, s.settings.default_region))
        except PhoneError as exc:
            shown = raw[:MAX_RAW_CHARS] if isinstance(raw, str) else None
            invalid.append({"index": index, "phone": shown, "error": exc.reason})
    return await hygiene.add(s, name, valid), invalid


async def unsuppress(s: Suppresses, name: str, phone: str) -> str:
    try:
        number = normalise(phone, s.settings.default_region)
    except PhoneError as exc:
        raise AccountError(404, f"phone: {exc.reason}; it is not on the suppression list") from None
    if not await s.suppressions.remove(name, number):
        raise AccountError(404, "Phone is not on the suppression list")
    return number


def _csv_phones(data: bytes) -> list[str]:
    text = data.decode("utf-8-sig", errors="replace")
    phones: list[str] = []
    for row in csv.reader(io.StringIO(text)):
        if row and row[0].strip():
            phones.append(row[0].strip()[:MAX_RAW_CHARS])
    # A header ("phone") is not a number: drop it rather than report it.
    if phones and not any(ch.isdigit() for ch in phones[0]):
        phones = phones[1:]
    return phones


async def import_csv(s: Suppresses, name: str, data: bytes) -> tuple[int, list[dict[str, Any]]]:
    """Suppress the numbers in the first column of a CSV (a header row is skipped)."""
    if len(data) > MAX_IMPORT_BYTES:
        raise AccountError(413, f"file: at most {MAX_IMPORT_BYTES // (1024 * 1024)} MB")
    phones = await asyncio.to_thread(_csv_phones, data)
    if not phones:
        raise AccountError(400, "file: no phone numbers in its first column")
    return await suppress(s, name, list(phones))
