"""Fake WAHA and fake Evolution API servers: small ASGI apps (Starlette, served by uvicorn on
127.0.0.1 and a free port, in their own thread and loop) speaking each gateway's wire format.

Both have: a session whose state a test flips (``set_state``, which also POSTs the gateway's
session webhook), configurable latency, numbers that are not on WhatsApp, faults per
recipient (a 463 ban signal in the gateway's own shape, a hang after the message went out),
and webhooks POSTed to the service: acks after each send (``auto_acks``) or on demand, and
inbound messages. WAHA signs its webhooks with ``X-Webhook-Hmac`` (HMAC-SHA512 of the body);
Evolution puts its key in the body's ``apikey``.

WAHA (devlikeapro/waha): ``GET /api/sessions/{session}``, ``GET /api/contacts/check-exists``,
``POST /api/startTyping`` / ``stopTyping`` / ``sendText`` / ``sendImage`` / ``sendFile``;
errors as WAHA's Nest app writes them (422 session status, 404, 401, 500 ``exception``).
Evolution (EvolutionAPI/evolution-api): ``GET /instance/connectionState/{i}``, ``POST
/chat/whatsappNumbers/{i}``, ``POST /message/sendText/{i}`` and ``sendMedia/{i}``; errors as
``{"status", "error", "response": {"message"}}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_KEY = "fake-gateway-api-key-0123456789"
WEBHOOK_KEY = "fake-gateway-webhook-key-0123456789"


@dataclass
class Sent:
    path: str
    phone: str  # digits
    body: dict[str, Any]
    message_id: str
    at: float = field(default_factory=time.monotonic)


@dataclass
class Typing:
    phone: str
    action: str  # start | stop
    at: float = field(default_factory=time.monotonic)


class FakeGateway:
    """What both fakes share: the server thread, the session state, faults and webhooks."""

    working_state = "WORKING"

    def __init__(self, session: str) -> None:
        self.session = session
        self.state = self.working_state
        self.latency_s = 0.0
        self.not_on_whatsapp: set[str] = set()
        #: phone digits -> "463" | "hang" | an HTTP status ("400", "429", "500")
        self.faults: dict[str, str] = {}
        self.hang_s = 5.0
        self.auto_acks: list[int] = []  # acks POSTed after each send, in order
        self.webhook_url: str | None = None
        self.sent: list[Sent] = []
        self.typing: list[Typing] = []
        self.checks: list[str] = []
        self.hooks: list[tuple[int, dict[str, Any]]] = []  # (HTTP status, payload)
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle ----
    def routes(self) -> list[Route]:
        raise NotImplementedError

    def start(self) -> FakeGateway:
        app = Starlette(routes=self.routes())
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)

            async def main() -> None:
                assert self._server is not None
                task = asyncio.create_task(self._server.serve())
                while not self._server.started:
                    await asyncio.sleep(0.01)
                self.port = self._server.servers[0].sockets[0].getsockname()[1]
                ready.set()
                await task

            loop.run_until_complete(main())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-gateway", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake gateway did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self.state = self.working_state
        self.latency_s = 0.0
        self.not_on_whatsapp.clear()
        self.faults.clear()
        self.auto_acks = []
        self.webhook_url = None
        self.sent.clear()
        self.typing.clear()
        self.checks.clear()
        self.hooks.clear()

    def sent_to(self, phone: str) -> list[Sent]:
        digits = phone.lstrip("+")
        return [s for s in self.sent if s.phone == digits]

    # ---- webhooks ----
    async def run(self, coro: Any, timeout: float = 10) -> Any:
        """Run ``coro`` in the fake's loop, awaited from the test's loop (which serves the
        service the webhook goes to, so it must not block)."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    def sign(self, body: bytes) -> dict[str, str]:
        return {}

    def wrap(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def post_hook(self, payload: dict[str, Any]) -> int:
        if not self.webhook_url:
            return 0
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **self.sign(body)}
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.post(self.webhook_url, content=body, headers=headers)
        self.hooks.append((resp.status_code, payload))
        return resp.status_code

    async def _after_send(self, sent: Sent) -> None:
        for ack in self.auto_acks:
            await asyncio.sleep(0.02)
            await self.post_hook(self.ack_payload(sent, ack))

    def ack_payload(self, sent: Sent, ack: int) -> dict[str, Any]:
        raise NotImplementedError

    async def ack(self, sent: Sent, ack: int) -> int:
        """POST one ack about ``sent`` to the service now; returns its HTTP status."""
        status: int = await self.run(self.post_hook(self.ack_payload(sent, ack)))
        return status

    async def inbound(self, phone: str, text: str) -> int:
        status: int = await self.run(self.post_hook(self.inbound_payload(phone.lstrip("+"), text)))
        return status

    def inbound_payload(self, phone: str, text: str) -> dict[str, Any]:
        raise NotImplementedError

    async def set_state(self, state: str, *, hook: bool = True) -> int:
        self.state = state
        if not hook:
            return 0
        status: int = await self.run(self.post_hook(self.session_payload(state)))
        return status

    def session_payload(self, state: str) -> dict[str, Any]:
        raise NotImplementedError

    def _later(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- shared request handling ----
    async def _pause(self) -> None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)


class FakeWaha(FakeGateway):
    working_state = "WORKING"

    def __init__(self, session: str = "default") -> None:
        super().__init__(session)

    def routes(self) -> list[Route]:
        return [
            Route("/api/sessions/{session}", self.get_session, methods=["GET"]),
            Route("/api/contacts/check-exists", self.check_exists, methods=["GET"]),
            Route("/api/startTyping", self.start_typing, methods=["POST"]),
            Route("/api/stopTyping", self.stop_typing, methods=["POST"]),
            Route("/api/sendText", self.send, methods=["POST"]),
            Route("/api/sendImage", self.send, methods=["POST"]),
            Route("/api/sendFile", self.send, methods=["POST"]),
        ]

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("X-Api-Key") != API_KEY:
            return JSONResponse({"message": "Unauthorized", "statusCode": 401}, status_code=401)
        return None

    def _session_check(self, name: str | None) -> Response | None:
        if name != self.session:
            return JSONResponse(
                {"statusCode": 404, "message": "Session not found", "error": "Not Found"},
                status_code=404,
            )
        if self.state != "WORKING":
            return JSONResponse(
                {
                    "error": "Session status is not as expected. Try again later or restart "
                    "the session",
                    "session": name,
                    "status": self.state,
                    "expected": ["WORKING"],
                },
                status_code=422,
            )
        return None

    async def get_session(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        name = request.path_params["session"]
        if name != self.session:
            return JSONResponse(
                {"statusCode": 404, "message": "Session not found", "error": "Not Found"},
                status_code=404,
            )
        body: dict[str, Any] = {
            "name": name,
            "status": self.state,
            "config": {"webhooks": []},
            "engine": {"engine": "WEBJS"},
        }
        if self.state == "WORKING":
            body["me"] = {"id": "966500000000@c.us", "pushName": "Shop"}
        return JSONResponse(body)

    async def check_exists(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        if (bad := self._session_check(request.query_params.get("session"))) is not None:
            return bad
        phone = request.query_params.get("phone", "")
        self.checks.append(phone)
        exists = phone not in self.not_on_whatsapp
        return JSONResponse({"numberExists": exists, "chatId": f"{phone}@c.us" if exists else None})

    async def _typing(self, request: Request, action: str) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body = await request.json()
        if (bad := self._session_check(body.get("session"))) is not None:
            return bad
        self.typing.append(Typing(str(body["chatId"]).split("@")[0], action))
        return JSONResponse({}, status_code=201)

    async def start_typing(self, request: Request) -> Response:
        return await self._typing(request, "start")

    async def stop_typing(self, request: Request) -> Response:
        return await self._typing(request, "stop")

    async def send(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body = await request.json()
        if (bad := self._session_check(body.get("session"))) is not None:
            return bad
        await self._pause()
        chat = str(body.get("chatId", ""))
        phone = chat.split("@")[0]
        fault = self.faults.get(phone)
        if fault in ("400", "429", "500"):
            code = int(fault)
            return JSONResponse(
                {"statusCode": code, "message": f"fault {code}", "error": "Fault"},
                status_code=code,
            )
        if fault == "463":
            return JSONResponse(
                {
                    "statusCode": 500,
                    "timestamp": "2025-01-01T00:00:00.000Z",
                    "exception": {
                        "message": "server returned error 463",
                        "name": "Error",
                        "stack": "Error: server returned error 463\n    at ...",
                    },
                },
                status_code=500,
            )
        short = f"3EB0{next(self._ids):016X}"
        serialized = f"true_{chat}_{short}"
        sent = Sent(request.url.path, phone, body, serialized)
        self.sent.append(sent)
        if fault == "hang":  # the message went out; the answer never comes in time
            await asyncio.sleep(self.hang_s)
        self._later(self._after_send(sent))
        return JSONResponse(
            {
                "id": {"fromMe": True, "remote": chat, "id": short, "_serialized": serialized},
                "ack": 0,
                "body": body.get("text") or body.get("caption") or "",
                "from": "966500000000@c.us",
                "to": chat,
                "fromMe": True,
                "timestamp": int(time.time()),
            },
            status_code=201,
        )

    # ---- webhooks ----
    def sign(self, body: bytes) -> dict[str, str]:
        digest = hmac.new(WEBHOOK_KEY.encode(), body, hashlib.sha512).hexdigest()
        return {
            "X-Webhook-Hmac": digest,
            "X-Webhook-Hmac-Algorithm": "sha512",
            "X-Webhook-Request-Id": f"req-{next(self._ids)}",
            "X-Webhook-Timestamp": str(int(time.time() * 1000)),
        }

    def wrap(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"evt_{next(self._ids)}",
            "timestamp": int(time.time() * 1000),
            "event": event,
            "session": self.session,
            "metadata": {},
            "me": {"id": "966500000000@c.us", "pushName": "Shop"},
            "engine": "WEBJS",
            "environment": {"version": "2025.1.1", "engine": "WEBJS", "tier": "CORE"},
            "payload": payload,
        }

    def ack_payload(self, sent: Sent, ack: int) -> dict[str, Any]:
        names = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
        return self.wrap(
            "message.ack",
            {
                "id": sent.message_id,
                "from": "966500000000@c.us",
                "to": f"{sent.phone}@c.us",
                "participant": None,
                "fromMe": True,
                "ack": ack,
                "ackName": names[ack],
            },
        )

    def inbound_payload(self, phone: str, text: str) -> dict[str, Any]:
        return self.wrap(
            "message",
            {
                "id": f"false_{phone}@c.us_{next(self._ids):X}",
                "timestamp": int(time.time()),
                "from": f"{phone}@c.us",
                "fromMe": False,
                "to": "966500000000@c.us",
                "body": text,
                "hasMedia": False,
                "ack": 1,
            },
        )

    def session_payload(self, state: str) -> dict[str, Any]:
        return self.wrap("session.status", {"name": self.session, "status": state})


class FakeEvolution(FakeGateway):
    working_state = "open"

    def __init__(self, instance: str = "shop") -> None:
        super().__init__(instance)
        #: Evolution's ``status`` acks after each send, in order (``auto_acks`` index them).
        self.statuses = ["PENDING", "SERVER_ACK", "DELIVERY_ACK", "READ", "PLAYED", "ERROR"]

    def routes(self) -> list[Route]:
        return [
            Route("/instance/connectionState/{instance}", self.connection_state, methods=["GET"]),
            Route("/chat/whatsappNumbers/{instance}", self.numbers, methods=["POST"]),
            Route("/message/sendText/{instance}", self.send, methods=["POST"]),
            Route("/message/sendMedia/{instance}", self.send, methods=["POST"]),
        ]

    @staticmethod
    def _error(status: int, error: str, message: Any) -> Response:
        return JSONResponse(
            {"status": status, "error": error, "response": {"message": message}},
            status_code=status,
        )

    def _check(self, request: Request) -> Response | None:
        if request.headers.get("apikey") != API_KEY:
            return self._error(401, "Unauthorized", "Unauthorized")
        name = request.path_params["instance"]
        if name != self.session:
            return self._error(404, "Not Found", [f'The "{name}" instance does not exist'])
        return None

    async def connection_state(self, request: Request) -> Response:
        if (bad := self._check(request)) is not None:
            return bad
        return JSONResponse({"instance": {"instanceName": self.session, "state": self.state}})

    async def numbers(self, request: Request) -> Response:
        if (bad := self._check(request)) is not None:
            return bad
        if self.state != "open":
            return self._error(500, "Internal Server Error", "Error: Connection Closed")
        numbers = (await request.json()).get("numbers", [])
        self.checks.extend(str(n) for n in numbers)
        return JSONResponse(
            [
                {
                    "jid": f"{n}@s.whatsapp.net",
                    "exists": str(n) not in self.not_on_whatsapp,
                    "number": str(n),
                }
                for n in numbers
            ]
        )

    async def send(self, request: Request) -> Response:
        if (bad := self._check(request)) is not None:
            return bad
        if self.state != "open":
            return self._error(500, "Internal Server Error", "Error: Connection Closed")
        body = await request.json()
        phone = str(body.get("number", ""))
        if phone in self.not_on_whatsapp:
            return self._error(
                400,
                "Bad Request",
                [{"jid": f"{phone}@s.whatsapp.net", "exists": False, "number": phone}],
            )
        fault = self.faults.get(phone)
        if fault in ("400", "429", "500"):
            names = {
                "400": "Bad Request",
                "429": "Too Many Requests",
                "500": "Internal Server Error",
            }
            return self._error(int(fault), names[fault], [f"fault {fault}"])
        delay = body.get("delay")
        if isinstance(delay, int) and delay > 0:
            # Evolution shows "composing" for ``delay`` ms, then sends.
            self.typing.append(Typing(phone, "start"))
            await asyncio.sleep(delay / 1000.0)
            self.typing.append(Typing(phone, "stop"))
        await self._pause()
        key_id = f"BAE5{next(self._ids):012X}"
        sent = Sent(request.url.path, phone, body, key_id)
        self.sent.append(sent)
        if fault == "hang":
            await asyncio.sleep(self.hang_s)
        # accepted; a 463 is refused by WhatsApp afterwards, as an ERROR update
        self._later(self._refused(sent) if fault == "463" else self._after_send(sent))
        return JSONResponse(
            {
                "key": {"remoteJid": f"{phone}@s.whatsapp.net", "fromMe": True, "id": key_id},
                "pushName": "",
                "status": "PENDING",
                "message": {"conversation": body.get("text") or body.get("caption") or ""},
                "messageType": "conversation",
                "messageTimestamp": int(time.time()),
                "instanceId": "0f8e6c2a-0000-4000-8000-000000000001",
                "source": "unknown",
            },
            status_code=201,
        )

    async def _refused(self, sent: Sent) -> None:
        await asyncio.sleep(0.02)
        await self.post_hook(self.ack_payload(sent, 1))
        payload = self.ack_payload(sent, 5)
        payload["data"]["messageStubParameters"] = ["463"]
        await self.post_hook(payload)

    # ---- webhooks ----
    def wrap(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "event": event,
            "instance": self.session,
            "data": data,
            "destination": self.webhook_url,
            "date_time": "2025-01-01T00:00:00.000Z",
            "sender": "966500000000@s.whatsapp.net",
            "server_url": self.url,
            "apikey": WEBHOOK_KEY,
        }

    def ack_payload(self, sent: Sent, ack: int) -> dict[str, Any]:
        return self.wrap(
            "messages.update",
            {
                "messageId": f"cm{sent.message_id.lower()}",
                "keyId": sent.message_id,
                "remoteJid": f"{sent.phone}@s.whatsapp.net",
                "fromMe": True,
                "participant": None,
                "status": self.statuses[ack],
                "instanceId": "0f8e6c2a-0000-4000-8000-000000000001",
            },
        )

    def inbound_payload(self, phone: str, text: str) -> dict[str, Any]:
        return self.wrap(
            "messages.upsert",
            {
                "key": {
                    "remoteJid": f"{phone}@s.whatsapp.net",
                    "fromMe": False,
                    "id": f"3A{next(self._ids):014X}",
                },
                "pushName": "Customer",
                "message": {"conversation": text},
                "messageType": "conversation",
                "messageTimestamp": int(time.time()),
                "instanceId": "0f8e6c2a-0000-4000-8000-000000000001",
                "source": "android",
            },
        )

    def session_payload(self, state: str) -> dict[str, Any]:
        data: dict[str, Any] = {"instance": self.session, "state": state}
        if state == "close":
            data["statusReason"] = 401
        return self.wrap("connection.update", data)
