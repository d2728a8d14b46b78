"""`POST /v1/webhooks/pusher`: Pusher's occupancy webhooks (no JWT: Pusher signs them).

The raw body is verified by the pusher SDK's own `validate_webhook`: `X-Pusher-Key` must be the
app's key, `X-Pusher-Signature` the hex HMAC-SHA256 of the raw body under the app's secret
(constant-time comparison), and the body's `time_ms` within 5 minutes of now. Anything it refuses
is 401 and nothing is written. The body is read raw (never parsed into a model before the check,
never re-serialized). herald.presence applies the events (decision 018); the answer is 200 as soon
as the conditional writes are done, so Pusher does not retry.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field, ValidationError

from herald.api.errors import Unauthorized, Unavailable, Unprocessable
from herald.api.raw_body import raw_body
from herald.api.services import services
from herald.channels.credentials import ProviderUnavailable
from herald.presence import apply_webhook
from herald.stores.presence import PresenceStore

logger = Logger(child=True)
router = APIGatewayHttpRouter()

KEY_HEADER = "X-Pusher-Key"
SIGNATURE_HEADER = "X-Pusher-Signature"


class WebhookApplied(BaseModel):
    applied: int = Field(description="presence changes written")
    stale: int = Field(description="changes older than (or the same as) the state already kept")
    ignored: int = Field(
        description="events that are not a `private-user-<id>` channel's occupancy, or superseded in the body"
    )


def _verified() -> dict[str, Any]:
    """The body as the SDK parsed it once the signature, key and age check out; raises Unauthorized."""
    headers = router.current_event.headers
    key, signature, body = (
        headers.get(KEY_HEADER),
        headers.get(SIGNATURE_HEADER),
        raw_body(router.current_event),
    )
    if not key or not signature or body is None:
        raise Unauthorized("the webhook is not signed")
    try:
        client = services(router).pusher.get()
    except ProviderUnavailable as error:
        logger.error("Pusher secret unreadable: webhook not verified", extra={"reason": str(error)})
        raise Unavailable("the webhook cannot be verified now: retry later") from None
    try:
        verified = client.validate_webhook(key=key, signature=signature, body=body)
    except (TypeError, ValueError, AttributeError):  # not UTF-8, not a JSON object, odd time_ms
        verified = None
    if not isinstance(verified, dict):
        raise Unauthorized("the webhook's key, signature or time_ms is not valid")
    return verified


@router.post(
    "/webhooks/pusher",
    summary="Pusher's channel webhooks (signed by Pusher; no JWT)",
    description="Verified with `X-Pusher-Key` / `X-Pusher-Signature` (HMAC-SHA256 of the raw body); "
    "`time_ms` must be within 5 minutes. Occupancy of `private-user-<id>` channels is kept in "
    "`time_ms` order; replays change nothing.",
    tags=["webhooks"],
)
def pusher_webhook() -> WebhookApplied:
    body = _verified()
    found = services(router)
    store = PresenceStore(found.dynamodb, found.tables.presence)
    try:
        outcome = apply_webhook(store, body, max_age_seconds=found.settings.presence_max_age_seconds)
    except ValidationError as error:
        problems = [{"loc": list(e["loc"]), "type": e["type"]} for e in error.errors()[:5]]
        logger.warning("signed Pusher webhook of an unknown shape", extra={"errors": problems})
        raise Unprocessable("the webhook body is not Pusher's") from None
    logger.info(
        "Pusher webhook applied",
        extra={"applied": outcome.applied, "stale": outcome.stale, "ignored": outcome.ignored},
    )
    return WebhookApplied(applied=outcome.applied, stale=outcome.stale, ignored=outcome.ignored)
