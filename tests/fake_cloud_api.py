"""A fake WhatsApp Cloud API (and a fake callback receiver) on a real loopback port.

A small HTTP/1.1 server on asyncio streams, with keep-alive, in a thread with its own event
loop, so the code under test talks to it exactly as to graph.facebook.com: through an httpx
connection pool, over TCP. It speaks Meta's wire format:

- ``POST /{version}/{phone-number-id}/messages``: ``{"messaging_product": "whatsapp",
  "contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid...", "message_status":
  "accepted"}]}``, or the error envelope ``{"error": {"message", "type", "code",
  "error_subcode"?, "error_data": {"messaging_product", "details"}, "fbtrace_id"}}``;
- a throughput limit per phone-number id (``130429`` past ``mps_limit`` requests in a second);
- ``GET /{version}/{phone-number-id}``: the number's profile (health);
- faults per recipient: any Meta error code, a bare HTTP status, a hang past the client's
  timeout, or a dropped connection after the request arrived;
- builders for the status and inbound-message webhooks Meta would send about what it got.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "fake-access-token-0123456789"
PHONE_NUMBER_ID = "106540352242922"
APP_SECRET = "fake-app-secret-0123456789abcdef"

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, status: int, payload: Any, **headers: str) -> Response:
        return cls(
            status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers}
        )


DROP = object()  #: close the connection without answering
Handler = Callable[[Request], Awaitable["Response | object"]]


class HttpServer:
    """HTTP/1.1 with keep-alive, on 127.0.0.1 and a free port, in its own thread."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpServer:
        self._thread = threading.Thread(target=self._run, name="fake-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake server did not start")
        return self

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()

        async def boot() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        loop.run_until_complete(boot())
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                parts = urlsplit(target)
                req = Request(method, parts.path, parse_qs(parts.query), headers, body)
                resp = await self.handler(req)
                if resp is DROP or not isinstance(resp, Response):
                    writer.transport.abort()
                    return
                reason = _REASONS.get(resp.status, "Status")
                out = [f"HTTP/1.1 {resp.status} {reason}", f"Content-Length: {len(resp.body)}"]
                out += [f"{k}: {v}" for k, v in resp.headers.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + resp.body)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    return
        except (ConnectionError, asyncio.CancelledError):
            return


# ---------------------------------------------------------------- the Cloud API
@dataclass
class Fault:
    """What the fake does for one recipient: a Meta error (``code``, with ``http`` status),
    a bare HTTP ``http`` status with a non-JSON body, ``hang`` seconds before answering
    (after accepting the message), or ``drop`` the connection (after accepting it)."""

    code: int | None = None
    http: int = 400
    subcode: int | None = None
    details: str = ""
    message: str = ""
    hang: float = 0.0
    drop: bool = False
    times: int = -1  # how many requests it applies to (-1: all)


META_MESSAGES = {
    130429: "(#130429) Rate limit hit",
    131056: "(#131056) (Business Account, Consumer Account) pair rate limit hit",
    131048: "(#131048) Spam rate limit hit",
    368: "Temporarily blocked for policies violations",
    131026: "(#131026) Message Undeliverable.",
    131047: "(#131047) Re-engagement message",
    131049: "(#131049) This message was not delivered to maintain healthy ecosystem engagement.",
    100: "(#100) Invalid parameter",
    190: "Error validating access token: Session has expired",
    131000: "(#131000) Something went wrong",
}


@dataclass
class Sent:
    at: float
    phone_number_id: str
    to: str
    body: dict[str, Any]
    message_id: str

    @property
    def opaque(self) -> str | None:
        value = self.body.get("biz_opaque_callback_data")
        return str(value) if value is not None else None


class FakeCloudApi:
    def __init__(self) -> None:
        self.server = HttpServer(self.handle)
        self._ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.latency_s = 0.0
        self.mps_limit: float | None = None
        self.token = TOKEN
        self.faults: dict[str, Fault] = {}
        self.sent: list[Sent] = []
        self.requests: list[Request] = []
        self.rejected: list[tuple[str, int]] = []  # (to, code)
        self._window: dict[str, deque[float]] = defaultdict(deque)

    def start(self) -> FakeCloudApi:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    # ---- wire format ----
    @staticmethod
    def error(
        code: int, http: int = 400, subcode: int | None = None, details: str = "", message: str = ""
    ) -> Response:
        err: dict[str, Any] = {
            "message": message or META_MESSAGES.get(code, f"(#{code}) error"),
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details or "details"},
            "fbtrace_id": "A"
            + base64.b32encode(hashlib.sha1(str(code).encode()).digest()).decode()[:22],
        }
        if subcode is not None:
            err["error_subcode"] = subcode
        return Response.of(http, {"error": err})

    def _message_id(self, to: str) -> str:
        raw = f"{to}:{next(self._ids)}:{time.time_ns()}".encode()
        return "wamid." + base64.b64encode(hashlib.sha256(raw).digest()[:24]).decode()

    async def handle(self, req: Request) -> Response | object:
        self.requests.append(req)
        parts = req.path.strip("/").split("/")
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return self.error(190, 401, subcode=463)
        if req.method == "GET" and len(parts) == 2:
            return Response.of(
                200,
                {
                    "display_phone_number": "+1 555-010-0000",
                    "quality_rating": "GREEN",
                    "id": parts[1],
                },
            )
        if req.method != "POST" or len(parts) != 3 or parts[2] != "messages":
            return self.error(
                100, 400, subcode=33, message="Unsupported post request. Object does not exist"
            )
        number_id = parts[1]
        try:
            body = req.json()
        except ValueError:
            return self.error(100, details="the body is not JSON")
        problem = self._invalid(body)
        if problem:
            return self.error(100, details=problem)
        to = str(body["to"])
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.mps_limit is not None:
            window = self._window[number_id]
            now = time.monotonic()
            while window and now - window[0] > 1.0:
                window.popleft()
            if len(window) >= self.mps_limit:
                self.rejected.append((to, 130429))
                return self.error(
                    130429, 400, details="Cloud API message throughput has been reached."
                )
            window.append(now)
        fault = self.faults.get(to)
        if fault is not None and fault.times != 0:
            fault.times -= 1 if fault.times > 0 else 0
            if fault.code is not None:
                self.rejected.append((to, fault.code))
                return self.error(
                    fault.code, fault.http, fault.subcode, fault.details, fault.message
                )
            if not (fault.hang or fault.drop):
                self.rejected.append((to, fault.http))
                return Response(
                    fault.http, b"<html>upstream error</html>", {"Content-Type": "text/html"}
                )
        message_id = self._message_id(to)
        self.sent.append(Sent(time.time(), number_id, to, body, message_id))
        if fault is not None and fault.drop:
            return DROP
        if fault is not None and fault.hang:
            await asyncio.sleep(fault.hang)
        return Response.of(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                "messages": [{"id": message_id, "message_status": "accepted"}],
            },
        )

    @staticmethod
    def _invalid(body: Any) -> str:
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return "messaging_product must be whatsapp"
        if not body.get("to"):
            return "to is required"
        kind = body.get("type")
        if kind == "text":
            if not (body.get("text") or {}).get("body"):
                return "text.body is required"
        elif kind == "template":
            tpl = body.get("template") or {}
            if not tpl.get("name") or not (tpl.get("language") or {}).get("code"):
                return "template.name and template.language.code are required"
        elif kind in ("image", "document"):
            if not (body.get(kind) or {}).get("link"):
                return f"{kind}.link is required"
        else:
            return f"unsupported type {kind!r}"
        return ""

    # ---- what Meta would send back ----
    def by_to(self, to: str) -> Sent:
        found = [m for m in self.sent if m.to == to.lstrip("+")]
        assert found, f"nothing was sent to {to}"
        return found[-1]

    def status_webhook(
        self,
        sent: Sent,
        status: str,
        *,
        at: float | None = None,
        error_code: int | None = None,
        opaque: bool = True,
    ) -> dict[str, Any]:
        st: dict[str, Any] = {
            "id": sent.message_id,
            "status": status,
            "timestamp": str(int(at if at is not None else time.time())),
            "recipient_id": sent.to,
        }
        if opaque and sent.opaque is not None:
            st["biz_opaque_callback_data"] = sent.opaque
        if status in ("sent", "delivered"):
            st["conversation"] = {"id": "c" + sent.message_id[-8:], "origin": {"type": "marketing"}}
            st["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "marketing"}
        if error_code is not None:
            st["errors"] = [
                {
                    "code": error_code,
                    "title": META_MESSAGES.get(error_code, "error"),
                    "message": META_MESSAGES.get(error_code, "error"),
                    "error_data": {"details": "Message failed to send."},
                }
            ]
        return self._envelope(sent.phone_number_id, {"statuses": [st]})

    def inbound_webhook(
        self, sender: str, text: str, phone_number_id: str = PHONE_NUMBER_ID
    ) -> dict[str, Any]:
        msg = {
            "from": sender.lstrip("+"),
            "id": self._message_id(sender),
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": text},
        }
        contacts = [{"profile": {"name": "Someone"}, "wa_id": sender.lstrip("+")}]
        return self._envelope(phone_number_id, {"contacts": contacts, "messages": [msg]})

    @staticmethod
    def _envelope(phone_number_id: str, value: dict[str, Any]) -> dict[str, Any]:
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550100000",
                                    "phone_number_id": phone_number_id,
                                },
                                **value,
                            },
                        }
                    ],
                }
            ],
        }


def signed(payload: Any, secret: str = APP_SECRET) -> tuple[bytes, dict[str, str]]:
    """A webhook body as Meta sends it, with its X-Hub-Signature-256."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Hub-Signature-256": sig, "Content-Type": "application/json"}


# ---------------------------------------------------------------- a callback receiver
class Receiver:
    """Answers callbacks with scripted statuses (then 200), recording what it got."""

    def __init__(self) -> None:
        self.server = HttpServer(self.handle)
        self.script: deque[int] = deque()
        self.got: list[Request] = []
        self.answered: list[int] = []

    def start(self) -> Receiver:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def url(self, path: str = "/hook") -> str:
        return self.server.url + path

    async def handle(self, req: Request) -> Response | object:
        self.got.append(req)
        status = self.script.popleft() if self.script else 200
        self.answered.append(status)
        headers = {"Retry-After": "0"} if status == 429 else {}
        return Response(status, b"ok" if status < 300 else b"nope", headers)


# ---------------------------------------------------------------- test helpers
TOKEN_ENV = "WA_TOKEN_TEST_CLOUD"


def cloud_account(name: str = "cloud", **extra: Any) -> dict[str, Any]:
    """A Cloud API account (business tier, no delay) using the fake's phone-number id; the
    token is read from ``$WA_TOKEN_TEST_CLOUD``."""
    return {
        "name": name,
        "tier": "business",
        "warmup": False,
        "delayMs": 0,
        "provider": "cloud_api",
        "phoneNumberId": PHONE_NUMBER_ID,
        "accessTokenEnv": TOKEN_ENV,
        **extra,
    }
