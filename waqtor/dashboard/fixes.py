"""Plain-language fixes for the error codes a recipient can end with."""

from __future__ import annotations

FIXES: dict[str, str] = {
    "sim_invalid_recipient": "The number is not on WhatsApp. Check it with the recipient; "
    "retrying will not help.",
    "sim_503": "The provider had a temporary error. Use “Retry failed” once it is healthy.",
    "sim_429": "The provider rate-limited this account. Raise MESSAGE_DELAY, then retry failed.",
    "sim_unavailable": "The provider was down. Retry failed once its health is green again.",
    "sim_timeout": "No answer came back, so the message may have been delivered. Check the "
    "provider before sending again.",
    "provider_timeout": "The provider did not answer within PROVIDER_TIMEOUT_MS; the message may "
    "have gone out. Check before sending again.",
    "provider_unavailable": "The provider was down on the job's last attempt. Retry failed once "
    "it is back.",
    "not_delivered": "The provider has no record of the message after every retry. Retry "
    "failed to send it once more.",
    "template": "The message uses a variable this recipient lacks. Add that column to the CSV "
    "or remove the placeholder.",
}
GENERIC = "Read the error text. If the cause was temporary, use “Retry failed”."


def fix_for(code: str | None) -> str:
    if not code:
        return ""
    return FIXES.get(code, GENERIC)
