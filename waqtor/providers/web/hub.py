"""A process's WhatsApp Web sessions: it takes the lease of web accounts it can serve, keeps one
live connection for each, renews the leases, and answers the send requests that other
processes relay through Redis. Any process can send for any web account: the send goes to
the holder (directly when that is this process).

A process holds an account when its session database holds a linked device (so the processes
that may hold an account must reach its database: one host, a shared ``WEB_SESSION_DIR``, or
one Postgres server named by ``WEB_SESSION_DB``)
or an operator asked for pairing, and nobody else holds the lease. A holder that dies stops
renewing; another process takes over once the lease has expired (``WEB_LEASE_MS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from waqtor.config import Settings
from waqtor.domain.clock import Clock
from waqtor.providers.web.adapter import (
    ClientFactory,
    EventSink,
    MissingNeonize,
    WebClient,
    WebSendError,
)
from waqtor.providers.web.pg_sessions import PostgresSessions, SessionDbError
from waqtor.providers.web.session import NO_HOOKS, Hooks, WebSession
from waqtor.store import web_sessions as ws
from waqtor.store.accounts import AccountStore
from waqtor.store.web_sessions import WebSessions

log = logging.getLogger("waqtor.providers.web")

NAME = "web"
#: A pairing whose QR code (or pairing code) has not changed for this long has expired.
QR_STALE_MS = 90_000
#: Session states that wait for an operator: never reconnected by themselves.
OPERATOR_STATES = frozenset({ws.LOGGED_OUT, ws.BANNED, ws.REPLACED})
#: Not opened again by themselves: only an operator's pairing request reopens them.
WAIT_FOR_OPERATOR = OPERATOR_STATES | {ws.STOPPED}


def neonize_factory() -> ClientFactory:
    from waqtor.providers.web import neonize_client  # raises MissingNeonize, naming the extra

    return neonize_client.factory


class WebHub:
    def __init__(
        self,
        settings: Settings,
        store: WebSessions,
        accounts: AccountStore,
        clock: Clock,
        factory: ClientFactory | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.accounts = accounts
        self.clock = clock
        self._factory = factory
        self.holder_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.sessions: dict[str, WebSession] = {}
        self._serving: dict[str, asyncio.Task[None]] = {}
        self.hooks: Hooks = NO_HOOKS
        self.executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self.running = False
        url = settings.web_session_db
        #: Set when sessions live in Postgres (WEB_SESSION_DB); None: SQLite files.
        self.postgres = PostgresSessions(url.get_secret_value()) if url is not None else None
        #: Removed accounts whose Postgres session database could not be dropped yet.
        self._undropped: set[str] = set()

    # --- session databases ---
    @property
    def session_dir(self) -> Path:
        return self.settings.web_session_dir or (self.settings.data_dir / "web")

    def db_path(self, account: str) -> Path:
        return self.session_dir / f"{account}.db"

    def _private_db(self, account: str) -> Path:
        """The session database holds the account's keys: private to this user, created so
        before the library writes to it (SQLite keeps the mode)."""
        self.session_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.session_dir, 0o700)
        path = self.db_path(account)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        return path

    def factory(self) -> ClientFactory:
        if self._factory is None:
            self._factory = neonize_factory()
        return self._factory

    async def _session_db(self, account: str) -> Path | str:
        """Where ``account``'s session lives, ready for the library: its private SQLite file, or
        its Postgres database (created on first use) as a URL."""
        if self.postgres is not None:
            return await asyncio.to_thread(self.postgres.prepare, account)
        return self._private_db(account)

    async def _drop_pending(self) -> None:
        assert self.postgres is not None
        for name in sorted(self._undropped):
            if any(a.name == name for a in await self.accounts.all()):
                self._undropped.discard(name)  # added back meanwhile: its new session stays
                continue
            try:
                await asyncio.to_thread(self.postgres.delete, name)
            except SessionDbError as exc:
                log.warning("web account %s removed, its session not yet deleted: %s", name, exc)
            else:
                self._undropped.discard(name)

    async def _has_session(self, name: str) -> bool:
        """This process reaches the account's session database, with a linked device in it."""
        try:
            if self.postgres is not None:
                return await asyncio.to_thread(self.postgres.has_session, name)
            return self.factory().has_session(self.db_path(name))
        except MissingNeonize:
            return False
        except SessionDbError as exc:  # Postgres away: the other accounts go on
            log.warning("web account %s: %s", name, exc)
            return False

    async def _delete_db(self, name: str) -> None:
        """Delete the account's session (its keys). A Postgres that does not answer keeps the
        drop pending: retried on every round of this process, and logged until done."""
        if self.postgres is not None:
            self._undropped.add(name)
            await self._drop_pending()
            return
        with contextlib.suppress(FileNotFoundError):
            self.db_path(name).unlink()

    def _pool(self) -> ThreadPoolExecutor:
        # Threads for the short FFI calls (send, typing, checks); each connected account also
        # holds one thread of its own for the connection. Created lazily, so idle is free.
        if self.executor is None:
            self.executor = ThreadPoolExecutor(
                max_workers=self.settings.web_max_sessions + 4, thread_name_prefix="web-call"
            )
        return self.executor

    # --- holding sessions ---
    def start(self) -> None:
        """Hold and serve web accounts in this process (workers do; the API only relays)."""
        if self._task is None:
            self.running = True
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        every = self.settings.web_lease_ms / 3000
        while self.running:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("web sessions: %s", exc)
            await asyncio.sleep(every)

    async def tick(self) -> None:
        lease = self.settings.web_lease_ms
        if self._undropped:
            await self._drop_pending()
        every = await self.accounts.all()
        web = {a.name: a for a in every if a.provider == NAME}
        for name in list(self.sessions):
            session = self.sessions[name]
            if name not in web:
                if any(a.name == name for a in every):  # moved to another provider: keep keys
                    await self._close(name, release=True)
                else:  # deleted: unlink the device and delete its keys
                    await self.remove(name)
            elif not await self.store.renew(name, self.holder_id, lease):
                log.warning("web account %s: lease lost; disconnecting", name)
                await self._close(name, release=False)
            elif session.final:
                await self._close(name, release=True)
            elif self._pairing_expired(session):
                # WhatsApp stops rotating QR codes after a few minutes and the library only
                # prints that: a code this old can no longer be scanned.
                await self._close(name, release=True)
                expired = ws.WebState(
                    state=ws.UNPAIRED,
                    detail="the QR code expired before the phone scanned it: ask for a new one",
                    updated_ms=self.clock.now_ms(),
                )
                await self.store.set_state(name, expired)
            else:
                how = await self.store.take_pairing(name)
                if how:  # an operator asked to pair again: through this holder
                    await self._close(name, release=False)
                    await self.open(name, how)
        for name in web:
            if name in self.sessions or len(self.sessions) >= self.settings.web_max_sessions:
                continue
            state = await self.store.state(name)
            pairing = await self.store.pairing_requested(name)
            paired_here = state.state not in WAIT_FOR_OPERATOR and await self._has_session(name)
            if not (pairing or paired_here):
                continue
            if await self.store.acquire(name, self.holder_id, lease):
                how = await self.store.take_pairing(name)
                try:
                    await self.open(name, how)
                except Exception as exc:  # said where the operator looks, not only logged
                    # (no extra installed, a database the library cannot open...): stopped
                    # until an operator asks again, never retried in a loop.
                    await self._close(name, release=True)
                    stopped = ws.WebState(
                        state=ws.STOPPED, detail=str(exc), updated_ms=self.clock.now_ms()
                    )
                    await self.store.set_state(name, stopped)
                    log.error("web account %s: %s", name, exc)

    def _pairing_expired(self, session: WebSession) -> bool:
        seen = session.state
        return seen.state == ws.PAIRING and self.clock.now_ms() - seen.updated_ms > QR_STALE_MS

    async def open(self, name: str, how: str | None = None) -> WebSession:
        """Connect ``name`` here (the caller holds its lease). ``how``: ``qr`` or
        ``code:<digits>`` to pair now."""
        make = self.factory()
        db = await self._session_db(name)

        def client_of(sink: EventSink) -> WebClient:
            return make(db, sink)

        session = WebSession(
            name, client_of, self.store, self.hooks, self._pool(), self.clock, self.holder_id
        )
        self.sessions[name] = session
        phone = how[5:] if how and how.startswith("code:") else None
        await session.start(pair_phone=phone)
        self._serving[name] = asyncio.ensure_future(self._serve(name, session))
        log.info("web account %s: connecting (holder %s)", name, self.holder_id)
        return session

    async def _close(self, name: str, *, release: bool) -> None:
        session = self.sessions.pop(name, None)
        task = self._serving.pop(name, None)
        if task is not None:
            task.cancel()
            # gather, not ``suppress(CancelledError)``: that would swallow a cancel of this
            # close too (a bounded shutdown step's).
            await asyncio.gather(task, return_exceptions=True)
        if session is not None:
            await session.stop()
        if release:
            await self.store.release(name, self.holder_id)

    async def remove(self, name: str) -> None:
        """The account was removed: unlink the device where possible, delete the keys."""
        session = self.sessions.get(name)
        if session is not None:
            await session.logout()
        await self._close(name, release=True)
        await self._delete_db(name)
        await self.store.forget(name)

    async def removed(self, name: str) -> None:
        """The account was deleted (API): with no holder, its keys go from here; a holder
        unlinks the device and deletes them itself on its next round."""
        if name in self.sessions:
            await self.remove(name)
        elif not await self.store.holder(name):
            await self._delete_db(name)
            await self.store.forget(name)

    async def close(self) -> None:
        self.running = False
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for name in list(self.sessions):
            # With Redis away the lease just runs out: the connection is closed all the same.
            with contextlib.suppress(Exception):
                await self._close(name, release=True)
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None

    # --- serving requests relayed from other processes ---
    async def _serve(self, name: str, session: WebSession) -> None:
        while True:
            try:
                request = await self.store.take_request(name, 1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away for a moment
                log.warning("web account %s: relay: %s", name, exc)
                await asyncio.sleep(1)
                continue
            if request is None:
                continue
            if int(request.get("deadline", 0)) < self.clock.now_ms():
                # Its requester has given up and recorded the outcome as unknown: sending
                # now could only surprise the operator settling it.
                answer: dict[str, Any] = {"kind": "expired", "error": "expired", "reason": ""}
            else:
                answer = await self.execute(name, request)
            await self.store.reply(str(request["id"]), answer)

    async def execute(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        """Run one request on this process's session: ``{"id": ...}``, ``{"numbers": ...}``, or
        ``{"kind": <error class>, "error": code, "reason": ...}``."""
        session = self.sessions.get(name)
        try:
            if session is None:
                raise WebSendError("not_connected", f"account {name} is not connected here")
            if request["kind"] == "check":
                return {"numbers": await self.check(name, session, list(request["phones"]))}
            phone = str(request["phone"])
            known = await self.check(name, session, [phone])
            if not known.get(phone, False):
                return {
                    "kind": "permanent",
                    "error": "not_on_whatsapp",
                    "reason": "the number has no WhatsApp; nothing was sent",
                }
            message_id = await session.send(
                phone.lstrip("+"), str(request["text"]), int(request.get("typing", 0))
            )
            return {"id": message_id}
        except WebSendError as exc:
            return {"kind": kind_of(exc), "error": exc.code, "reason": exc.reason}
        except Exception as exc:  # the library's own errors: the request may have left
            return {"kind": "ambiguous", "error": "send_failed", "reason": str(exc)[:300]}

    async def check(self, name: str, session: WebSession, phones: list[str]) -> dict[str, bool]:
        """Which E.164 numbers are on WhatsApp: cached answers, the rest asked once."""
        now = self.clock.now_ms()
        since = now - self.settings.web_number_cache_ms
        known = await self.store.cached_numbers(name, phones, since)
        missing = [p for p in phones if p not in known]
        if missing:
            try:
                answers = await session.on_whatsapp([p.lstrip("+") for p in missing])
            except WebSendError:
                raise
            except Exception as exc:
                raise WebSendError("number_check_failed", str(exc)[:300]) from exc
            found = {p: answers.get(p.lstrip("+"), False) for p in missing}
            await self.store.cache_numbers(name, found, now)
            known.update(found)
        return known

    # --- sending from any process ---
    async def request(self, name: str, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Carry ``request`` to the holder of ``name`` and return its answer."""
        if name in self.sessions:
            return await self.execute(name, request)
        request_id = uuid.uuid4().hex
        deadline = self.clock.now_ms() + int(timeout_s * 1000)
        raw = await self.store.push_request(
            name, {**request, "id": request_id, "deadline": deadline}
        )
        answer = await self.store.wait_reply(request_id, timeout_s)
        if answer is not None:
            return answer
        if await self.store.withdraw_request(name, raw):
            holder = await self.store.holder(name)
            state = await self.store.state(name)
            where = f"held by {holder}" if holder else "held by no running process"
            return {
                "kind": "unavailable",
                "error": "web_not_connected",
                "reason": f"WhatsApp Web session of {name} is {state.state} ({where})",
            }
        return {
            "kind": "ambiguous",
            "error": "web_no_answer",
            "reason": "the session's holder took the message and did not answer in time",
        }


#: WhatsApp's answers that say "slow down or be banned": 463, the reach-out timelock for cold
#: contacts. The account rests (the breaker), never retried as transient.
BAN_CODES = frozenset({"463"})


def kind_of(exc: WebSendError) -> str:
    if exc.code == "not_connected":
        return "unavailable"
    if exc.code in BAN_CODES:
        return "ban_signal"
    if exc.code == "429":  # rate-overlimit
        return "rate_limited"
    if exc.may_have_left:
        return "ambiguous"
    if exc.code.isdigit() and exc.code.startswith("4"):
        return "permanent"
    return "transient"
