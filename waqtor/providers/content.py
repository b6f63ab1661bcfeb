"""What a WhatsApp message carries besides its text: an approved template, or media by URL.

send-bulk takes them once per campaign; every string inside may use the recipient's
``{placeholders}`` (as the text does), so each recipient gets its own template parameters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from waqtor.domain.accounts import HTTP_URL
from waqtor.domain.templates import TemplateError, check, render

#: Campaign meta fields (``Ledger.stage``'s ``extra``) holding a campaign's template and media.
TEMPLATE_FIELD = "waTemplate"
MEDIA_FIELD = "waMedia"

#: Keys whose string values are rendered per recipient inside template components.
RENDERED_KEYS = frozenset({"text", "payload", "link", "caption", "filename", "fallback_value"})
_URL = HTTP_URL
_LANG = re.compile(r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")


class TemplateSpec(BaseModel):
    """An approved WhatsApp template. Bulk sends outside the 24 h customer-service window
    must use one."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=512, pattern=r"^[a-z0-9_]+$", examples=["order_update"])
    language: str = Field(max_length=16, examples=["en_US", "ar"])
    parameters: list[str] | None = Field(
        default=None,
        max_length=100,
        description='Body parameters in order, e.g. ["{name}", "{order}"]: each rendered with '
        "the recipient's variables.",
    )
    components: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=20,
        description="Meta's components (header, body, button ...) as sent to the Cloud API; "
        "string values may use {placeholders}.",
    )

    @model_validator(mode="after")
    def _check(self) -> TemplateSpec:
        if not _LANG.match(self.language):
            raise ValueError("language must be a code such as en_US or ar")
        if self.parameters is not None and self.components is not None:
            raise ValueError("give parameters or components, not both")
        for text in [*(self.parameters or []), *_strings(self.components or [])]:
            try:
                check(text)  # each is rendered per recipient like a message: same limits
            except TemplateError as exc:
                raise ValueError(exc.reason) from None
        return self

    def readable(self) -> str:
        """The text shown in reports for a template send (its parameters are checked like a
        message's variables: a recipient lacking one is rejected)."""
        texts = list(self.parameters or [])
        for comp in self.components or []:
            texts.extend(_strings(comp))
        tail = " | ".join(texts)
        return f"[template {self.name}/{self.language}]" + (f" {tail}" if tail else "")


class MediaSpec(BaseModel):
    """An image or a document by URL; the message text becomes its caption."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["image", "document"]
    link: str = Field(max_length=2048, pattern=_URL)
    filename: str | None = Field(default=None, max_length=240)


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        out: list[str] = []
        for key, item in value.items():
            if key in RENDERED_KEYS and isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict | list):
                out.extend(_strings(item))
        return out
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _render_tree(value: Any, fill: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: fill(item)
            if key in RENDERED_KEYS and isinstance(item, str)
            else _render_tree(item, fill)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_render_tree(item, fill) for item in value]
    return value


def render_template(
    spec: Mapping[str, Any],
    variables: Mapping[str, object],
    builtins: Mapping[str, str],
    seed: str | None = None,
) -> dict[str, Any]:
    """The Cloud API's ``template`` object for one recipient. Raises TemplateError when a
    placeholder has no value."""

    def fill(text: str) -> str:
        return render(text, variables, builtins, seed)

    out: dict[str, Any] = {"name": spec["name"], "language": {"code": spec["language"]}}
    if spec.get("parameters"):
        out["components"] = [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": fill(p)} for p in spec["parameters"]],
            }
        ]
    elif spec.get("components"):
        out["components"] = _render_tree(spec["components"], fill)
    return out


def render_media(spec: Mapping[str, Any], caption: str) -> dict[str, Any]:
    """The ``media`` of an OutgoingMessage: ``{type, link, caption?, filename?}``."""
    media: dict[str, Any] = {"type": spec["type"], "link": spec["link"]}
    if caption:
        media["caption"] = caption[:1024]
    if spec.get("filename"):
        media["filename"] = spec["filename"]
    return media


def meta_fields(template: TemplateSpec | None, media: MediaSpec | None) -> dict[str, str]:
    """What a campaign stores (as JSON) so every worker sends the same template or media."""
    out: dict[str, str] = {}
    if template is not None:
        out[TEMPLATE_FIELD] = template.model_dump_json(exclude_none=True)
    if media is not None:
        out[MEDIA_FIELD] = media.model_dump_json(exclude_none=True)
    return out


def from_meta(meta: Mapping[str, str]) -> dict[str, Any]:
    """``Campaign`` keyword arguments (``wa_template``, ``media``) from a campaign's meta."""
    raw_template = meta.get(TEMPLATE_FIELD)
    raw_media = meta.get(MEDIA_FIELD)
    return {
        "wa_template": json.loads(raw_template) if raw_template else None,
        "media": json.loads(raw_media) if raw_media else None,
    }


def for_recipient(
    template: Mapping[str, Any] | None,
    media: Mapping[str, Any] | None,
    variables: Mapping[str, object],
    builtins: Mapping[str, str],
    seed: str | None,
    text: str,
) -> dict[str, Any]:
    """``OutgoingMessage`` keyword arguments (``template``, ``media``) for one recipient.
    Raises TemplateError when a template parameter has no value."""
    out: dict[str, Any] = {}
    if template is not None:
        out["template"] = render_template(template, variables, builtins, seed)
    elif media is not None:
        out["media"] = render_media(media, text)
    return out
