"""The real ``WebClient``: neonize's sync client (bindings over whatsmeow), one per account.

neonize is an optional extra (``pip install 'waqtor[web]'``); importing this module without it
raises ``MissingNeonize`` naming what to install. neonize's ``connect()`` blocks for the life of
the connection, so it runs on a thread of its own (one thread per connected account, plus the
Go runtime's own); every other call is a short FFI call the session makes from a thread pool.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from waqtor.providers.web.adapter import (
    Connected,
    ConnectFailure,
    Disconnected,
    EventSink,
    Inbound,
    LoggedOut,
    MissingNeonize,
    QrCode,
    Receipt,
    StreamReplaced,
    TemporaryBan,
    WebSendError,
)
from waqtor.providers.web.pg_sessions import scrub

log = logging.getLogger("waqtor.providers.web")

INSTALL_HINT = (
    "the WhatsApp Web provider needs neonize: pip install 'waqtor[web]' "
    "(and the system's libmagic: apt-get install libmagic1)"
)


try:
    from neonize.client import NewClient
    from neonize.events import (
        ConnectedEv,
        ConnectFailureEv,
        DisconnectedEv,
        LoggedOutEv,
        MessageEv,
        PairStatusEv,
        ReceiptEv,
        StreamReplacedEv,
        TemporaryBanEv,
    )
    from neonize.proto import Neonize_pb2
    from neonize.utils.enum import ChatPresence, ChatPresenceMedia
    from neonize.utils.jid import build_jid
except ImportError as exc:  # neonize missing, or libmagic missing under it
    raise MissingNeonize(f"{INSTALL_HINT} ({exc})") from exc

#: WhatsApp's connect-failure reasons that mean "this device may not come back": never retried.
FINAL_FAILURES = frozenset({"LOGGED_OUT", "TEMP_BANNED", "MAIN_DEVICE_GONE", "UNKNOWN_LOGOUT"})
_SERVER_CODE = re.compile(r"\b(4\d\d|5\d\d)\b")
#: Errors raised before anything was written to the socket: the message certainly did not leave.
_NOT_LEFT = ("not connected", "not logged in", "websocket", "failed to get device list")


def _reason(enum: Any, value: int) -> str:
    try:
        return str(enum.Name(value))
    except ValueError:
        return str(value)


def classify_send_error(message: str) -> WebSendError:
    """A whatsmeow send error in our terms: WhatsApp's code when it gave one (``server
    returned error 463``); "not connected" and the like never left; anything else may have."""
    low = message.lower()
    found = _SERVER_CODE.search(message) if "error" in low else None
    if found:
        return WebSendError(found.group(1), message)
    if any(part in low for part in _NOT_LEFT):
        return WebSendError("not_connected", message)
    return WebSendError("send_failed", message, may_have_left=True)


class NeonizeClient:
    """One account's neonize client, writing its session to ``db``: a SQLite path, or a
    Postgres URL (one database per account, see ``pg_sessions``)."""

    def __init__(self, db: Path | str, sink: EventSink) -> None:
        self.db = db
        self.sink = sink
        # The uuid keys the Go side's client table: one per session database (the file's stem,
        # or the Postgres database's name, both unique per account).
        self.name = db.stem if isinstance(db, Path) else urlsplit(db).path.lstrip("/")
        self.client: Any = NewClient(str(db), uuid=self.name)
        self._thread: threading.Thread | None = None
        self._register()

    def _register(self) -> None:
        client = self.client
        sink = self.sink
        client.event.qr(lambda _c, data: sink(QrCode(bytes(data).decode())))

        def connected(_c: Any, _ev: Any) -> None:
            me = getattr(client, "me", None)
            user = getattr(getattr(me, "JID", None), "User", "") if me is not None else ""
            sink(Connected(str(user)))

        def paired(_c: Any, ev: Any) -> None:
            if ev.Error:
                log.warning("pairing failed: %s", ev.Error)

        def logged_out(_c: Any, ev: Any) -> None:
            sink(LoggedOut(_reason(Neonize_pb2.ConnectFailureReason, ev.Reason)))

        def temp_ban(_c: Any, ev: Any) -> None:
            code = _reason(Neonize_pb2.TemporaryBan.TempBanReason, ev.Code)
            sink(TemporaryBan(code, int(ev.Expire)))

        def connect_failure(_c: Any, ev: Any) -> None:
            reason = _reason(Neonize_pb2.ConnectFailureReason, ev.Reason)
            sink(ConnectFailure(reason, ev.Message, reason in FINAL_FAILURES))

        def receipt(_c: Any, ev: Any) -> None:
            kind = _reason(Neonize_pb2.Receipt.ReceiptType, ev.Type)
            mapped = {"DELIVERED": "delivered", "READ": "read", "PLAYED": "read"}.get(kind)
            if mapped and not ev.MessageSource.IsGroup:
                phone = ev.MessageSource.Chat.User
                sink(Receipt(phone, tuple(ev.MessageIDs), mapped))

        def message(_c: Any, ev: Any) -> None:
            source = ev.Info.MessageSource
            if source.IsFromMe or source.IsGroup:
                return
            msg = ev.Message
            text = msg.conversation or msg.extendedTextMessage.text
            if text:
                sink(Inbound(source.Sender.User, text, ev.Info.ID))

        client.event(ConnectedEv)(connected)
        client.event(PairStatusEv)(paired)
        client.event(LoggedOutEv)(logged_out)
        client.event(TemporaryBanEv)(temp_ban)
        client.event(ConnectFailureEv)(connect_failure)
        client.event(StreamReplacedEv)(lambda _c, _e: sink(StreamReplaced()))
        client.event(DisconnectedEv)(lambda _c, _e: sink(Disconnected()))
        client.event(ReceiptEv)(receipt)
        client.event(MessageEv)(message)
        # Kept alive here: neonize holds plain functions, and these closures have no other owner.
        self._handlers = (connected, paired, logged_out, temp_ban, connect_failure, receipt)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return

        def run() -> None:
            try:
                self.client.connect()
            except Exception as exc:
                message = str(exc) if isinstance(self.db, Path) else scrub(str(exc), self.db)
                log.warning("WhatsApp Web connection of %s ended: %s", self.name, message)

        self._thread = threading.Thread(target=run, name=f"web-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def pair_phone(self, phone: str) -> str:
        return str(self.client.PairPhone(phone, True))

    def jid(self, phone: str) -> Any:
        return build_jid(phone)

    def send_text(self, phone: str, text: str) -> str:
        try:
            response = self.client.send_message(build_jid(phone), text)
        except Exception as exc:
            raise classify_send_error(str(exc)) from exc
        return str(response.ID)

    def typing(self, phone: str, on: bool) -> None:
        state = ChatPresence.CHAT_PRESENCE_COMPOSING if on else ChatPresence.CHAT_PRESENCE_PAUSED
        self.client.send_chat_presence(
            build_jid(phone), state, ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT
        )

    def on_whatsapp(self, phones: Sequence[str]) -> dict[str, bool]:
        answers = self.client.is_on_whatsapp(*(f"+{p}" for p in phones))
        out = {p: False for p in phones}
        for answer in answers:
            digits = "".join(ch for ch in answer.Query if ch.isdigit())
            if digits in out:
                out[digits] = bool(answer.IsIn)
        return out

    def logout(self) -> None:
        self.client.logout()


class Factory:
    def __call__(self, db: Path | str, sink: EventSink) -> NeonizeClient:
        return NeonizeClient(db, sink)

    def has_session(self, db: Path) -> bool:
        """whatsmeow keeps a linked device in ``whatsmeow_device``: read it, read-only."""
        if not db.exists() or db.stat().st_size == 0:
            return False
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                row = conn.execute("SELECT COUNT(*) FROM whatsmeow_device").fetchone()
        except sqlite3.Error:  # no such table yet: never linked
            return False
        return bool(row and row[0])


factory = Factory()
