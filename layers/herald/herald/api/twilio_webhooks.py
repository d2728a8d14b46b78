"""`POST /v1/webhooks/twilio`: Twilio's signed status callbacks and inbound messages (no JWT).

`X-Twilio-Signature` is checked by the Twilio SDK's `RequestValidator` against the public URL Twilio
called — rebuilt from the request as API Gateway received it: the scheme it was reached over
(`X-Forwarded-Proto`), its domain name, the raw path and the raw query string, verbatim — and the
form parameters; anything else is 401 and nothing is written (herald.twilio_feedback).

- A status callback (`MessageStatus`) updates the notification its URL names (the SMS sender's
  `?notification_id=…&user_id=…`): `delivered`, or `undelivered` / `failed` with the error code;
  a number that can never receive SMS is suppressed. Answer: 204.
- An inbound message (`Body` from a phone): STOP & co. opt the phone out of SMS, START & co. opt
  it back in, HELP is answered with the configured help text. Answer: TwiML (`application/xml`).
  Each STOP / START is applied once by its `MessageSid`: a replayed request (Twilio signs no
  timestamp) gets the same answer and writes nothing.

Decisions 023 and 035 (served by its own function, which alone carries Twilio's SDK).
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from herald.api.errors import Unauthorized, Unavailable, Unprocessable
from herald.api.raw_body import raw_body
from herald.api.services import twilio_services
from herald.channels.credentials import ProviderUnavailable
from herald.twilio_feedback import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    InboundKeyword,
    Keyword,
    is_status_callback,
    keyword,
    status_report,
    twiml,
)

logger = Logger(child=True)
router = APIGatewayHttpRouter()

XML = "application/xml"


def public_url() -> str:
    """The URL Twilio requested, as Twilio saw it (what it signed)."""
    event = router.current_event
    scheme = (event.headers.get("X-Forwarded-Proto") or "http").split(",")[0].strip().lower()
    host = event.request_context.domain_name
    query = event.raw_query_string
    return f"{scheme}://{host}{event.raw_path}" + (f"?{query}" if query else "")


def _verified_params() -> dict[str, str]:
    headers = router.current_event.headers
    signature, body = headers.get(SIGNATURE_HEADER), raw_body(router.current_event)
    if not signature or body is None:
        raise Unauthorized("the request is not signed by Twilio")
    try:
        params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise Unauthorized("the request is not signed by Twilio") from None
    try:
        verifier = twilio_services(router).verifier.get()
    except ProviderUnavailable as error:
        logger.error("Twilio secret unreadable: webhook not verified", extra={"reason": str(error)})
        raise Unavailable("the webhook cannot be verified now: retry later") from None
    if not verifier.verify(public_url(), params, signature, headers.get(SIGNATURE_SETTINGS_HEADER)):
        raise Unauthorized("the X-Twilio-Signature does not match this URL and these parameters")
    return params


def _status_callback(params: dict[str, str]) -> Response[str | None]:
    query = dict(parse_qsl(router.current_event.raw_query_string or "", keep_blank_values=True))
    report = status_report(params, query, datetime.now(UTC))
    if report is None:
        logger.debug("Twilio status not tracked", extra={"status": params.get("MessageStatus")})
        return Response(204)
    recorder = twilio_services(router).feedback_recorder()
    applied = recorder.apply([report.event])
    if report.opted_out and recorder.suppress(report.event, "opted_out"):
        applied.suppressed += 1
    logger.info(
        "Twilio status callback applied",
        extra={
            "status": params.get("MessageStatus"),
            "error_code": report.event.code,
            "notification_id": report.event.notification_id,
            "logged": applied.logged,
            "moved": applied.moved,
            "suppressed": applied.suppressed,
            "unknown": applied.unknown,
        },
    )
    return Response(204)


def _inbound(params: dict[str, str]) -> Response[str | None]:
    phone = (params.get("From") or "").strip()
    word = keyword(params.get("Body") or "", params.get("OptOutType"))
    if word is None or not phone:
        return Response(200, XML, twiml())
    found = twilio_services(router)
    if word is Keyword.HELP:
        logger.info("SMS HELP answered")
        return Response(200, XML, twiml(found.settings.sms_help_text))
    sid = (params.get("MessageSid") or params.get("SmsSid") or "").strip()
    if not sid:  # Twilio names every message; without its id a replay could not be told apart
        message = "an inbound message without its MessageSid"
        raise Unprocessable(message, [{"loc": ["body", "MessageSid"], "type": "missing", "msg": message}])
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyPersistenceLayerError,
    )

    try:
        changed = found.inbound_keywords.apply(InboundKeyword(sid, phone, word), router.lambda_context)
    except IdempotencyAlreadyInProgressError:
        raise Unavailable("this message is being applied now: retry later") from None
    except IdempotencyPersistenceLayerError as error:
        logger.error("SMS keyword not applied: idempotency table unreachable", extra={"reason": str(error)})
        raise Unavailable("the message cannot be applied now: retry later") from None
    logger.info("SMS keyword applied", extra={"keyword": word.value, "message_sid": sid, "changed": changed})
    # Twilio's own opt-out handling confirms STOP / START to the phone: nothing to add
    return Response(200, XML, twiml())


@router.post(
    "/webhooks/twilio",
    summary="Twilio's status callbacks and inbound SMS (signed by Twilio; no JWT)",
    description="Verified with `X-Twilio-Signature` (HMAC of the public URL, query string included, "
    "and the sorted form parameters, keyed by the account's auth token). A status callback "
    "(`MessageStatus`) updates the delivery log of the notification named by its URL's "
    "`notification_id` / `user_id`; undelivered and failed carry the error code, and a number that "
    "can never receive SMS is suppressed. An inbound STOP, STOPALL, UNSUBSCRIBE, CANCEL, END or QUIT "
    "opts the phone out of SMS, START, YES or UNSTOP opts it back in, each message once by its "
    "`MessageSid` (a replay gets the same answer and changes nothing), HELP is answered with the "
    "configured help text.",
    tags=["webhooks"],
    responses={
        200: {
            "description": "An inbound message: TwiML, a `<Message>` for HELP, else an empty `<Response/>`.",
            "content": {XML: {"schema": {"type": "string"}}},
        },
        204: {
            "description": "A status callback, applied (or a status Herald does not track).",
            "content": {},
        },
    },
)
def twilio_webhook() -> Response[str | None]:
    params = _verified_params()
    if is_status_callback(params):
        return _status_callback(params)
    if "Body" in params:
        return _inbound(params)
    logger.info("Twilio webhook of no known kind", extra={"keys": sorted(params)[:20]})
    return Response(204)
