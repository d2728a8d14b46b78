"""Twilio's signed webhooks, in Herald's terms: status callbacks and inbound replies (issue 11;
decision 023).

Verification: the Twilio SDK's own `RequestValidator` (auth token of the Twilio secret) checks
`X-Twilio-Signature` — base64 HMAC-SHA1 of the full URL Twilio called, query string included,
followed by the sorted form parameters. The URL is the public one (what Twilio was given), so the
API rebuilds it from the request as API Gateway received it.

Which notification a status callback is about: the SMS sender gives every message its own
`StatusCallback` — the configured URL plus `?notification_id=…&user_id=…`
(`status_callback_url`). Twilio calls back exactly that URL and signs it, so the ids cannot be
forged and no lookup (nor scan) by MessageSid is needed.

What a status callback means:
- `delivered` → delivered (channel `delivered`); `read` (WhatsApp/RCS) → opened (the log only);
- `undelivered` / `failed` with 30005, 30006 or 21614 (the number does not exist, is a landline or
  no mobile) → unreachable: channel `failed`, the phone suppressed (`unreachable`);
- `undelivered` / `failed` with 21610 (the recipient had sent STOP) → failed, the phone suppressed
  (`opted_out`, as the sender does when Twilio refuses the send with 21610);
- `undelivered` / `failed` with any other code → failed, with the code;
- queued, sent and the other interim statuses → ignored (the sender recorded `sent`).

Inbound messages (a `Body` from a phone to our number): an opt-out keyword (STOP, STOPALL,
UNSUBSCRIBE, CANCEL, END, QUIT, and Twilio's newer OPTOUT, REVOKE; case-insensitive, trimmed) or
Twilio's own `OptOutType=STOP` suppresses the phone for SMS (`opted_out`, source twilio); START,
YES, UNSTOP (or `OptOutType=START`) lift an `opted_out` entry only, never an `unreachable` one;
HELP / INFO are answered with the configured help text. Each inbound STOP or START is applied once,
by its `MessageSid` (`InboundKeywords`): Twilio signs no timestamp, so a captured START replayed
after a later STOP would otherwise opt the phone back in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode, urlsplit

from herald.feedback import Feedback, ProviderEvent
from herald.models import Channel
from herald.stores.keys import sms_address
from herald.stores.suppression import SuppressionStore

PROVIDER = "twilio"
SIGNATURE_HEADER = "X-Twilio-Signature"
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
NOTIFICATION_PARAM = "notification_id"
USER_PARAM = "user_id"

OPTED_OUT = 21610  # "Attempt to send to unsubscribed recipient"
# The number can never receive SMS: unknown handset (the number does not exist), landline or
# unreachable carrier, not a mobile number.
UNREACHABLE_CODES = frozenset({30005, 30006, 21614})
ERROR_DESCRIPTIONS = {
    30001: "queue overflow",
    30002: "account suspended",
    30003: "unreachable destination handset",
    30004: "message blocked",
    30005: "unknown destination handset",
    30006: "landline or unreachable carrier",
    30007: "message filtered by the carrier",
    30008: "unknown error",
    30034: "message from an unregistered number",
    21610: "the recipient replied STOP",
    21614: "not a mobile number",
}

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})


class Keyword(StrEnum):
    STOP = "STOP"
    START = "START"
    HELP = "HELP"


def status_callback_url(base: str, user_id: str, notification_id: str) -> str:
    """The StatusCallback of one message: `base` plus the ids Twilio will echo (signed)."""
    query = urlencode({NOTIFICATION_PARAM: notification_id, USER_PARAM: user_id})
    return f"{base}{'&' if urlsplit(base).query else '?'}{query}"


class TwilioWebhookVerifier:
    """The account's auth token and SID, checked with the Twilio SDK's `RequestValidator`."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        from twilio.request_validator import RequestValidator  # the SDK on first use only

        self.account_sid = account_sid
        self._validator = RequestValidator(auth_token)

    @classmethod
    def from_secret(cls, secret: dict[str, Any]) -> TwilioWebhookVerifier:
        token = str(secret["auth_token"])
        if not token:
            raise ValueError("the Twilio secret's auth_token is empty")
        return cls(str(secret.get("account_sid") or ""), token)

    def verify(self, url: str, params: dict[str, str], signature: str, settings: str | None = None) -> bool:
        """True when `signature` is Twilio's for `url` and `params` (and the account is ours)."""
        from twilio.request_validator import get_signature_algorithm

        if not self._validator.validate(url, params, signature, get_signature_algorithm(settings)):
            return False
        sid = params.get("AccountSid")
        return not (sid and self.account_sid and sid != self.account_sid)


@dataclass(frozen=True)
class StatusReport:
    event: ProviderEvent
    opted_out: bool  # 21610: the phone opted out at Twilio (suppressed as `opted_out`)


def _error_code(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def status_report(params: dict[str, str], query: dict[str, str], now: datetime) -> StatusReport | None:
    """What a status callback reports, or None for statuses Herald does not track."""
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    code = _error_code(params.get("ErrorCode"))
    opted_out = False
    if status == "delivered":
        feedback = Feedback.DELIVERED
    elif status == "read":
        feedback = Feedback.OPENED
    elif status in ("undelivered", "failed"):
        feedback = Feedback.UNREACHABLE if code in UNREACHABLE_CODES else Feedback.FAILED
        opted_out = code == OPTED_OUT
    else:
        return None
    detail = None
    if feedback in (Feedback.FAILED, Feedback.UNREACHABLE):
        described = ERROR_DESCRIPTIONS.get(code, "") if code else ""
        detail = f"Twilio {status}" + (f" {code}" if code else "") + (f": {described}" if described else "")
    event = ProviderEvent(
        channel=Channel.SMS,
        feedback=feedback,
        provider=PROVIDER,
        at=now,
        user_id=query.get(USER_PARAM) or None,
        notification_id=query.get(NOTIFICATION_PARAM) or None,
        contact=(params.get("To") or "").strip() or None,
        provider_message_id=params.get("MessageSid") or params.get("SmsSid") or None,
        code=str(code) if code else None,
        detail=detail,
        # Twilio reports each status of a message once: a second report of it is a replay
        event_id=f"{sid}:{status}" if (sid := params.get("MessageSid") or params.get("SmsSid")) else None,
    )
    return StatusReport(event, opted_out)


def is_status_callback(params: dict[str, str]) -> bool:
    return "MessageStatus" in params and "Body" not in params


def keyword(body: str, opt_out_type: str | None = None) -> Keyword | None:
    """The opt-out keyword an inbound message is: Twilio's own `OptOutType` when it sends one
    (Advanced Opt-Out, custom keywords), else the body's single word."""
    decided = (opt_out_type or "").strip().upper()
    if decided in Keyword.__members__:
        return Keyword(decided)
    word = body.strip().upper()
    if word in STOP_WORDS:
        return Keyword.STOP
    if word in START_WORDS:
        return Keyword.START
    if word in HELP_WORDS:
        return Keyword.HELP
    return None


def twiml(message: str | None = None) -> str:
    """TwiML for Twilio's messaging webhook: a reply, or nothing (`<Response/>`)."""
    from twilio.twiml.messaging_response import MessagingResponse

    response = MessagingResponse()
    if message:
        response.message(message)
    return str(response)


def apply_keyword(suppression: SuppressionStore, phone: str, word: Keyword, now: datetime) -> bool:
    """STOP suppresses the phone for SMS (`opted_out`, source twilio); START lifts an opt-out and
    nothing else (`SuppressionStore.release_opt_out`). True when the suppression list changed
    (a STOP always writes: the entry's latest reason and time)."""
    address = sms_address(phone)
    if word is Keyword.STOP:
        suppression.suppress(address, reason="opted_out", source=PROVIDER, now=now, contact=phone)
        return True
    if word is Keyword.START:
        return suppression.release_opt_out(address)
    return False


# How long an inbound message's MessageSid is remembered. Twilio signs no timestamp, so a signed
# message can be replayed at any time: long enough to outlive any captured request (a STOP or START
# is a few hundred bytes, sent a handful of times in a phone's life).
INBOUND_REMEMBERED_SECONDS = 10 * 366 * 24 * 3600
# The records' key prefix: fixed, so that a renamed function or module forgets no message.
INBOUND_KEY_PREFIX = "twilio-inbound"


@dataclass(frozen=True)
class InboundKeyword:
    """One inbound STOP or START, as Twilio delivered it (`MessageSid` is unique per message)."""

    message_sid: str
    phone: str
    keyword: Keyword


class InboundKeywords:
    """Applies each inbound STOP / START once, keyed by its MessageSid in the idempotency table
    (powertools' idempotency): a replay of the same signed request returns the first answer and
    writes nothing. Built on the first keyword message, not at cold start (decision 031)."""

    def __init__(self, suppression: SuppressionStore, dynamodb: Any, idempotency_table: str) -> None:
        self._suppression = suppression
        self._dynamodb = dynamodb
        self._table = idempotency_table
        self._once: Callable[..., dict[str, bool]] | None = None
        self._config: Any = None

    def apply(self, message: InboundKeyword, lambda_context: Any = None) -> bool:
        """Whether the first application of this message changed the suppression list (a replay
        gets the same answer and writes nothing). Raises powertools'
        `IdempotencyAlreadyInProgressError` while the same message is being applied, and
        `IdempotencyPersistenceLayerError` when the idempotency table cannot be reached."""
        once = self._wrapped()
        if lambda_context is not None:  # an interrupted first try frees its key when Lambda stops it
            self._config.register_lambda_context(lambda_context)
        return bool(once(message=asdict(message))["changed"])

    def _wrapped(self) -> Callable[..., dict[str, bool]]:
        if self._once is None:
            from aws_lambda_powertools.utilities.idempotency import (
                DynamoDBPersistenceLayer,
                IdempotencyConfig,
                idempotent_function,
            )

            self._config = IdempotencyConfig(
                event_key_jmespath="message_sid",
                raise_on_no_idempotency_key=True,
                expires_after_seconds=INBOUND_REMEMBERED_SECONDS,
            )
            persistence = DynamoDBPersistenceLayer(table_name=self._table, boto3_client=self._dynamodb)
            suppression = self._suppression

            by_message_sid = idempotent_function(
                data_keyword_argument="message",
                config=self._config,
                persistence_store=persistence,
                key_prefix=INBOUND_KEY_PREFIX,
            )

            @by_message_sid
            def inbound_keyword(message: dict[str, str]) -> dict[str, bool]:
                # a dict: powertools replays a stored falsy answer as None
                word = Keyword(message["keyword"])
                return {"changed": apply_keyword(suppression, message["phone"], word, datetime.now(UTC))}

            self._once = inbound_keyword
        return self._once
