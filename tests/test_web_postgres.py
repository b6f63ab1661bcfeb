"""Web accounts' sessions in Postgres (``WEB_SESSION_DB``), against the real Postgres server at
127.0.0.1:5432 and the real neonize client. No test reaches WhatsApp: the one real connect goes
through a SOCKS proxy address on loopback where nothing listens, so whatsmeow opens its store
(creating its tables) and then fails to dial, with nothing leaving the machine."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.conftest import make_settings
from waqtor.config import Settings
from waqtor.domain.accounts import Account
from waqtor.providers.web.pg_sessions import (
    PostgresSessions,
    SessionDbError,
    database_name,
    label,
)
from waqtor.runtime.services import build

psycopg = pytest.importorskip("psycopg", reason="psycopg comes with the web extra")

SERVER = os.environ.get("WAQTOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "s3cret-pw-never-shown"


def _admin() -> Any:
    return psycopg.connect(SERVER, autocommit=True, connect_timeout=3)


def _reachable() -> str | None:
    try:
        with _admin():
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


def _databases(prefix: str) -> set[str]:
    with _admin() as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)
        ).fetchall()
    return {r[0] for r in rows}


def _tables(url: str) -> set[str]:
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_name LIKE 'whatsmeow%%'"
        ).fetchall()
    return {r[0] for r in rows}


@pytest.fixture
def pg_base() -> Iterator[str]:
    """A fresh database on the local server, named at random; it and every per-account
    database made from it are dropped afterwards."""
    why = _reachable()
    if why is not None:
        # CI (WAQTOR_REQUIRE_ALL=1, set by .ci/run) must run this, never skip it.
        (pytest.fail if os.environ.get("WAQTOR_REQUIRE_ALL") else pytest.skip)(
            f"no Postgres reachable at {SERVER}: {why}"
        )
    base = f"wqt_{uuid.uuid4().hex[:10]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{base}"')
    parts = SERVER.rsplit("/", 1)[0]
    try:
        # lib/pq (neonize's driver) requires TLS unless told otherwise; this server has none.
        # The server trusts loopback, so the password is never checked: it is there to be
        # looked for in everything the test can see.
        yield parts.replace("postgres@", f"postgres:{SECRET}@", 1) + f"/{base}?sslmode=disable"
    finally:
        with _admin() as conn:
            for name in _databases(base):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _connect_offline(url: str) -> str:
    """The narrowest real neonize call that opens the session store: ``connect`` (neonize's Go
    side opens the database, runs whatsmeow's migrations and loads the device before it dials),
    through a dead loopback proxy so the dial fails at once. Returns neonize's error."""
    from neonize._binder import ProxySettings
    from neonize.client import NewClient

    from waqtor.providers.web import neonize_client

    events: list[Any] = []
    client = neonize_client.NeonizeClient(url, events.append)
    assert isinstance(client.client, NewClient)
    error: list[str] = []

    def run() -> None:
        try:
            client.client.connect(ProxySettings(proxy_address=f"socks5://127.0.0.1:{_dead_port()}"))
            error.append("")
        except Exception as exc:
            error.append(str(exc))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "neonize's connect did not return"
    client.stop()
    assert events == []  # no QR, no connection: nothing reached WhatsApp
    return error[0]


def _link_device(url: str, jid: str) -> None:
    """Write a device row the way a finished pairing leaves one (whatsmeow saves the device
    only once the phone has scanned the QR code, which needs WhatsApp)."""
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        cols = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'whatsmeow_device' AND is_nullable = 'NO'"
        ).fetchall()
        values: list[Any] = []
        for name, kind in cols:
            if name == "jid":
                values.append(jid)
            elif kind == "bytea":
                values.append(bytes(64 if name.endswith("sig") else 32))
            elif kind in ("integer", "bigint", "smallint"):
                values.append(1)
            elif kind == "boolean":
                values.append(False)
            else:
                values.append("")
        names = ", ".join(c for c, _ in cols)
        marks = ", ".join(["%s"] * len(cols))
        conn.execute(f"INSERT INTO whatsmeow_device ({names}) VALUES ({marks})", values)


async def test_real_neonize_keeps_each_account_in_its_own_postgres_database(
    pg_base: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert SECRET in pg_base
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="neonize.utils.log")  # whatsmeow's own level too
    monkeypatch.chdir(tmp_path)  # neonize first tries the name as a SQLite file: none appears
    base = pg_base.rsplit("/", 1)[1].split("?")[0]
    settings = make_settings(redis_url, tmp_path, web_session_db=pg_base)
    s = build(settings, redis_url)
    try:
        hub = s.web
        assert hub.postgres is not None
        for name in ("pa", "pb"):
            await s.accounts.put(Account(name=name, provider="web"))
        url_a = await hub._session_db("pa")
        url_b = await hub._session_db("pb")
        assert isinstance(url_a, str) and isinstance(url_b, str)
        assert _databases(base) == {base, f"{base}_web_pa", f"{base}_web_pb"}
        assert _tables(url_a) == set() and _tables(url_b) == set()

        # The real client opens each account's store: whatsmeow's tables appear in that
        # account's database (each one's own migrations), then the dial fails on loopback.
        for url in (url_a, url_b):
            error = _connect_offline(url)
            assert "127.0.0.1" in error and "web.whatsapp.com" in error, error
            assert "database" not in error, error
        tables_a, tables_b = _tables(url_a), _tables(url_b)
        assert {"whatsmeow_device", "whatsmeow_version", "whatsmeow_sessions"} <= tables_a
        assert tables_a == tables_b
        assert _tables(pg_base) == set()  # the URL's own database stays untouched
        assert set(os.listdir(tmp_path)) <= {"data"}  # no stray SQLite file

        # Nothing paired yet; a linked device in pa's database is pa's alone.
        assert not await hub._has_session("pa") and not await hub._has_session("pb")
        _link_device(url_a, "966500000001.0:3@s.whatsapp.net")
        assert await hub._has_session("pa")
        assert not await hub._has_session("pb")
        # Reopened by the real client, pa's store still loads (its device row included).
        error = _connect_offline(url_a)
        assert "127.0.0.1" in error and "database" not in error, error

        # Removing a web account (no process holds it) drops its database, its keys.
        await s.accounts.delete("pa")
        await hub.removed("pa")
        assert _databases(base) == {base, f"{base}_web_pb"}
        assert not await hub._has_session("pa")
        assert "whatsmeow_device" in _tables(url_b)  # pb untouched

        # Postgres away at removal: nothing fails, the drop waits and is done on a later round.
        await s.accounts.put(Account(name="pc", provider="web"))
        await hub._session_db("pc")
        await s.accounts.delete("pc")
        reachable = hub.postgres
        hub.postgres = PostgresSessions(f"postgres://app:{SECRET}@127.0.0.1:{_dead_port()}/x")
        await hub.removed("pc")
        assert f"{base}_web_pc" in _databases(base) and hub._undropped == {"pc"}
        hub.postgres = reachable
        await hub.tick()
        assert _databases(base) == {base, f"{base}_web_pb"} and not hub._undropped
        state = await s.web.store.state("pc")
        assert SECRET not in repr(state)
    finally:
        await s.close()
    time.sleep(0.5)  # neonize hands whatsmeow's log lines over through a queue and a thread
    out, err = capfd.readouterr()
    loggers = {r.name for r in caplog.records}
    # Seen: whatsmeow's own log lines (from Go) and waqtor's warning naming the server masked.
    assert any(n.startswith("whatsmeow.") for n in loggers) and "waqtor.providers.web" in loggers
    assert "app:***@127.0.0.1" in caplog.text
    for seen in (caplog.text, out, err):
        assert SECRET not in seen


def _settings(url: str) -> Settings:
    values: dict[str, Any] = {"web_session_db": url}  # read from the environment as a string
    return Settings(**values)


def test_web_session_db_other_schemes_refused_naming_the_setting() -> None:
    for bad in ("mysql://u:" + SECRET + "@db/x", "sqlite:///tmp/x.db", "127.0.0.1:5432/x"):
        with pytest.raises(ValidationError) as caught:
            _settings(bad)
        text = str(caught.value)
        assert "web_session_db" in text and "WEB_SESSION_DB" in text
        assert SECRET not in text
    ok = _settings(f"postgresql://app:{SECRET}@db.internal:5432/waqtor")
    assert SECRET not in repr(ok) and SECRET not in str(ok.model_dump())
    assert _settings("").web_session_db is None


def test_startup_error_names_the_setting_without_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib

    main = importlib.import_module("waqtor.cli.main")
    monkeypatch.setenv("WEB_SESSION_DB", f"mysql://u:{SECRET}@db/x")
    with pytest.raises(SystemExit) as caught:
        main._settings()
    message = str(caught.value.code)
    assert "WEB_SESSION_DB" in message and SECRET not in message


def test_password_masked_in_labels_and_errors() -> None:
    url = f"postgres://app:{SECRET}@127.0.0.1:{_dead_port()}/waqtor"
    assert label(url) == url.replace(SECRET, "***")
    store = PostgresSessions(url)
    with pytest.raises(SessionDbError) as caught:
        store.prepare("acct")
    assert SECRET not in str(caught.value) and "***" in str(caught.value)
    # Names: plain accounts keep theirs; others get a digest, never cut to collide.
    assert database_name("waqtor", "acct_1") == "waqtor_web_acct_1"
    long_a, long_b = "a" * 40 + "x", "a" * 40 + "y"
    assert database_name("waqtor", long_a) != database_name("waqtor", long_b)
    assert all(len(database_name("w" * 80, n)) <= 63 for n in (long_a, "Ünïcode name"))
