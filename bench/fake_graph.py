"""A fake WhatsApp Cloud API (Meta's Graph API) in its own process, for benchmarks and chaos.

    python -m bench.fake_graph --port P [--latency-ms 50] [--mps-limit 500]
        [--webhook-url URL --app-secret S [--webhook-delay-ms 200]]

It speaks Meta's wire format on ``POST /{version}/{phone-number-id}/messages`` (the same as
``tests/fake_cloud_api.py``, which runs inside the test process): a message id per accepted
message, the error envelope with ``130429`` past ``--mps-limit`` requests a second per
phone-number id, each answer after ``--latency-ms``. With ``--webhook-url`` it also does what
Meta does next: it POSTs a signed status webhook (``sent``, with our
``biz_opaque_callback_data``) for every message it accepted, a moment later.

A separate process (on uvloop), so its work does not share the benchmark's event loop.
``/_fake/*`` routes report what it got (``stats``, ``sent``) and change its latency and limit
(``config``). It only listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import time
from collections import Counter, defaultdict, deque
from typing import Any

import orjson

TOKEN = "fake-graph-token-0123456789"
_WEBHOOK_BATCH = 100


class FakeGraph:
    def __init__(
        self,
        latency_ms: float,
        mps_limit: float,
        webhook_url: str = "",
        app_secret: str = "",
        webhook_delay_ms: float = 200.0,
    ) -> None:
        self.latency_s = latency_ms / 1000.0
        self.mps_limit = mps_limit
        self.webhook_url = webhook_url
        self.app_secret = app_secret
        self.webhook_delay_s = webhook_delay_ms / 1000.0
        #: (arrival time, number id, to, opaque data, message id) of every accepted message.
        self.sent: list[tuple[float, str, str, str, str]] = []
        self.rejected: Counter[int] = Counter()
        self.requests = 0
        self.webhooks_posted = 0
        self.webhook_errors = 0
        self._window: dict[str, deque[float]] = defaultdict(deque)
        self._ids = itertools.count(1)
        self._hooked = 0

    # ---- HTTP ----
    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                status, payload = await self.handle(method, target, headers, body)
                raw = orjson.dumps(payload)
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % (status, len(raw))
                    + raw
                )
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        path = target.split("?", 1)[0]
        if path.startswith("/_fake/"):
            return self.control(method, path, body)
        self.requests += 1
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, _error(190, "Error validating access token")
        parts = path.strip("/").split("/")
        if method == "GET" and len(parts) == 2:
            return 200, {"display_phone_number": "+1 555-010-0000", "quality_rating": "GREEN"}
        if method != "POST" or len(parts) != 3 or parts[2] != "messages":
            return 400, _error(100, "Unsupported post request", subcode=33)
        try:
            msg = orjson.loads(body)
            to = str(msg["to"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return 400, _error(100, "Invalid parameter")
        number = parts[1]
        arrived = time.time()
        refused = False
        if self.mps_limit:  # counted as requests arrive, in a sliding second
            window, now = self._window[number], time.monotonic()
            while window and now - window[0] > 1.0:
                window.popleft()
            refused = len(window) >= self.mps_limit
            if not refused:
                window.append(now)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if refused:
            self.rejected[130429] += 1
            return 400, _error(130429, "(#130429) Rate limit hit")
        message_id = (
            "wamid."
            + base64.b64encode(
                hashlib.sha256(f"{to}:{next(self._ids)}".encode()).digest()[:18]
            ).decode()
        )
        opaque = str(msg.get("biz_opaque_callback_data") or "")
        self.sent.append((arrived, number, to, opaque, message_id))
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": message_id, "message_status": "accepted"}],
        }

    def control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if path == "/_fake/stats":
            times = [row[0] for row in self.sent]
            return 200, {
                "requests": self.requests,
                "sent": len(self.sent),
                "rejected": {str(k): v for k, v in self.rejected.items()},
                "first": min(times) if times else None,
                "last": max(times) if times else None,
                "webhooks": self.webhooks_posted,
                "webhookErrors": self.webhook_errors,
                "webhooksPending": len(self.sent) - self._hooked,
            }
        if path == "/_fake/sent":
            return 200, [[at, to, opaque, mid] for at, _, to, opaque, mid in self.sent]
        if path == "/_fake/config" and method == "POST":
            change = orjson.loads(body or b"{}")
            if "latencyMs" in change:
                self.latency_s = float(change["latencyMs"]) / 1000.0
            if "mpsLimit" in change:
                self.mps_limit = float(change["mpsLimit"])
            if change.get("reset"):
                self.sent.clear()
                self.rejected.clear()
                self.requests = 0
                self._hooked = 0
                self._window.clear()
            return 200, {"ok": True}
        return 404, {"error": "no such control route"}

    # ---- status webhooks, as Meta sends them after accepting a message ----
    async def post_webhooks(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            while True:
                await asyncio.sleep(0.05)
                cutoff = time.time() - self.webhook_delay_s
                while self._hooked < len(self.sent) and self.sent[self._hooked][0] <= cutoff:
                    rows = []
                    for row in self.sent[self._hooked : self._hooked + _WEBHOOK_BATCH]:
                        if row[0] > cutoff:
                            break
                        rows.append(row)
                    if await self._post(http, rows):
                        self._hooked += len(rows)
                    else:
                        await asyncio.sleep(0.5)  # the receiver is down: Meta retries too
                        break

    async def _post(self, http: Any, rows: list[tuple[float, str, str, str, str]]) -> bool:
        statuses = [
            {
                "id": mid,
                "status": "sent",
                "timestamp": str(int(at)),
                "recipient_id": to,
                **({"biz_opaque_callback_data": opaque} if opaque else {}),
            }
            for at, _, to, opaque, mid in rows
        ]
        payload = {
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
                                    "phone_number_id": rows[0][1],
                                },
                                "statuses": statuses,
                            },
                        }
                    ],
                }
            ],
        }
        body = orjson.dumps(payload)
        sig = "sha256=" + hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()
        try:
            async with http.post(
                self.webhook_url,
                data=body,
                headers={"X-Hub-Signature-256": sig, "Content-Type": "application/json"},
            ) as resp:
                await resp.read()
                ok = resp.status == 200
        except Exception:
            ok = False
        if ok:
            self.webhooks_posted += 1
        else:
            self.webhook_errors += 1
        return ok


def _error(code: int, message: str, subcode: int | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": message},
        "fbtrace_id": "AfakeTrace",
    }
    if subcode is not None:
        err["error_subcode"] = subcode
    return {"error": err}


async def main_async(args: argparse.Namespace) -> None:
    fake = FakeGraph(
        args.latency_ms, args.mps_limit, args.webhook_url, args.app_secret, args.webhook_delay_ms
    )
    server = await asyncio.start_server(fake.serve, "127.0.0.1", args.port, backlog=1024)
    hooks = asyncio.ensure_future(fake.post_webhooks()) if args.webhook_url else None
    print(f"fake graph listening on 127.0.0.1:{args.port}", flush=True)
    try:
        async with server:
            await server.serve_forever()
    finally:
        if hooks is not None:
            hooks.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_graph", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--mps-limit", type=float, default=0.0, help="0: no limit")
    parser.add_argument("--webhook-url", default="")
    parser.add_argument("--app-secret", default="")
    parser.add_argument("--webhook-delay-ms", type=float, default=200.0)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.run(main_async(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
