"""The dashboard's session: a signed cookie with a fingerprint of the key that logged in and
the id of its server-side record (``store.sessions``).

The cookie never holds the key itself: only an HMAC of it under the session secret. The role
is worked out again from the configured keys on every request, so a key removed from the
settings logs its sessions out at the next restart; and the session counts only while its
record lives in Redis, so logout ends it everywhere the cookie was copied to. Cookies are
HttpOnly, SameSite=Strict, scoped to ``/admin`` and Secure over HTTPS.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import Response

from waqtor.config import ConfigError, Settings

log = logging.getLogger("waqtor.dashboard")

COOKIE = "waqtor_session"
PATH = "/admin"
MIN_SECRET_CHARS = 32


def load_secret(settings: Settings) -> str:
    """SESSION_SECRET, else the one stored in the data directory (made on first use)."""
    if settings.session_secret:
        if len(settings.session_secret) < MIN_SECRET_CHARS:
            raise ConfigError(f"SESSION_SECRET: at least {MIN_SECRET_CHARS} characters")
        return settings.session_secret
    path: Path = settings.data_dir / "session_secret"
    try:
        if path.exists():
            stored = path.read_text().strip()
            if len(stored) >= MIN_SECRET_CHARS:
                return stored
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(secret + "\n")
        return secret
    except OSError as exc:
        log.warning(
            "cannot store a session secret in %s (%s): logins last until restart", path, exc
        )
        return secrets.token_urlsafe(48)


@dataclass(frozen=True)
class Session:
    csrf: str
    key: str = ""  # fingerprint of the key that logged in; empty before login
    since: int = 0  # login time (s)
    flash: str = ""
    flash_kind: str = "ok"
    sid: str = ""  # the server-side record's id; empty before login

    @classmethod
    def anonymous(cls) -> Session:
        return cls(csrf=secrets.token_urlsafe(24))

    def with_flash(self, message: str, kind: str = "ok") -> Session:
        return replace(self, flash=message, flash_kind=kind)


class SessionCodec:
    def __init__(self, secret: str, max_age_s: int) -> None:
        self._serializer = URLSafeSerializer(secret, salt="waqtor.dashboard.session")
        self._fingerprint_key = hashlib.sha256(b"waqtor.dashboard.key:" + secret.encode()).digest()
        self.max_age_s = max_age_s

    def fingerprint(self, api_key: str) -> str:
        return hmac.new(self._fingerprint_key, api_key.encode(), hashlib.sha256).hexdigest()

    def login(self, api_key: str, sid: str) -> Session:
        """A fresh session (new CSRF token) for a key that has just been checked, whose
        server-side record is ``sid``."""
        return Session(
            csrf=secrets.token_urlsafe(24),
            key=self.fingerprint(api_key),
            since=int(time.time()),
            sid=sid,
        )

    def read(self, request: Request) -> Session | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data: Any = self._serializer.loads(raw)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        session = Session(
            csrf=data["c"],
            key=str(data.get("k", "")),
            since=int(data.get("t", 0)),
            flash=str(data.get("f", "")),
            flash_kind=str(data.get("fk", "ok")),
            sid=str(data.get("s", "")),
        )
        if session.key and time.time() - session.since > self.max_age_s:
            return Session.anonymous()
        return session

    def role(self, session: Session, full: list[str], readonly: list[str]) -> str | None:
        """``admin``, ``readonly`` or None; every key is compared, whatever matches first."""
        if not session.key:
            return None
        given = session.key.encode()
        admin = reader = False
        for key in full:
            admin |= hmac.compare_digest(given, self.fingerprint(key).encode())
        for key in readonly:
            reader |= hmac.compare_digest(given, self.fingerprint(key).encode())
        if admin:
            return "admin"
        return "readonly" if reader else None

    def write(self, response: Response, request: Request, session: Session) -> None:
        data: dict[str, Any] = {"c": session.csrf}
        if session.key:
            data.update(k=session.key, t=session.since, s=session.sid)
        if session.flash:
            data.update(f=session.flash, fk=session.flash_kind)
        response.set_cookie(
            COOKIE,
            self._serializer.dumps(data),
            max_age=self.max_age_s,
            path=PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def clear(self, response: Response, request: Request) -> None:
        response.delete_cookie(
            COOKIE,
            path=PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
