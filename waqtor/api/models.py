"""Request and response models: WaQtor's shapes, kept exactly, plus documented additions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from waqtor.api.scheduling import Timing
from waqtor.domain.accounts import HTTP_URL
from waqtor.domain.numbers import numbers_only
from waqtor.providers.content import MediaSpec, TemplateSpec


class SendBulkRequest(Timing):
    model_config = ConfigDict(extra="ignore")

    recipients: list[Any] = Field(
        ...,
        min_length=1,
        description=(
            'Phone strings, or objects {"phone", "message"?, ...variables}. Invalid ones are '
            "reported by index; the rest are sent."
        ),
    )
    message: str | None = Field(
        default=None, description="Template for recipients without their own message."
    )
    template: TemplateSpec | None = Field(
        default=None,
        description="An approved WhatsApp template (Cloud API accounts); message is then "
        "optional (reports show a readable copy).",
    )
    media: MediaSpec | None = Field(
        default=None, description="An image or a document by URL; message is its caption."
    )
    callbackUrl: str | None = Field(
        default=None,
        max_length=2048,
        pattern=HTTP_URL,
        description="Status callbacks of this campaign go here (else to the account's).",
    )
    account: str | None = Field(
        default=None, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="Sender account."
    )
    accounts: list[Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]] | None = (
        Field(
            default=None,
            min_length=1,
            max_length=50,
            description="Spread the campaign over these accounts; each recipient keeps one.",
        )
    )

    @model_validator(mode="after")
    def _whatsapp_content(self) -> SendBulkRequest:
        if self.template is not None and self.media is not None:
            raise ValueError("template, media: give one of them, not both")
        if self.template is not None and not self.message:
            self.message = self.template.readable()
        return self


class CleanRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    grace: int | None = Field(default=None, ge=0, le=10**13, description="Age in ms; default 24 h.")
    _numbers = numbers_only("grace")


FaultClass = Literal[
    "transient", "rate_limited", "permanent", "ambiguous", "unavailable", "spam", "throttled"
]


class FaultsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transient: float = Field(default=0.0, ge=0, le=1)
    rate_limited: float = Field(default=0.0, ge=0, le=1)
    permanent: float = Field(default=0.0, ge=0, le=1)
    ambiguous: float = Field(default=0.0, ge=0, le=1)
    unavailable: float = Field(default=0.0, ge=0, le=1)
    spam: float = Field(default=0.0, ge=0, le=1)
    throttled: float = Field(default=0.0, ge=0, le=1)
    latencyMs: int | None = Field(default=None, ge=0, le=60_000)
    phones: dict[str, FaultClass] = Field(
        default_factory=dict,
        description="Outcome forced per E.164 phone: transient, rate_limited, permanent, ...",
    )
    _numbers = numbers_only(
        "transient", "rate_limited", "permanent", "ambiguous", "unavailable", "spam",
        "throttled", "latencyMs",
    )  # fmt: skip
    lookup: bool = Field(
        default=True,
        strict=True,
        description="Off: act like a provider that cannot settle unknown sends.",
    )


def ok(data: Any = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True}
    if data is not None:
        body["data"] = data
    body.update(extra)
    return body
