"""One account's live WhatsApp Web connection, in the process that holds its lease: the
client's events become the session state in Redis and the hooks the send path gave us
(receipts, inbound messages, ban signals); sends, typing and number checks run on the hub's
thread pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from waqtor.domain.clock import Clock
from waqtor.providers.web.adapter import (
    Connected,
    ConnectFailure,
    Disconnected,
    Inbound,
    LoggedOut,
    PairCode,
    QrCode,
    Receipt,
    StreamReplaced,
    TemporaryBan,
    WebClient,
    WebEvent,
    WebSendError,
)
from waqtor.store import web_sessions as ws
from waqtor.store.web_sessions import WebSessions, WebState

log = logging.getLogger("waqtor.providers.web")
T = TypeVar("T")


@dataclass
class Hooks:
    """What the send path does with a session's news (set by ``waqtor.sending.web_events``)."""

    receipt: Callable[[str, Receipt], Awaitable[None]]
    inbound: Callable[[str, Inbound], Awaitable[None]]
    #: A ban signal: pause the account with this reason (never reconnect against it).
    signal: Callable[[str, str], Awaitable[None]]
    #: Every state change, for the pages that list accounts.
    state: Callable[[str, WebState], Awaitable[None]] | None = None


async def _nothing(*_: Any) -> None:
    return None


NO_HOOKS = Hooks(_nothing, _nothing, _nothing)


def ban_end(until_ms: int) -> str:
    return datetime.fromtimestamp(until_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


class WebSession:
    def __init__(
        self,
        account: str,
        client_of: Callable[[Callable[[WebEvent], None]], WebClient],
        store: WebSessions,
        hooks: Hooks,
        executor: Executor,
        clock: Clock,
        holder: str,
    ) -> None:
        self.account = account
        self.store = store
        self.hooks = hooks
        self.executor = executor
        self.clock = clock
        self.state = WebState(holder=holder)
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[WebEvent] = asyncio.Queue()
        self.client = client_of(self._sink)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        #: Set once WhatsApp refused the device (logged out, banned, replaced): not restarted.
        self.final = False
        #: A number to ask a pairing code for, once connected.
        self._pair_phone: str | None = None

    def _sink(self, event: WebEvent) -> None:
        # Called on the library's threads.
        self._loop.call_soon_threadsafe(self._events.put_nowait, event)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._loop.run_in_executor(self.executor, fn, *args)

    async def start(self, pair_phone: str | None = None) -> None:
        """Connect; with ``pair_phone``, ask for a pairing code once the connection is up
        (whatsmeow's PairPhone needs it: the first QR code says it is)."""
        self._pair_phone = pair_phone
        await self._set(state=ws.CONNECTING, detail="connecting to WhatsApp", qr="", pair_code="")
        self._task = asyncio.ensure_future(self._pump())
        await self.call(self.client.start)

    async def _request_code(self) -> None:
        phone, self._pair_phone = self._pair_phone, None
        if phone is None:
            return
        try:
            code = await self.call(self.client.pair_phone, phone)
        except Exception as exc:
            await self._set(detail=f"no pairing code for that number: {str(exc)[:200]}")
            return
        await self._handle(PairCode(code))

    async def stop(self) -> None:
        await self.call(self.client.stop)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.connected.clear()

    async def logout(self) -> None:
        with contextlib.suppress(Exception):
            await self.call(self.client.logout)

    async def _set(self, **changes: Any) -> None:
        self.state = replace(self.state, updated_ms=self.clock.now_ms(), **changes)
        await self.store.set_state(self.account, self.state)
        if self.hooks.state is not None:
            await self.hooks.state(self.account, self.state)

    async def _pump(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self._handle(event)
            except Exception:
                log.exception("web account %s: event %r not handled", self.account, event)

    async def _handle(self, event: WebEvent) -> None:
        name = self.account
        if isinstance(event, QrCode):
            if self._pair_phone is not None:
                await self._request_code()
            if self.state.pair_code:
                await self._set(qr=event.code)
            else:
                await self._set(state=ws.PAIRING, qr=event.code, detail="scan the QR code")
        elif isinstance(event, PairCode):
            detail = "type the pairing code into WhatsApp"
            await self._set(state=ws.PAIRING, pair_code=event.code, detail=detail)
        elif isinstance(event, Connected):
            self.connected.set()
            await self._set(
                state=ws.CONNECTED,
                qr="",
                pair_code="",
                detail="connected",
                me=event.me or "",
                until_ms=0,
            )
        elif isinstance(event, Disconnected):
            if not self.final:
                self.connected.clear()
                await self._set(state=ws.CONNECTING, detail="reconnecting")
        elif isinstance(event, LoggedOut):
            await self._refused(ws.LOGGED_OUT, f"WhatsApp Web logged out ({event.reason})")
        elif isinstance(event, TemporaryBan):
            until = self.clock.now_ms() + event.expires_in_s * 1000
            reason = f"WhatsApp Web temporarily banned ({event.reason}) until {ban_end(until)}"
            await self._refused(ws.BANNED, reason, until_ms=until)
        elif isinstance(event, ConnectFailure):
            if event.final:
                state = ws.BANNED if "BAN" in event.reason else ws.LOGGED_OUT
                await self._refused(state, f"WhatsApp refused the connection ({event.reason})")
            else:
                await self._set(detail=f"connection failed ({event.reason}); retrying")
        elif isinstance(event, StreamReplaced):
            if await self.store.holder(name) != self.state.holder:
                # Our lease ran out and another process took the account over: a takeover,
                # not a ban signal. Step aside without touching the new holder's state.
                self.final = True
                self.connected.clear()
                log.warning("web account %s: taken over by another process", name)
                with contextlib.suppress(Exception):
                    await self.call(self.client.stop)
                return
            await self._refused(
                ws.REPLACED, "another connection of this WhatsApp Web session replaced this one"
            )
        elif isinstance(event, Receipt):
            await self.hooks.receipt(name, event)
        elif isinstance(event, Inbound):
            await self.hooks.inbound(name, event)

    async def _refused(self, state: str, reason: str, until_ms: int = 0) -> None:
        """WhatsApp refused this device: stop for good (no reconnect loop against a ban) and
        pause the account, naming why, until an operator acts."""
        self.final = True
        self.connected.clear()
        await self._set(state=state, detail=reason, qr="", pair_code="", until_ms=until_ms)
        log.warning("web account %s: %s", self.account, reason)
        await self.hooks.signal(self.account, reason)
        with contextlib.suppress(Exception):
            await self.call(self.client.stop)

    # --- sending, on the holder ---
    async def on_whatsapp(self, phones: list[str]) -> dict[str, bool]:
        self._need_connection()
        return await self.call(self.client.on_whatsapp, phones)

    async def send(self, phone: str, text: str, typing_ms: int) -> str:
        self._need_connection()
        if typing_ms > 0:
            # Best effort: a failed "typing..." must not cost the message.
            with contextlib.suppress(Exception):
                await self.call(self.client.typing, phone, True)
                await asyncio.sleep(typing_ms / 1000)
        self._need_connection()
        return await self.call(self.client.send_text, phone, text)

    def _need_connection(self) -> None:
        if not self.connected.is_set():
            raise WebSendError("not_connected", f"WhatsApp Web session is {self.state.state}")
