"""What the WhatsApp Web gateway providers (WAHA, Evolution API) share: one keep-alive
aiohttp pool per gateway session, the request with its failure classes, the session state
cache, and the capabilities of an ordinary WhatsApp number (human pacing, number check,
typing, one message at a time).

A request that could not be sent (refused, DNS, no connection in time) is transient; one that
left and got no answer is ambiguous (the message may be out). What the gateway answered is
classified by each provider, which reads the message of a 5xx: a gateway wraps WhatsApp's
ban signals (error 463) in an HTTP 500.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import aiohttp
import orjson

from waqtor import __version__
from waqtor.config import Settings
from waqtor.domain.accounts import Account
from waqtor.providers import gateway_env
from waqtor.providers.base import (
    AmbiguousError,
    BanSignalError,
    Capabilities,
    Health,
    Lookup,
    OutgoingMessage,
    PermanentError,
    Provider,
    ProviderError,
    RateLimitedError,
    SendResult,
    SessionDownError,
    SessionState,
    TransientError,
    UnavailableError,
)
from waqtor.providers.registry import UnknownProvider

log = logging.getLogger("waqtor.gateway")

#: WhatsApp's reach-out timelock (cold contacts) and temporary bans, in a gateway's words.
_BAN_WORDS = re.compile(
    r"\b463\b|reach[- ]?out|timelock|temporar(?:il)?y? ban|account (?:is )?(?:banned|restricted)",
    re.IGNORECASE,
)
#: WhatsApp's own "rate-overlimit" (not the gateway's HTTP 429, which is its own throttle).
_RATE_WORDS = re.compile(r"rate[- ]?overlimit", re.IGNORECASE)


def ban_or_rate(text: str) -> ProviderError | None:
    """A ban signal or a rate limit named in a gateway's error text, else None."""
    if _BAN_WORDS.search(text):
        code = "463" if "463" in text or "reach" in text.lower() else "temporary_ban"
        return BanSignalError(code, text[:300])
    if _RATE_WORDS.search(text):
        return BanSignalError("rate_overlimit", text[:300])
    return None


def digits(phone: str) -> str:
    return phone.lstrip("+")


def gateway_of(account: Account) -> gateway_env.Gateway:
    """The gateway an account names (``GATEWAY_<NAME>_URL``), else why it cannot send."""
    if not account.gateway:
        raise UnknownProvider(f"account {account.name}: provider {account.provider} needs gateway")
    try:
        return gateway_env.gateway(account.gateway)
    except gateway_env.GatewayConfigError as exc:
        raise UnknownProvider(f"account {account.name}: {exc}") from None


class GatewayProvider(Provider):
    """The HTTP side shared by WAHA and Evolution, and how both send and read their answers;
    subclasses build requests (``payload``) and read what only their gateway says."""

    name = "gateway"
    key_header = "X-Api-Key"
    typing_in_request = False
    #: The session state in which it sends, and the states only an operator can clear.
    working_state = ""
    operator_states: frozenset[str] = frozenset()

    def __init__(self, settings: Settings, gateway: gateway_env.Gateway, session: str) -> None:
        self.gateway = gateway
        self.session_name = session
        self.capabilities = Capabilities(
            max_in_flight=1,
            lookup=Lookup.NONE,  # a gateway cannot be asked by our attempt id
            # Acks come back by webhook; an unknown send is settled by the ack of a message
            # this session sent to that number (``store.gateways``).
            settles_by_webhook=True,
            min_gap_ms=settings.gateway_min_gap_ms,
            number_check=True,
            web_session=True,
            # WAHA shows "typing..." by its own calls; Evolution by the send's ``delay``.
            presence=not self.typing_in_request,
            typing_in_send=self.typing_in_request,
        )
        self._timeout_s = max(0.1, settings.provider_timeout_ms / 1000.0 * 0.9)
        self._check_s = settings.gateway_session_check_ms / 1000.0
        self._session: aiohttp.ClientSession | None = None
        self._state: tuple[float, SessionState] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.gateway.name}/{self.session_name})"

    # ---- HTTP ----
    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=4, keepalive_timeout=30.0),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=min(5.0, self._timeout_s), sock_read=self._timeout_s
                ),
                headers={"User-Agent": f"waqtor/{__version__}"},
            )
        return self._session

    def _headers(self) -> dict[str, str]:
        key = gateway_env.api_key(self.gateway.name)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            headers[self.key_header] = key
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        extra_s: float = 0.0,
    ) -> tuple[int, Any]:
        """``(status, parsed body)``. Raises TransientError when nothing left this process and
        AmbiguousError when the request left without an answer."""
        # A request that shows "typing..." first (Evolution's delay) may take that much longer.
        timeout = aiohttp.ClientTimeout(
            total=None, connect=min(5.0, self._timeout_s), sock_read=self._timeout_s + extra_s
        )
        try:
            async with self._client().request(
                method,
                self.gateway.url + path,
                data=orjson.dumps(json) if json is not None else None,
                params=params,
                headers=self._headers(),
                allow_redirects=False,
                timeout=timeout,
            ) as resp:
                status, raw = resp.status, await resp.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise UnavailableError(
                "gateway_unreachable",
                f"could not reach gateway {self.gateway.name} ({type(exc).__name__})",
            ) from exc
        except (aiohttp.SocketTimeoutError, TimeoutError) as exc:
            raise AmbiguousError(
                "timeout", f"no answer from gateway {self.gateway.name} in time; it may have sent"
            ) from exc
        except aiohttp.ClientError as exc:
            raise AmbiguousError(
                "connection_lost",
                f"the connection to gateway {self.gateway.name} dropped after the request was "
                f"sent ({type(exc).__name__}); it may have sent",
            ) from exc
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw[:500].decode("utf-8", "replace")
        return status, body

    # ---- session ----
    async def session(self, *, fresh: bool = False) -> SessionState:
        now = time.monotonic()
        if not fresh and self._state is not None and now - self._state[0] < self._check_s:
            return self._state[1]
        try:
            state = await self.read_session()
        except (TransientError, AmbiguousError) as exc:
            state = SessionState("UNREACHABLE", False, exc.reason)
        self._state = (time.monotonic(), state)
        return state

    def forget_session(self) -> None:
        self._state = None

    async def read_session(self) -> SessionState:
        raise NotImplementedError

    def session_state(self, status: int, state: str | None, working_detail: str) -> SessionState:
        """The session as read: ``state`` as the gateway named it (None: it named none, and
        the HTTP status says what can be said)."""
        if state is None:
            if status == 404:
                state = "NOT_FOUND"
            elif status in (401, 403):
                state = "UNAUTHORIZED"
            else:
                return SessionState("UNREACHABLE", False, f"gateway answered HTTP {status}")
        working = state == self.working_state
        needs = state in self.operator_states
        detail = (
            working_detail
            if working
            else describe(self.gateway.name, self.session_name, state, needs)
        )
        return SessionState(state, working, detail, needs_operator=needs)

    def down(self, state: str) -> SessionDownError:
        """The session is not working (``state``, in the gateway's words)."""
        return session_error(self.gateway.name, self.session_name, state, self.operator_states)

    # ---- sending ----
    def payload(self, message: OutgoingMessage) -> tuple[str, dict[str, Any]]:
        """The path and body of the request that sends ``message``."""
        raise NotImplementedError

    def sent_id(self, answer: Any) -> str | None:
        """The id of the sent message in the gateway's answer, which its webhooks name."""
        raise NotImplementedError

    async def send(self, message: OutgoingMessage) -> SendResult:
        if message.template is not None:
            raise PermanentError(
                "unsupported", "WhatsApp templates are a Cloud API feature, not WhatsApp Web's"
            )
        path, body = self.payload(message)
        extra_s = message.typing_ms / 1000.0 if self.typing_in_request else 0.0
        status, answer = await self.request("POST", path, json=body, extra_s=extra_s)
        if 200 <= status < 300:
            found = self.sent_id(answer)
            if found is None:
                raise AmbiguousError("no_message_id", f"HTTP {status} without a message id")
            return SendResult(found)
        raise self.classify(status, answer)

    # ---- reading errors ----
    def classify(self, status: int, body: Any) -> ProviderError:
        """An error answer: what only this gateway says first (``own_error``), then WhatsApp's
        ban signals and rate limits in its words, then the HTTP status."""
        text = error_text(body) or f"HTTP {status}"
        own = self.own_error(status, body, text)
        if own is not None:
            return own
        signal = ban_or_rate(text)
        if signal is not None:
            return signal
        if status == 429:
            return RateLimitedError("http_429", text, retry_after_s=30.0)
        if status >= 500:
            return self.server_error(status, text)
        if status in (400, 413, 422):
            return self.refused(status, text)
        return TransientError(f"http_{status}", text)

    def own_error(self, status: int, body: Any, text: str) -> ProviderError | None:
        """What the gateway's answer means in its own terms (a session down, say), if any."""
        return None

    def server_error(self, status: int, text: str) -> ProviderError:
        if status in (502, 503, 504):
            return UnavailableError(f"http_{status}", f"gateway {self.gateway.name}: {text}")
        return TransientError(f"http_{status}", text)

    def refused(self, status: int, text: str) -> ProviderError:
        return PermanentError(f"http_{status}", text)

    async def health(self) -> Health:
        state = await self.session()
        return Health(state.working, state.detail)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._session is not None:
                await self._session.close()


def error_text(body: Any) -> str:
    """Every message a gateway error body carries, flattened (WAHA's ``exception.message``,
    Evolution's ``response.message`` list, Nest's ``message``)."""
    parts: list[str] = []

    def walk(value: Any, depth: int) -> None:
        if depth > 4 or len(parts) > 20:
            return
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(str(value))
        elif isinstance(value, list):
            for item in value[:10]:
                walk(item, depth + 1)
        elif isinstance(value, dict):
            for key in ("error", "message", "exception", "response", "status"):
                if key in value:
                    walk(value[key], depth + 1)

    walk(body, 0)
    return "; ".join(p for p in parts if p)[:1000]


def session_error(
    gateway: str, session: str, state: str, operator_states: frozenset[str]
) -> SessionDownError:
    needs = state in operator_states
    return SessionDownError(
        "session_" + state.lower(),
        describe(gateway, session, state, needs),
        state=state,
        needs_operator=needs,
    )


def describe(gateway: str, session: str, state: str, needs_operator: bool) -> str:
    what = {
        "SCAN_QR_CODE": "scan the QR code in the gateway",
        "STARTING": "starting",
        "connecting": "connecting (or waiting for a QR scan)",
        "close": "closed: reconnect it (scan the QR code) in the gateway",
        "STOPPED": "stopped: start it in the gateway",
        "FAILED": "failed: restart it (and scan the QR code) in the gateway",
        "LOGGED_OUT": "logged out: scan the QR code in the gateway",
        "NOT_FOUND": "does not exist on the gateway",
        "UNAUTHORIZED": "the gateway refused our key (GATEWAY_*_KEY)",
    }.get(state, state)
    tail = "; resume the account once it works" if needs_operator else ""
    return f"WhatsApp session {session!r} on gateway {gateway} is {state}: {what}{tail}"
