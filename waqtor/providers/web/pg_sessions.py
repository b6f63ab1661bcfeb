"""Session databases in Postgres (``WEB_SESSION_DB``): one database per web account, on the
server the URL names, so processes on different hosts can hold an account in turn.

Why a database per account, not one shared store: neonize 0.5.2 resumes "the first device" of
its store unless told a JID, so two accounts in one store would resume each other's session;
and per-account schemas (``search_path``) break whatsmeow's migrations, which look for their
version table in every schema. The account database is named after the URL's own database
(``<db>_web_<account>``), created before neonize opens it (whatsmeow makes its tables there
itself), and dropped when the account is removed. The URL's user needs CREATEDB.

The URL holds a password: only :func:`label` (password masked) is ever logged or shown, and
errors pass through :func:`scrub`. Every call here blocks: the hub runs them on threads.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from waqtor.providers.web.adapter import MissingNeonize

_PLAIN = re.compile(r"[A-Za-z0-9_]{1,32}")
#: Postgres truncates identifiers past this many bytes: names stay under it, never cut.
_MAX_IDENT = 63
CONNECT_TIMEOUT_S = 5


class SessionDbError(RuntimeError):
    """The session database could not be reached or changed (message free of the password)."""


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise MissingNeonize("WEB_SESSION_DB needs psycopg: pip install 'waqtor[web]'") from exc
    return psycopg


def label(url: str) -> str:
    """The URL with its password masked, for logs, health and pages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{quote(user)}:***@{netloc[-1]}"))


def scrub(message: str, url: str) -> str:
    """``message`` without the URL's password (drivers quote URLs in some errors)."""
    password = urlsplit(url).password
    out = message.replace(url, label(url))
    if password:
        out = out.replace(password, "***")
    return out


def database_name(base: str, account: str) -> str:
    """The account's database: ``<base>_web_<account>``; a name that is not plain, or too long,
    gets a digest instead, so two accounts never share one."""
    prefix = f"{base[:24]}_web_"
    if _PLAIN.fullmatch(account) and len((prefix + account).encode()) <= _MAX_IDENT:
        return prefix + account
    return prefix + "h" + hashlib.sha256(account.encode()).hexdigest()[:24]


class PostgresSessions:
    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        self.base = parts.path.lstrip("/") or (parts.username or "postgres")

    @property
    def label(self) -> str:
        return label(self.url)

    def database(self, account: str) -> str:
        return database_name(self.base, account)

    def url_of(self, account: str) -> str:
        """The URL neonize opens for ``account`` (lib/pq reads it; ``postgres`` prefix kept)."""
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path="/" + quote(self.database(account))))

    def _connect(self, url: str) -> Any:
        psycopg = _psycopg()
        # psycopg (libpq) takes postgresql:// and postgres:// alike.
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise SessionDbError(
                f"session database {label(url)} unreachable: {scrub(str(exc), url)}"
            ) from exc

    def _exists(self, conn: Any, name: str) -> bool:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return row is not None

    def prepare(self, account: str) -> str:
        """Create the account's database when missing; the URL to hand to neonize."""
        psycopg = _psycopg()
        from psycopg import sql

        name = self.database(account)
        with self._connect(self.url) as conn:
            if not self._exists(conn, name):
                try:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                except psycopg.errors.DuplicateDatabase:
                    pass  # another process made it just now
                except psycopg.Error as exc:
                    raise SessionDbError(
                        f"cannot create session database {name} on {self.label}: "
                        f"{scrub(str(exc), self.url)}"
                    ) from exc
        return self.url_of(account)

    def has_session(self, account: str) -> bool:
        """whatsmeow keeps a linked device in ``whatsmeow_device``: is there one?"""
        psycopg = _psycopg()
        with self._connect(self.url) as conn:
            if not self._exists(conn, self.database(account)):
                return False
        with self._connect(self.url_of(account)) as conn:
            try:
                row = conn.execute("SELECT COUNT(*) FROM whatsmeow_device").fetchone()
            except psycopg.errors.UndefinedTable:  # never opened by neonize: never linked
                return False
        return bool(row and row[0])

    def delete(self, account: str) -> None:
        """Drop the account's database (its keys), closing what still holds it open."""
        psycopg = _psycopg()
        from psycopg import sql

        name = self.database(account)
        with self._connect(self.url) as conn:
            try:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
            except psycopg.Error as exc:
                raise SessionDbError(
                    f"cannot drop session database {name} on {self.label}: "
                    f"{scrub(str(exc), self.url)}"
                ) from exc
