"""A fake of our WhatsApp Web boundary (``waqtor.providers.web.adapter.WebClient``): no test
reaches WhatsApp.

It behaves like a phone's linked device as neonize reports it: an unpaired session database
shows rotating QR codes until the test "scans" one (or types a pairing code); a paired one
connects at once. Sends return WhatsApp-like message ids; a number can be absent from WhatsApp,
or fail with a server code (463 reach-out timelock, 479...), "not connected", or leave without
an answer. The test injects receipts, replies, logouts, temporary bans and stream takeovers.

Pairing lives in the session database file itself and every send is appended to
``<session dir>/fake-sent.jsonl``, so worker processes that run this fake (``tests/web_worker``)
share what a real phone would: the session, and the messages that really went out.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from waqtor.providers.web.adapter import (
    Connected,
    EventSink,
    QrCode,
    WebEvent,
    WebSendError,
)

PAIRED = b"fake-paired:"


def pair_file(db: Path, me: str = "966500009999") -> None:
    """A session database as a paired device leaves it."""
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(PAIRED + me.encode())


def sent_log(session_dir: Path) -> list[dict[str, Any]]:
    path = session_dir / "fake-sent.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class FakeWebClient:
    #: Live clients by account (session database stem), for the test to drive.
    live: ClassVar[dict[str, FakeWebClient]] = {}
    #: Numbers (digits) that have no WhatsApp.
    absent: ClassVar[set[str]] = set()
    #: Number (digits) -> failure: a WhatsApp code ("463"), "not_connected" or "ambiguous".
    faults: ClassVar[dict[str, str]] = {}
    #: (account, phone, on) in order, and (account, phone) sends, for pacing assertions.
    typing_log: ClassVar[list[tuple[str, str, bool, float]]] = []
    built: ClassVar[int] = 0
    #: Accounts whose device was unlinked through ``logout``.
    logged_out: ClassVar[list[str]] = []

    def __init__(self, db: Path | str, sink: EventSink) -> None:
        self.db = Path(db)  # the fake keeps its "session" in a file: SQLite mode only
        self.account = self.db.stem
        self.sink = sink
        self.started = False
        self.qr_shown = 0
        self.lock = threading.Lock()
        FakeWebClient.built += 1
        FakeWebClient.live[self.account] = self

    @staticmethod
    def has_session(db: Path) -> bool:
        return db.exists() and db.read_bytes().startswith(PAIRED)

    @classmethod
    def reset(cls) -> None:
        cls.live.clear()
        cls.absent.clear()
        cls.faults.clear()
        cls.typing_log.clear()
        cls.logged_out.clear()

    # --- WebClient ---
    def start(self) -> None:
        self.started = True
        data = self.db.read_bytes() if self.db.exists() else b""
        if data.startswith(PAIRED):
            self.sink(Connected(data[len(PAIRED) :].decode()))
        else:
            self.rotate_qr()

    def stop(self) -> None:
        self.started = False

    def pair_phone(self, phone: str) -> str:
        # As whatsmeow: a pairing code needs the connection up, which the first QR code shows.
        if not self.qr_shown:
            raise RuntimeError("websocket not connected")
        return "WQTR-" + phone[-4:]

    def send_text(self, phone: str, text: str) -> str:
        fault = self.faults.get(phone)
        if fault == "not_connected":
            raise WebSendError("not_connected", "websocket not connected")
        message_id = "3EB0" + uuid.uuid4().hex[:16].upper()
        if fault == "ambiguous":
            self._log(phone, text, message_id)  # it went out; the answer never came
            raise WebSendError("send_failed", "context deadline exceeded", may_have_left=True)
        if fault:
            raise WebSendError(fault, f"server returned error {fault}")
        self._log(phone, text, message_id)
        return message_id

    def typing(self, phone: str, on: bool) -> None:
        import time

        self.typing_log.append((self.account, phone, on, time.monotonic()))

    def on_whatsapp(self, phones: Sequence[str]) -> dict[str, bool]:
        return {p: p not in self.absent for p in phones}

    def logout(self) -> None:
        self.logged_out.append(self.account)
        self.db.write_bytes(b"")

    # --- the test's hands ---
    def rotate_qr(self) -> None:
        self.qr_shown += 1
        self.sink(QrCode(f"2@fake-{self.account}-{self.qr_shown},AbCdEf=="))

    def scan(self, me: str = "966500009999") -> None:
        """The operator scans the QR code with the phone."""
        pair_file(self.db, me)
        self.sink(Connected(me))

    def unlinked_by_phone(self) -> None:
        """The phone removed this linked device: the session database is of no use now."""
        self.db.write_bytes(b"")

    def emit(self, event: WebEvent) -> None:
        self.sink(event)

    def _log(self, phone: str, text: str, message_id: str) -> None:
        line = json.dumps(
            {
                "account": self.account,
                "phone": phone,
                "text": text,
                "id": message_id,
                "pid": os.getpid(),
            }
        )
        with self.lock, (self.db.parent / "fake-sent.jsonl").open("a") as out:
            out.write(line + "\n")
