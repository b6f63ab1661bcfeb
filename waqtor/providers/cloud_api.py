"""The official WhatsApp Business Cloud API (Meta's Graph API), over one keep-alive aiohttp
connection pool per phone number.

aiohttp rather than httpx on this hot path: against a local server at 32 requests in flight,
httpx 0.28 answered about 89 requests/s and aiohttp about 1,200 (``python -m bench.http_clients``
measures both; bench/README.md has the figures). httpx stays where a request is rare (callbacks).

``POST {CLOUD_API_BASE_URL}/{CLOUD_API_VERSION}/{phoneNumberId}/messages`` with a text, an
approved template, or an image or document by URL. Our attempt id travels in
``biz_opaque_callback_data`` (as ``wq1:<campaign id>:<attempt id>``) and comes back on every
status webhook, so a webhook can settle a recipient whose outcome the worker never recorded.

The access token is read from the environment variable the account names
(``accessTokenEnv``), or from the file named by ``<that name>_FILE``; it is sent only in the
``Authorization`` header and never appears in a log, an error or an API response.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from waqtor import __version__
from waqtor.config import Settings
from waqtor.domain.accounts import PHONE_NUMBER_ID, Account
from waqtor.providers._cloud_errors import classify
from waqtor.providers.base import (
    AmbiguousError,
    Capabilities,
    Health,
    Lookup,
    OutgoingMessage,
    Provider,
    ProviderError,
    SendResult,
    TransientError,
    UnavailableError,
)
from waqtor.providers.registry import UnknownProvider

log = logging.getLogger("waqtor.cloud_api")

NAME = "cloud_api"
OPAQUE_PREFIX = "wq1"
_VERSION = re.compile(r"v[0-9]+\.[0-9]+")
_HEALTH_CACHE_S = 30.0


class ProviderConfigError(UnknownProvider):
    """An account names the Cloud API without what it needs (phone-number id, token). The
    send path treats it like an unknown provider: the account's campaigns wait, saying why."""


def opaque_data(campaign_id: str, attempt_id: str) -> str:
    """What we put in ``biz_opaque_callback_data`` (Meta echoes it on status webhooks)."""
    return f"{OPAQUE_PREFIX}:{campaign_id}:{attempt_id}"


def parse_opaque(value: object) -> tuple[str, str] | None:
    """``(campaign id, attempt id)`` from our callback data, or None if it is not ours."""
    if not isinstance(value, str):
        return None
    parts = value.split(":")
    if len(parts) != 3 or parts[0] != OPAQUE_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


class AccessToken:
    """An access token from ``$NAME`` or the file in ``$NAME_FILE`` (re-read on ``reload``,
    so a rotated file is picked up after Meta reports the old token expired)."""

    def __init__(
        self, env_name: str, environ: Callable[[str], str | None] = os.environ.get
    ) -> None:
        self.env_name = env_name
        self._environ = environ
        self._value: str | None = None
        self._loaded = False

    def __repr__(self) -> str:  # never the token
        return f"AccessToken(env={self.env_name})"

    def get(self) -> str | None:
        if not self._loaded:
            self._value = self._read()
            self._loaded = True
        return self._value

    def reload(self) -> None:
        self._loaded = False

    def _read(self) -> str | None:
        value = self._environ(self.env_name)
        if value and value.strip():
            return value.strip()
        path = self._environ(self.env_name + "_FILE")
        if path:
            try:
                return Path(path).read_text().strip() or None
            except OSError:
                return None
        return None


class CloudApiProvider(Provider):
    name = NAME

    def __init__(
        self,
        *,
        phone_number_id: str,
        token: AccessToken,
        base_url: str,
        version: str,
        messages_per_second: float,
        max_in_flight: int,
        max_connections: int,
        timeout_s: float,
        label: str = "",
    ) -> None:
        self.capabilities = Capabilities(
            max_in_flight=max_in_flight,
            messages_per_second=messages_per_second,
            # The throughput limit is the phone number's, whichever account uses it.
            throttle_key=f"cloud_api:{phone_number_id}",
            settles_by_webhook=True,
            lookup=Lookup.NONE,  # Meta cannot be asked by attempt id
        )
        self.phone_number_id = phone_number_id
        self.token = token
        self.label = label or phone_number_id
        if not PHONE_NUMBER_ID.fullmatch(phone_number_id) or not _VERSION.fullmatch(version):
            raise ProviderConfigError("the Cloud API needs a digits-only phone-number ID")
        self._version = version
        self._base_url = base_url.rstrip("/")
        # Both parts are checked above and quoted here: no field can change the URL's path.
        self._number_path = f"/{quote(version, safe='')}/{quote(phone_number_id, safe='')}"
        self._messages_url = f"{self._base_url}{self._number_path}/messages"
        self._max_connections = max_connections
        # No total timeout: a connect timeout (which covers waiting for a pooled connection)
        # means nothing left, a read timeout that the request may have gone out.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=min(5.0, timeout_s), sock_read=timeout_s
        )
        self._session: aiohttp.ClientSession | None = None
        self._health: tuple[float, Health] | None = None
        self._closed = False

    def _client(self) -> aiohttp.ClientSession:
        """One session (and keep-alive pool) per number, made in the loop that uses it."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, keepalive_timeout=30.0, ttl_dns_cache=300
                ),
                timeout=self._timeout,
                headers={"User-Agent": f"waqtor/{__version__}"},
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
                auto_decompress=True,
            )
        return self._session

    def __repr__(self) -> str:
        return f"CloudApiProvider(phone_number_id={self.phone_number_id})"

    # ---- the request ----
    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.phone.lstrip("+"),
            "biz_opaque_callback_data": opaque_data(message.campaign_id, message.attempt_id),
        }
        if message.template is not None:
            template = dict(message.template)
            language = template.get("language")
            if isinstance(language, str):
                template["language"] = {"code": language}
            body["type"] = "template"
            body["template"] = template
        elif message.media is not None:
            kind = str(message.media["type"])
            media: dict[str, Any] = {"link": message.media["link"]}
            caption = message.media.get("caption")
            if caption:
                media["caption"] = caption
            if kind == "document" and message.media.get("filename"):
                media["filename"] = message.media["filename"]
            body["type"] = kind
            body[kind] = media
        else:
            body["type"] = "text"
            body["text"] = {"preview_url": False, "body": message.text}
        return body

    def _auth(self) -> dict[str, str]:
        token = self.token.get()
        if not token:
            raise UnavailableError(
                "token_missing",
                f"no access token in ${self.token.env_name} or the file ${self.token.env_name}"
                "_FILE names",
            )
        return {"Authorization": f"Bearer {token}"}

    async def send(self, message: OutgoingMessage) -> SendResult:
        headers = self._auth()
        try:
            async with self._client().post(
                self._messages_url,
                data=orjson.dumps(self.payload(message)),
                headers={**headers, "Content-Type": "application/json"},
                allow_redirects=False,
            ) as resp:
                status, raw, retry_after = (
                    resp.status,
                    await resp.read(),
                    resp.headers.get("Retry-After"),
                )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Nothing left this process (refused, DNS, no pooled connection in time): safe to
            # try again.
            raise TransientError(
                "network", f"could not reach the Cloud API ({type(exc).__name__})"
            ) from exc
        except (aiohttp.SocketTimeoutError, TimeoutError) as exc:
            raise AmbiguousError(
                "timeout", "no answer from the Cloud API in time; the message may have gone out"
            ) from exc
        except aiohttp.ClientError as exc:
            raise AmbiguousError(
                "connection_lost",
                f"the connection dropped after the request was sent ({type(exc).__name__}); "
                "the message may have gone out",
            ) from exc
        body = _json(raw)
        if 200 <= status < 300:
            message_id = _message_id(body)
            if message_id is None:
                raise AmbiguousError("no_message_id", f"HTTP {status} without a message id")
            return SendResult(message_id)
        error = classify(status, body, retry_after)
        self._after_error(error)
        raise error

    def _after_error(self, error: ProviderError) -> None:
        if isinstance(error, UnavailableError):
            if error.code in ("190", "0"):
                self.token.reload()  # a rotated token file is read for the next send
            self._health = (time.monotonic(), Health(False, f"{error.code}: {error.reason}"))
            log.warning("Cloud API number %s: %s %s", self.label, error.code, error.reason)

    async def health(self) -> Health:
        now = time.monotonic()
        if self._health is not None and now - self._health[0] < _HEALTH_CACHE_S:
            return self._health[1]
        health = await self._check()
        self._health = (now, health)
        return health

    async def _check(self) -> Health:
        try:
            headers = self._auth()
            async with self._client().get(
                f"{self._base_url}{self._number_path}",
                params={"fields": "display_phone_number,quality_rating"},
                headers=headers,
                allow_redirects=False,
            ) as resp:
                status, body = resp.status, _json(await resp.read())
        except UnavailableError as exc:
            return Health(False, exc.reason)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Health(False, f"Cloud API unreachable ({type(exc).__name__})")
        if 200 <= status < 300 and isinstance(body, dict):
            number = body.get("display_phone_number") or self.phone_number_id
            quality = body.get("quality_rating") or "unknown"
            return Health(True, f"Cloud API number {number}, quality {quality}")
        error = classify(status, body)
        return Health(False, f"{error.code}: {error.reason}")

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._session is not None:
                await self._session.close()


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _message_id(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
        return None
    found = messages[0].get("id")
    return str(found) if found else None


def factory(settings: Settings) -> Callable[[Account], CloudApiProvider]:
    """Builds the provider of a ``cloud_api`` account: one per phone number and token, so an
    account whose other settings change keeps its connection pool."""
    built: dict[tuple[str, str], CloudApiProvider] = {}

    def build(account: Account) -> CloudApiProvider:
        if not account.phoneNumberId:
            raise ProviderConfigError(f"account {account.name}: the Cloud API needs phoneNumberId")
        if not PHONE_NUMBER_ID.fullmatch(account.phoneNumberId):
            raise ProviderConfigError(
                f"account {account.name}: phoneNumberId must be Meta's digits-only ID"
            )
        if not account.accessTokenEnv:
            raise ProviderConfigError(
                f"account {account.name}: the Cloud API needs accessTokenEnv (the name of the "
                "environment variable that holds the access token)"
            )
        if not settings.token_env_allowed(account.accessTokenEnv):
            # Stored under older rules: never read (and send as a bearer token) a variable
            # that is not meant to hold a WhatsApp token, such as SESSION_SECRET.
            raise ProviderConfigError(
                f"account {account.name}: accessTokenEnv must be a WA_TOKEN_* variable or be "
                "listed in CLOUD_API_TOKEN_ENVS"
            )
        key = (account.phoneNumberId, account.accessTokenEnv)
        provider = built.get(key)
        if provider is None or provider._closed:
            token = AccessToken(account.accessTokenEnv)
            if token.get() is None:
                raise ProviderConfigError(
                    f"account {account.name}: no access token in ${account.accessTokenEnv} "
                    f"or the file ${account.accessTokenEnv}_FILE names"
                )
            provider = built[key] = CloudApiProvider(
                phone_number_id=account.phoneNumberId,
                token=token,
                base_url=settings.cloud_api_base_url,
                version=settings.cloud_api_version,
                messages_per_second=settings.cloud_api_mps,
                max_in_flight=settings.cloud_api_concurrency,
                max_connections=settings.cloud_api_max_connections,
                # Below the send path's own timeout, so a slow answer is classified here
                # (ambiguous after the request left, transient before) rather than cut off.
                timeout_s=max(0.1, settings.provider_timeout_ms / 1000.0 * 0.9),
                label=account.name,
            )
        return provider

    return build
