"""Meta's Cloud API errors sorted into the provider's retry classes.

Keyed on ``error.code`` (and ``error_subcode`` where Meta gives one meaning per subcode), never
on the HTTP status, as Meta advises: the same 400 carries a bad parameter, a spam block or an
expired token. The code is kept exactly as Meta's number ("131048"), so reports, "retry by
error code" and the ban-signal breaker (``waqtor.sending.breaker.BAN_SIGNALS``) all see
Meta's codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from waqtor.providers.base import (
    PermanentError,
    ProviderError,
    RateLimitedError,
    TransientError,
    UnavailableError,
)

Kind = Literal["rate", "permanent", "unavailable", "transient"]


@dataclass(frozen=True)
class Rule:
    kind: Kind
    advice: str
    retry_after_s: float = 0.0


DAY_S = 24 * 3600.0

#: What Meta advises for each code (developers.facebook.com, WhatsApp Cloud API error codes).
RULES: dict[int, Rule] = {
    # --- throttling: try again later, slower ---
    130429: Rule("rate", "the number's throughput limit was reached: slowing down", 1.0),
    131056: Rule(
        "rate",
        "too many messages to this recipient in a short time (pair rate limit): waiting",
        6.0,
    ),
    131049: Rule(
        "rate",
        "not delivered to maintain healthy ecosystem engagement (per-user marketing limit): "
        "retrying in about a day, not sooner",
        DAY_S,
    ),
    4: Rule("rate", "the app's API call limit was reached", 60.0),
    80007: Rule("rate", "the WhatsApp Business Account's rate limit was reached", 60.0),
    # --- ban signals: never retry; they also rest and may pause the account (breaker) ---
    131048: Rule(
        "permanent",
        "spam rate limit hit: too many of this number's messages were blocked or flagged; "
        "check the quality rating before sending more",
    ),
    368: Rule("permanent", "temporarily blocked for policy violations"),
    # --- this recipient or this message: fix it, do not retry as is ---
    131026: Rule(
        "permanent",
        "undeliverable: not a WhatsApp user, an outdated app, or the recipient has not "
        "accepted the current terms",
    ),
    131047: Rule(
        "permanent",
        "more than 24 hours since the recipient last replied: send an approved template",
    ),
    131050: Rule("permanent", "the recipient stopped marketing messages from this business"),
    131051: Rule("permanent", "unsupported message type"),
    131052: Rule("permanent", "the media could not be downloaded from its URL"),
    131053: Rule("permanent", "the media could not be uploaded (type or size)"),
    131008: Rule("permanent", "a required parameter is missing"),
    131009: Rule("permanent", "a parameter value is not valid"),
    131021: Rule("permanent", "the recipient cannot be the sender"),
    100: Rule("permanent", "invalid parameter: fix the request (see details)"),
    132000: Rule("permanent", "template: the number of parameters does not match"),
    132001: Rule("permanent", "template: no approved template with this name and language"),
    132005: Rule("permanent", "template: the text with its parameters is too long"),
    132007: Rule("permanent", "template: the parameters break the format policy"),
    132012: Rule("permanent", "template: a parameter has the wrong format"),
    132015: Rule("permanent", "template: paused for low quality"),
    132016: Rule("permanent", "template: disabled for low quality"),
    135000: Rule("permanent", "generic user error (see details)"),
    # --- the account, not the recipient: stop the campaign until someone fixes it ---
    190: Rule("unavailable", "the access token expired or is invalid: renew it"),
    0: Rule("unavailable", "authentication failed: renew the access token"),
    3: Rule("unavailable", "the app lacks the capability for this call"),
    10: Rule("unavailable", "permission denied: the token lacks whatsapp_business_messaging"),
    131031: Rule("unavailable", "the business account is locked"),
    131042: Rule("unavailable", "a payment problem on the business account"),
    133010: Rule("unavailable", "the phone number is not registered on the Cloud API"),
    # --- Meta's side: try again ---
    1: Rule("transient", "unknown API error: retrying"),
    2: Rule("transient", "the API service is temporarily unavailable: retrying"),
    131000: Rule("transient", "something went wrong at Meta: retrying"),
    131016: Rule("transient", "a WhatsApp service is temporarily unavailable: retrying"),
    133004: Rule("transient", "the server is temporarily unavailable: retrying"),
}

#: (code, subcode) pairs that mean something else than the code alone.
SUBCODE_RULES: dict[tuple[int, int], Rule] = {
    # "Unsupported post request. Object with ID ... does not exist": a wrong phone-number id
    # fails every recipient alike, so it stops the campaign instead of failing each one.
    (100, 33): Rule("unavailable", "no phone number with this id, or no access to it"),
}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def classify(http_status: int, body: Any, retry_after_header: str | None = None) -> ProviderError:
    """The exception for a non-success answer of the Cloud API."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        if http_status == 429:
            return RateLimitedError("http_429", "rate limited", _retry_after(retry_after_header, 1))
        if http_status >= 500:
            return TransientError(f"http_{http_status}", "server error without details")
        if http_status in (401, 403):
            return UnavailableError(f"http_{http_status}", "not authorised")
        return PermanentError(f"http_{http_status}", "request rejected without details")
    code = _int(error.get("code"))
    subcode = _int(error.get("error_subcode"))
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else data
    message = str(error.get("message") or "")
    text = "; ".join(str(p) for p in (message, details) if p)[:500]
    rule = SUBCODE_RULES.get((code, subcode)) if code is not None and subcode is not None else None
    if rule is None and code is not None:
        rule = RULES.get(code)
    code_s = str(code) if code is not None else f"http_{http_status}"
    if rule is None:
        if http_status == 429:
            rule = Rule("rate", "rate limited", 1.0)
        elif http_status >= 500:
            rule = Rule("transient", "server error")
        else:
            rule = Rule("permanent", "rejected")
    reason = f"{rule.advice} ({text})" if text else rule.advice
    if rule.kind == "rate":
        return RateLimitedError(
            code_s, reason, _retry_after(retry_after_header, rule.retry_after_s)
        )
    if rule.kind == "permanent":
        return PermanentError(code_s, reason)
    if rule.kind == "unavailable":
        return UnavailableError(code_s, reason)
    return TransientError(code_s, reason)


def _retry_after(header: str | None, default: float) -> float:
    if header:
        try:
            return max(default, float(header))
        except ValueError:
            pass
    return default
