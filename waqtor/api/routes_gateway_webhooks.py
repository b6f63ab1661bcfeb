"""``/webhooks/waha/{gateway}`` and ``/webhooks/evolution/{gateway}``: acks, replies and
session changes from WhatsApp Web gateways.

No X-API-Key: a gateway cannot send one. Each route refuses everything (404, naming the
setting) until the gateway's webhook secret is set in GATEWAY_<NAME>_WEBHOOK_KEY: WAHA's HMAC
key (``X-Webhook-Hmac``, HMAC-SHA512 of the raw body), or the key Evolution puts in the body's
``apikey``. Unsigned acks or opt-outs are never accepted (401).
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from waqtor.api.deps import Parts
from waqtor.api.errors import ApiError
from waqtor.api.models import ok
from waqtor.campaigns import gateway_webhooks as gw
from waqtor.providers import evolution, gateway_env, waha

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
log = logging.getLogger("waqtor.campaigns.gateway_webhooks")

Gateway = Annotated[str, Path(max_length=32, pattern=r"^[A-Za-z0-9_]{1,32}$")]
_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {},
    401: {"description": "The webhook's signature or key is missing or wrong."},
    404: {"description": "GATEWAY_<NAME>_WEBHOOK_KEY is not set."},
}


def _key(gateway: str) -> str:
    key = gateway_env.webhook_key(gateway)
    if not key:
        raise ApiError(
            404,
            f"webhooks of gateway {gateway} are not configured: set "
            f"{gateway_env.webhook_key_var(gateway)}",
        )
    return key


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "body: not valid JSON (or nested too deeply)") from None


@router.post("/waha/{gateway}", responses=_RESPONSES)
async def receive_waha(
    gateway: Gateway, request: Request, s: Parts[gw.GatewayWebhooks]
) -> dict[str, Any]:
    """WAHA events (``message.ack``, ``message``, ``session.status``), HMAC-signed."""
    key = _key(gateway)
    body = await request.body()
    headers = request.headers
    if not gw.waha_signature_ok(
        key, body, headers.get(gw.HMAC_HEADER), headers.get(gw.HMAC_ALGORITHM_HEADER)
    ):
        log.warning("WAHA webhook with a bad or missing %s rejected", gw.HMAC_HEADER)
        raise ApiError(401, f"{gw.HMAC_HEADER}: missing or does not match the body")
    try:
        session, events = gw.parse_waha(_json(body), s.clock.now_ms())
    except gw.Malformed as exc:
        raise ApiError(400, str(exc)) from None
    return ok(await gw.handle(s, waha.NAME, gateway, session, events))


@router.post("/evolution/{gateway}", responses=_RESPONSES)
@router.post("/evolution/{gateway}/{event}", responses=_RESPONSES, include_in_schema=False)
async def receive_evolution(
    gateway: Gateway, request: Request, s: Parts[gw.GatewayWebhooks]
) -> dict[str, Any]:
    """Evolution API events (``messages.update``, ``messages.upsert``, ``connection.update``;
    also at ``/{event}`` for "webhook by events"), checked by the ``apikey`` in the body."""
    key = _key(gateway)
    payload = _json(await request.body())
    if not gw.evolution_key_ok(key, payload):
        log.warning("Evolution webhook with a bad or missing apikey rejected")
        raise ApiError(401, "apikey: missing or does not match GATEWAY_*_WEBHOOK_KEY")
    try:
        instance, events = gw.parse_evolution(payload, s.clock.now_ms())
    except gw.Malformed as exc:
        raise ApiError(400, str(exc)) from None
    return ok(await gw.handle(s, evolution.NAME, gateway, instance, events))
