"""Health of the providers behind every sender account (for the API and ``--check``)."""

from __future__ import annotations

from typing import Any, Protocol

from waqtor.providers.registry import UnknownProvider
from waqtor.runtime.parts import HasAccounts, HasProviders


class Checks(HasAccounts, HasProviders, Protocol):
    """What the provider health check reads."""


async def account_providers(s: Checks) -> list[dict[str, Any]]:
    """Health of every account whose provider is not the default one."""
    out: list[dict[str, Any]] = []
    for account in await s.accounts.all():
        try:
            provider = s.providers.get(account)
        except UnknownProvider as exc:
            out.append({"account": account.name, "ok": False, "detail": str(exc)})
            continue
        if provider is s.providers.default:
            continue
        health = await provider.health()
        out.append(
            {
                "account": account.name,
                "provider": provider.name,
                "ok": health.ok,
                "detail": health.detail,
            }
        )
    return out
