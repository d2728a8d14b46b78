"""`POST /v1/webhooks/sendgrid`: SendGrid's signed Event Webhook (no JWT: SendGrid signs it).

The raw body is verified before anything is parsed (herald.sendgrid_feedback: the SDK's
`EventWebhook` helper, ECDSA over timestamp + raw body, the timestamp within 5 minutes); an unsigned,
forged or stale request is 401 and nothing is written. The events are then applied by
herald.feedback's recorder (delivery log, channel state, suppression, complaint opt-out) and the
answer is 200, so SendGrid does not retry. Decision 023.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field

from herald.api.errors import Unauthorized, Unavailable, Unprocessable
from herald.api.raw_body import raw_body
from herald.api.services import services
from herald.channels.credentials import ProviderUnavailable
from herald.sendgrid_feedback import SIGNATURE_HEADER, TIMESTAMP_HEADER, parse_events

logger = Logger(child=True)
router = APIGatewayHttpRouter()


class FeedbackApplied(BaseModel):
    received: int = Field(description="entries in the body")
    logged: int = Field(description="delivery-log entries written (notifications Herald sent)")
    moved: int = Field(description="channel states moved (e.g. sent -> delivered | bounced)")
    suppressed: int = Field(description="addresses suppressed (bounce, complaint)")
    opted_out_of_marketing: int = Field(description="people opted out of marketing by a complaint")
    unknown: int = Field(description="events about no notification Herald keeps (not sent by Herald, erased)")
    ignored: int = Field(description="event kinds Herald does not track (processed, click ...) or malformed")
    duplicates: int = Field(description="events whose sg_event_id came earlier in the same body")


def _verified_body() -> bytes:
    headers = router.current_event.headers
    signature, timestamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
    body = raw_body(router.current_event)
    if not signature or not timestamp or body is None:
        raise Unauthorized("the event webhook is not signed")
    try:
        verifier = services(router).sendgrid_events.get()
    except ProviderUnavailable as error:
        logger.error("SendGrid verification key unreadable: not verified", extra={"reason": str(error)})
        raise Unavailable("the webhook cannot be verified now: retry later") from None
    if not verifier.verify(body, signature, timestamp):
        raise Unauthorized("the event webhook's signature or timestamp is not valid")
    return body


@router.post(
    "/webhooks/sendgrid",
    summary="SendGrid's Event Webhook (signed by SendGrid; no JWT)",
    description="Verified with `X-Twilio-Email-Event-Webhook-Signature` (ECDSA P-256 over the "
    "`X-Twilio-Email-Event-Webhook-Timestamp` and the raw body, against the account's verification "
    "key); the timestamp must be within 5 minutes. bounce, dropped and spamreport suppress the "
    "address; delivered, deferred and open update the notification's delivery log. Replays change "
    "no state (states only move forward, suppression is a set).",
    tags=["webhooks"],
)
def sendgrid_webhook() -> FeedbackApplied:
    body = _verified_body()
    try:
        parsed = parse_events(json.loads(body), datetime.now(UTC))
    except ValueError:  # not JSON, or not an array
        logger.warning("signed SendGrid webhook of an unknown shape")
        raise Unprocessable("the webhook body is not SendGrid's array of events") from None
    report = services(router).feedback_recorder().apply(parsed.events)
    answer = FeedbackApplied(
        received=len(parsed.events) + parsed.ignored + parsed.malformed + parsed.duplicates,
        logged=report.logged,
        moved=report.moved,
        suppressed=report.suppressed,
        opted_out_of_marketing=report.opted_out_of_marketing,
        unknown=report.unknown,
        ignored=parsed.ignored + parsed.malformed,
        duplicates=parsed.duplicates,
    )
    logger.info("SendGrid events applied", extra={**answer.model_dump(), "by_kind": report.counts})
    return answer
