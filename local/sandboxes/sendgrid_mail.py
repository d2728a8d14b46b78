"""SendGrid v3 Mail Send sandbox and a signer for SendGrid's signed Event Webhook."""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
import threading
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug.wrappers import Request, Response

from local.sandboxes.credentials import SendGridCredentials
from local.sandboxes.outbox import Outbox
from local.sandboxes.web import (
    ControlError,
    Route,
    WebhookDelivery,
    control_json,
    empty_response,
    json_response,
    post_loopback,
)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
ERRORS_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_PERSONALIZATIONS = 1000
INVALID_GRANT = "The provided authorization grant is invalid, expired, or revoked"

Error = dict[str, Any]


def sendgrid_errors(status: int, errors: list[Error]) -> Response:
    return json_response({"errors": errors}, status)


def _error(message: str, field: str | None = None, help_anchor: str | None = None) -> Error:
    return {
        "message": message,
        "field": field,
        "help": f"{ERRORS_HELP}#{help_anchor}" if help_anchor else None,
    }


def _email_errors(value: Any, field: str) -> list[Error]:
    if not isinstance(value, dict) or not isinstance(value.get("email"), str):
        return [_error("The email parameter is required.", f"{field}.email", "message.personalizations.to")]
    if not EMAIL.match(value["email"]):
        return [_error("Does not contain a valid address.", f"{field}.email", "message.personalizations.to")]
    return []


def validate_mail(payload: dict[str, Any]) -> list[Error]:
    """The checks SendGrid makes on `POST /v3/mail/send` (the common ones), all errors at once."""
    errors: list[Error] = []
    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(
            _error(
                "The personalizations field is required and must have at least one personalization.",
                "personalizations",
                "-Personalizations-Errors",
            )
        )
        personalizations = []
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        errors.append(_error("The personalizations field must not exceed 1000 items.", "personalizations"))
    for index, item in enumerate(personalizations):
        to = item.get("to") if isinstance(item, dict) else None
        if not isinstance(to, list) or not to:
            errors.append(
                _error(
                    "The to array is required for all personalization objects, and must have at least one "
                    "email object with a valid email address.",
                    f"personalizations.{index}.to",
                    "message.personalizations.to",
                )
            )
            continue
        for position, address in enumerate(to):
            errors += _email_errors(address, f"personalizations.{index}.to.{position}")
        for kind in ("cc", "bcc"):
            for position, address in enumerate(item.get(kind) or []):
                errors += _email_errors(address, f"personalizations.{index}.{kind}.{position}")
    sender = payload.get("from")
    if not isinstance(sender, dict) or "email" not in sender:
        errors.append(
            _error(
                "The from object must be provided for every email send. It is an object that requires an "
                "email parameter, but may also contain a name parameter.",
                "from",
                "message.from",
            )
        )
    else:
        errors += _email_errors(sender, "from")
    template_id = payload.get("template_id")
    every_personalization_has_subject = bool(personalizations) and all(
        isinstance(item, dict) and item.get("subject") for item in personalizations
    )
    if not template_id and not payload.get("subject") and not every_personalization_has_subject:
        errors.append(
            _error(
                "The subject is required. You can get around this requirement if you use a template with a "
                "subject defined or if every personalization has a subject defined.",
                "subject",
                "message.subject",
            )
        )
    content = payload.get("content")
    if not template_id and (not isinstance(content, list) or not content):
        errors.append(
            _error(
                "Unless a valid template_id is provided, the content parameter is required. There must be "
                "at least one defined content block. We typically suggest both text/plain and text/html "
                "blocks are included, but only one block is required.",
                "content",
                "message.content",
            )
        )
    for index, block in enumerate(content if isinstance(content, list) else []):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str) or not block["type"]:
            errors.append(
                _error(
                    "The content type must be a string at least one character in length.",
                    f"content.{index}.type",
                    "message.content.type",
                )
            )
        if not isinstance(block, dict) or not isinstance(block.get("value"), str) or not block["value"]:
            errors.append(
                _error(
                    "The content value must be a string at least one character in length.",
                    f"content.{index}.value",
                    "message.content.value",
                )
            )
    return errors


def _message_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")


class SendGridSandbox:
    """Speaks `api.sendgrid.com/v3/mail/send`; signs Event Webhook batches with an ECDSA P-256 key."""

    name = "sendgrid"

    def __init__(self, credentials: SendGridCredentials, outbox: Outbox) -> None:
        self.credentials = credentials
        self.outbox = outbox
        self._posted: list[WebhookDelivery] = []
        self._lock = threading.Lock()

    @property
    def event_webhook_public_key(self) -> str:
        """Base64 DER public key, as SendGrid shows it for the signed Event Webhook."""
        return self.credentials.event_webhook_public_key

    def sign_events(
        self, events: list[dict[str, Any]], timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """An Event Webhook POST body and its signature headers, exactly as SendGrid signs them."""
        body = json.dumps(events).encode()
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.credentials.event_webhook_private_key.sign(
            stamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
        return body, {
            "Content-Type": "application/json",
            "User-Agent": "SendGrid Event API",
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
            TIMESTAMP_HEADER: stamp,
        }

    def send_events(self, events: list[dict[str, Any]], url: str) -> WebhookDelivery:
        """POST a signed Event Webhook batch (delivered, bounce, open, ...) to a loopback URL."""
        body, headers = self.sign_events(events)
        delivery = post_loopback(url, body, headers)
        with self._lock:
            self._posted.append(delivery)
        return delivery

    def events_sent(self) -> list[WebhookDelivery]:
        with self._lock:
            return list(self._posted)

    def reset(self) -> None:
        with self._lock:
            self._posted.clear()

    def routes(self) -> list[Route]:
        return [
            Route("/v3/mail/send", ("POST",), self._send, "sendgrid", self._recipients),
            Route("/_sendgrid/events", ("POST",), self._control_events),
            Route("/_sendgrid/events", ("GET",), self._control_events_sent),
        ]

    def _control_events(self, request: Request, args: dict[str, str]) -> Response:
        data = control_json(request, "events", "url")
        events = data["events"]
        if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
            raise ControlError("events must be a list of objects")
        try:
            delivery = self.send_events(events, str(data["url"]))
        except ValueError as error:
            raise ControlError(str(error)) from None
        return json_response(delivery.to_dict())

    def _control_events_sent(self, request: Request, args: dict[str, str]) -> Response:
        return json_response([delivery.to_dict() for delivery in self.events_sent()])

    def fault_response(self, status: int) -> Response:
        messages = {429: "too many requests", 500: "internal server error", 503: "service unavailable"}
        return sendgrid_errors(status, [{"field": None, "message": messages.get(status, f"error {status}")}])

    @staticmethod
    def _recipients(request: Request, args: dict[str, str]) -> list[str]:
        try:
            payload = json.loads(request.get_data(cache=True) or b"{}")
            return [
                str(address.get("email"))
                for item in payload.get("personalizations") or []
                for address in item.get("to") or []
            ]
        except (ValueError, AttributeError, TypeError):
            return []

    def _send(self, request: Request, args: dict[str, str]) -> Response:
        header = request.headers.get("Authorization", "")
        key = header[7:] if header.startswith("Bearer ") else ""
        if not key or not hmac.compare_digest(key, self.credentials.api_key):
            return sendgrid_errors(401, [{"message": INVALID_GRANT, "field": None, "help": None}])
        try:
            payload = json.loads(request.get_data(cache=True))
            if not isinstance(payload, dict):
                raise ValueError
        except ValueError:
            return sendgrid_errors(400, [_error("Bad Request", None, None)])
        errors = validate_mail(payload)
        if errors:
            return sendgrid_errors(400, errors)
        message_id = _message_id()
        sandbox_mode = ((payload.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable")
        if sandbox_mode:
            return empty_response(200)  # SendGrid validates but does not deliver in sandbox mode
        text = html = None
        for block in payload.get("content") or []:
            if block["type"] == "text/plain" and text is None:
                text = block["value"]
            elif block["type"] == "text/html" and html is None:
                html = block["value"]
        for item in payload["personalizations"]:
            for address in item["to"]:
                self.outbox.record(
                    provider="sendgrid",
                    channel="email",
                    recipient=address["email"],
                    subject=item.get("subject") or payload.get("subject"),
                    body=text if text is not None else html,
                    provider_id=message_id,
                    request=payload,
                    html=html,
                    template_id=payload.get("template_id"),
                )
        return empty_response(202, {"X-Message-Id": message_id})
