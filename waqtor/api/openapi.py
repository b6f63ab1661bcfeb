"""The OpenAPI description, complete: every status a route can answer, with its body.

FastAPI documents the success answer and a 422 we never send. Here every ``/api`` operation
also gets the statuses the gate and the error handlers give it (401, 403, 413, 429 with
``Retry-After``, 503; 400 when it takes parameters or a body), the routes add their own (404,
409, 415, 422), all with the one error shape; the API key is a declared security scheme; and
schemas that request bodies bring along (``EXTRA_SCHEMAS``) are components, so no ``$ref``
dangles.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "required": ["success", "error"],
    "properties": {
        "success": {"type": "boolean", "const": False},
        "error": {"type": "string", "description": "<field>: what is wrong"},
        "details": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": True,
}
WHY: dict[int, str] = {
    400: "A parameter or the body is wrong; `error` names the field.",
    401: "No `X-API-Key` header.",
    403: "The API key is wrong, or read-only on a route that changes something.",
    404: "Not found.",
    409: "Conflicts with the current state (see `error`).",
    413: "The body is larger than MAX_BODY_BYTES (or PREAUTH_MAX_BODY_BYTES before "
    "authentication), or too many recipients.",
    415: "Send application/json, text/csv or multipart/form-data.",
    422: "`Idempotency-Key` already used for a different request.",
    429: "Too many failed attempts from this address (wrong API keys or logins): try again "
    "after `Retry-After` seconds.",
    503: "Redis is unavailable; `error` says where.",
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds until this address may try again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
#: Components that request bodies documented by hand refer to (``SendBulkRequest``'s models).
EXTRA_SCHEMAS: dict[str, Any] = {}


def _error(status: int, existing: dict[str, Any] | None) -> dict[str, Any]:
    response = dict(existing or {})
    response.setdefault("description", WHY.get(status, "Error."))
    if "content" not in response:
        response["content"] = {"application/json": {"schema": ERROR_REF}}
    if status == 429:
        response["headers"] = RETRY_AFTER
    return response


def _complete(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    declared = {int(code) for code in responses if code.isdigit()}
    # FastAPI's own 422 (its validation-error shape) is never sent: our handler answers 400.
    if 422 in declared and "HTTPValidationError" in str(responses["422"]):
        del responses["422"]
        declared.discard(422)
    wanted = set(declared)
    takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
    if path.startswith("/api/"):
        operation["security"] = [{"ApiKey": []}]
        wanted |= {401, 403, 413, 429, 503}
        if takes_input:
            wanted.add(400)
    elif path.startswith("/webhooks/"):
        wanted |= {413}
    for status in sorted(wanted):
        if status >= 400:
            responses[str(status)] = _error(status, responses.get(str(status)))


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for name, found in EXTRA_SCHEMAS.items():
            schemas.setdefault(name, found)
        schemas["Error"] = ERROR_SCHEMA
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        components["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        }
        for path, item in schema.get("paths", {}).items():
            for method, operation in item.items():
                if method in ("get", "post", "put", "patch", "delete", "head"):
                    _complete(path, operation)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
