"""SendGrid's signed Event Webhook, in Herald's terms (issue 11; decision 023).

Verification: the SendGrid SDK's own `EventWebhook` helper checks the ECDSA P-256 / SHA-256
signature over `timestamp + raw body` against the account's verification key (the SendGrid
secret's `webhook_public_key`, base64 DER as SendGrid shows it). The helper checks no age, so a
timestamp more than `MAX_AGE_SECONDS` from now is refused here: a captured request cannot be
replayed later than that.

What each event means (only events of mail Herald sent carry its `notification_id` / `user_id`
custom args, echoed by SendGrid as top-level fields of the event):

| SendGrid event                      | Herald feedback | effect                                      |
|-------------------------------------|-----------------|---------------------------------------------|
| `delivered`                         | delivered       | channel `delivered`                         |
| `bounce` (`type: bounce`)           | bounced         | channel `bounced`, address suppressed       |
| `bounce` (`type: blocked`)          | failed          | channel `failed`, address kept (*)          |
| `dropped`, a bounced/invalid address| bounced         | channel `bounced`, address suppressed       |
| `dropped`, a spam-reporting address | complained      | suppressed, marketing opt-out               |
| `dropped`, any other reason         | failed          | channel `failed`, address kept (**)         |
| `spamreport`                        | complained      | suppressed, marketing opt-out               |
| `deferred`                          | deferred        | the log only (SendGrid retries for 72 h)    |
| `open`                              | opened          | the log only                                |
| anything else (processed, click...) | -               | counted as ignored                          |

(*) a block is the receiving server refusing *this message* (the sender's reputation, content,
volume): SendGrid itself does not put blocked addresses on its bounce list and will not retry the
message, so the message failed but the address stays usable — unless SendGrid's own classifier says
`Invalid Address`, which is the address's fault (a bounce).
(**) content, header or quota drops are Herald's problem, not the recipient's; suppressing the
address would punish the recipient. An `Unsubscribed Address` drop is SendGrid's own list (Herald
keeps its preferences itself): logged with the reason, not suppressed.
"""

from __future__ import annotations

import binascii
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, ValidationError

from herald.feedback import Feedback, ProviderEvent, parse_time
from herald.models import Channel

logger = Logger(child=True)

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE_SECONDS = 300  # SendGrid's timestamp may be this far from now, either way
MAX_DETAIL = 300

# `dropped` reasons (SendGrid's wording, lower-cased) that are about the address itself; the
# others ("Invalid SMTPAPI header", "Spam Content", "Unsubscribed Address", quota) are not
_DROPPED_BOUNCED = frozenset({"bounced address", "invalid", "invalid address", "invalid email"})
_DROPPED_COMPLAINED = frozenset({"spam reporting address"})
_INVALID_ADDRESS = "invalid address"  # bounce_classification


class EventWebhookVerifier:
    """The account's Event Webhook verification key, checked with the SendGrid SDK's helper."""

    def __init__(self, public_key: str) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec
        from sendgrid.helpers.eventwebhook import EventWebhook  # the SDK on first use only

        self._webhook = EventWebhook()
        self._key = self._webhook.convert_public_key_to_ecdsa(public_key)
        if not isinstance(self._key, ec.EllipticCurvePublicKey):
            raise ValueError("the SendGrid verification key is not an elliptic-curve public key")

    @classmethod
    def from_secret(cls, secret: dict[str, Any]) -> EventWebhookVerifier:
        """From the SendGrid secret's JSON; raises KeyError / ValueError when it has no usable key."""
        key = secret["webhook_public_key"]
        if not isinstance(key, str) or not key.strip():
            raise ValueError("the SendGrid secret's webhook_public_key is empty")
        return cls(key.strip())

    def verify(self, body: bytes, signature: str, timestamp: str, now: float | None = None) -> bool:
        """True only for a body SendGrid signed within `MAX_AGE_SECONDS` of `now`."""
        try:
            stamp = int(timestamp.strip())
        except ValueError:
            return False
        if abs((time.time() if now is None else now) - stamp) > MAX_AGE_SECONDS:
            return False
        try:
            payload = body.decode("utf-8")  # the helper signs str: (timestamp + payload).encode()
            return bool(self._webhook.verify_signature(payload, signature, timestamp, self._key))
        except (binascii.Error, ValueError, TypeError):  # not base64, not UTF-8
            return False


class SendGridEvent(BaseModel):
    """One entry of the Event Webhook's JSON array (the fields Herald reads; the rest is kept)."""

    model_config = ConfigDict(extra="allow")

    event: str
    email: str | None = None
    timestamp: int | float | None = None
    sg_event_id: str | None = None
    sg_message_id: str | None = None
    type: str | None = None  # bounce: "bounce" or "blocked"
    reason: str | None = None
    status: str | None = None  # the SMTP enhanced status code of a bounce
    response: str | None = None
    attempt: str | int | None = None
    bounce_classification: str | None = None
    sg_machine_open: bool | None = None
    # Herald's custom args, echoed as top-level fields
    notification_id: str | None = None
    user_id: str | None = None


@dataclass
class ParsedEvents:
    events: list[ProviderEvent] = field(default_factory=list)
    ignored: int = 0  # event kinds Herald does not track (processed, click, unsubscribe ...)
    duplicates: int = 0  # an sg_event_id already seen earlier in the same body
    malformed: int = 0  # entries that are not an event object


def message_id(sg_message_id: str | None) -> str | None:
    """SendGrid's `X-Message-Id` (what the sender recorded): `sg_message_id` up to its first dot."""
    return (sg_message_id.split(".", 1)[0] or None) if sg_message_id else None


def _short(text: str | None) -> str | None:
    return (text.strip()[:MAX_DETAIL] or None) if text else None


def _classify(event: SendGridEvent) -> tuple[Feedback, str | None, str | None] | None:
    """(feedback, code, detail) of an event, or None for kinds Herald does not track."""
    kind = event.event.strip().lower()
    if kind == "delivered":
        return Feedback.DELIVERED, None, _short(event.response)
    if kind == "bounce":
        classification = (event.bounce_classification or "").strip()
        detail = _short(" — ".join(p for p in (event.reason, classification) if p))
        blocked = (event.type or "").strip().lower() == "blocked"
        if blocked and classification.lower() != _INVALID_ADDRESS:
            return Feedback.FAILED, event.status, detail
        return Feedback.BOUNCED, event.status, detail
    if kind == "dropped":
        reason = (event.reason or "").strip().rstrip(".").lower()
        if reason in _DROPPED_BOUNCED:
            return Feedback.BOUNCED, None, _short(event.reason)
        if reason in _DROPPED_COMPLAINED:
            return Feedback.COMPLAINED, None, _short(event.reason)
        return Feedback.FAILED, None, _short(event.reason) or "dropped by SendGrid"
    if kind == "spamreport":
        return Feedback.COMPLAINED, None, None
    if kind == "deferred":
        attempt = f" (attempt {event.attempt})" if event.attempt not in (None, "") else ""
        return Feedback.DEFERRED, None, _short(f"{event.response or event.reason or ''}{attempt}")
    if kind == "open":
        return Feedback.OPENED, None, "machine open (privacy proxy)" if event.sg_machine_open else None
    return None


def parse_events(body: Any, now: datetime) -> ParsedEvents:
    """The events of a verified webhook body (a JSON array), as ProviderEvents. Raises ValueError
    when the body is not an array at all (then it is not SendGrid's)."""
    if not isinstance(body, list):
        raise ValueError("the Event Webhook body is a JSON array of events")
    parsed = ParsedEvents()
    seen: set[str] = set()
    for raw in body:
        try:
            event = SendGridEvent.model_validate(raw)
        except ValidationError:
            parsed.malformed += 1
            continue
        if event.sg_event_id:
            if event.sg_event_id in seen:
                parsed.duplicates += 1
                continue
            seen.add(event.sg_event_id)
        classified = _classify(event)
        if classified is None:
            parsed.ignored += 1
            continue
        feedback, code, detail = classified
        parsed.events.append(
            ProviderEvent(
                channel=Channel.EMAIL,
                feedback=feedback,
                provider=PROVIDER,
                at=parse_time(event.timestamp, now),
                user_id=event.user_id or None,
                notification_id=event.notification_id or None,
                contact=(event.email or "").strip() or None,
                provider_message_id=message_id(event.sg_message_id),
                code=code,
                detail=detail,
                event_id=event.sg_event_id or None,
            )
        )
    if parsed.malformed:
        logger.warning("SendGrid entries that are not events were skipped", extra={"count": parsed.malformed})
    return parsed
