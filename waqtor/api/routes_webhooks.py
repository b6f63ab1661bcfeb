"""``/webhooks/whatsapp``: Meta's webhook for the WhatsApp Cloud API.

No X-API-Key here: Meta cannot send one. GET answers Meta's verification with the verify
token; POST is accepted only with a valid ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw
body with the app secret). Both answer 404, saying which setting is missing, until their
secret is configured.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from waqtor.api.deps import Parts
from waqtor.api.errors import ApiError
from waqtor.api.models import ok
from waqtor.campaigns import webhooks
from waqtor.config import read_secret
from waqtor.runtime.parts import HasSettings

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
log = logging.getLogger("waqtor.campaigns.webhooks")

MAX_CHALLENGE = 512


@router.get(
    "/whatsapp",
    response_class=PlainTextResponse,
    responses={400: {}, 403: {}, 404: {"description": "WHATSAPP_VERIFY_TOKEN is not set."}},
)
async def verify(request: Request, s: Parts[HasSettings]) -> PlainTextResponse:
    """Meta's subscription check: echo ``hub.challenge`` when ``hub.verify_token`` matches."""
    expected = s.settings.whatsapp_verify_token
    if not expected:
        raise ApiError(
            404,
            "WhatsApp webhooks are not configured: set WHATSAPP_VERIFY_TOKEN (and the app secret)",
        )
    query = request.query_params
    given = query.get("hub.verify_token") or ""
    challenge = query.get("hub.challenge") or ""
    matches = hmac.compare_digest(given.encode(), expected.encode())
    if query.get("hub.mode") != "subscribe" or not matches:
        raise ApiError(403, "hub.verify_token: does not match WHATSAPP_VERIFY_TOKEN")
    if not challenge or len(challenge) > MAX_CHALLENGE:
        raise ApiError(400, "hub.challenge: missing or too long")
    return PlainTextResponse(challenge, headers={"X-Content-Type-Options": "nosniff"})


@router.post(
    "/whatsapp",
    responses={
        400: {},
        401: {"description": "X-Hub-Signature-256 is missing or does not match the body."},
        404: {"description": "WHATSAPP_APP_SECRET is not set."},
    },
)
async def receive(request: Request, s: Parts[webhooks.CloudWebhooks]) -> dict[str, Any]:
    """Delivery statuses and inbound messages. Applied idempotently: Meta may send an event
    more than once, and out of order."""
    secret = read_secret(s.settings.whatsapp_app_secret, s.settings.whatsapp_app_secret_file)
    if not secret:
        raise ApiError(404, "WhatsApp webhooks are not configured: set WHATSAPP_APP_SECRET")
    body = await request.body()
    if not webhooks.signature_ok(secret, body, request.headers.get(webhooks.SIGNATURE_HEADER)):
        log.warning("webhook with a bad or missing %s rejected", webhooks.SIGNATURE_HEADER)
        raise ApiError(401, f"{webhooks.SIGNATURE_HEADER}: missing or does not match the body")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # bad JSON or UTF-8, a huge number, deep nesting
        raise ApiError(400, "body: not valid JSON (or nested too deeply)") from None
    try:
        return ok(await webhooks.handle(s, payload))
    except webhooks.Malformed as exc:
        raise ApiError(400, str(exc)) from None
