"""Which provider sends for which account: the simulator unless the account names another."""

from __future__ import annotations

from collections.abc import Callable

from waqtor.domain.accounts import Account
from waqtor.providers.base import Provider

#: Builds a provider for an account (credentials come from the account and the environment).
Factory = Callable[[Account], Provider]


class UnknownProvider(Exception):
    pass


class ProviderRegistry:
    def __init__(self, default: Provider, default_name: str = "simulator") -> None:
        self.default = default
        self.default_name = default_name
        self.factories: dict[str, Factory] = {}
        self._built: dict[tuple[str, str], Provider] = {}

    def register(self, name: str, factory: Factory) -> None:
        self.factories[name] = factory

    def get(self, account: Account) -> Provider:
        name = account.provider or self.default_name
        if name == self.default_name:
            return self.default
        # Keyed by what the provider is built from, not the whole account: pausing an account
        # or changing its caps must not build (and leak) another HTTP client.
        key = (
            name,
            f"{account.name}|{account.phoneNumberId}|{account.accessTokenEnv}"
            f"|{account.gateway}|{account.session}",
        )
        provider = self._built.get(key)
        if provider is None:
            factory = self.factories.get(name)
            if factory is None:
                raise UnknownProvider(f"account {account.name}: unknown provider {name!r}")
            provider = self._built[key] = factory(account)
        return provider

    async def close(self) -> None:
        for provider in self._built.values():
            await provider.close()
        await self.default.close()
