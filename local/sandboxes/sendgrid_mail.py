"""SendGrid v3 Mail Send sandbox and SendGrid's signed Event Webhook.

With an `event_webhook_url` (the local stack sets Herald's `/v1/webhooks/sendgrid`), every accepted
email is followed by SendGrid-shaped events, signed as SendGrid signs them (ECDSA P-256 over
timestamp + body) and POSTed in batches, as SendGrid does: `processed`, then `delivered` — or a
`bounce` for an address matching the bounce pattern (default: local part `bounce` or `bounce+…`),
a `blocked` bounce for the blocked pattern, `delivered` then `spamreport` for the spamreport
pattern. Each event carries the send's `custom_args` as top-level fields, as SendGrid's do.
`POST /_sendgrid/event_webhook` changes the URL, the patterns, the batch window or switches it off.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
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
    require_loopback_url,
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


def _event_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("=")


DEFAULT_BATCH_WINDOW_SECONDS = 0.5


@dataclass
class EventRules:
    """Which addresses get which outcome (regular expressions on the lower-cased address)."""

    enabled: bool = True
    bounce: str = r"^bounce(\+[^@]*)?@"
    blocked: str = r"^blocked(\+[^@]*)?@"
    spamreport: str = r"^spamreport(\+[^@]*)?@"
    batch_window_seconds: float = DEFAULT_BATCH_WINDOW_SECONDS

    def outcome(self, address: str) -> str:
        lowered = address.lower()
        for name in ("bounce", "blocked", "spamreport"):
            if re.search(getattr(self, name), lowered):
                return name
        return "delivered"


def _event(common: dict[str, Any], kind: str, **fields: Any) -> dict[str, Any]:
    return {**common, "timestamp": int(time.time()), "event": kind, "sg_event_id": _event_id(), **fields}


def delivery_events(payload: dict[str, Any], message_id: str, rules: EventRules) -> list[dict[str, Any]]:
    """SendGrid's events for an accepted `mail/send`: per recipient, `processed` then its outcome."""
    events: list[dict[str, Any]] = []
    categories = payload.get("categories") or []
    message_args = payload.get("custom_args") or {}
    for index, item in enumerate(payload.get("personalizations") or []):
        args = {**message_args, **(item.get("custom_args") or {})}  # a personalization's win
        for address in item.get("to") or []:
            email = str(address.get("email"))
            common = {
                "email": email,
                "smtp-id": f"<{message_id}@sandbox.sendgrid.local>",
                "category": categories,
                "sg_message_id": f"{message_id}.sandbox-{index}.{secrets.token_hex(4)}.0",
                **{str(k): str(v) for k, v in args.items()},
            }

            events.append(_event(common, "processed"))
            outcome = rules.outcome(email)
            if outcome == "bounce":
                events.append(
                    _event(
                        common,
                        "bounce",
                        type="bounce",
                        status="5.1.1",
                        reason="550 5.1.1 The email account that you tried to reach does not exist.",
                        bounce_classification="Invalid Address",
                        tls=1,
                    )
                )
            elif outcome == "blocked":
                events.append(
                    _event(
                        common,
                        "bounce",
                        type="blocked",
                        status="5.7.1",
                        reason="550 5.7.1 Message rejected: content policy",
                        bounce_classification="Content",
                        tls=1,
                    )
                )
            else:
                events.append(_event(common, "delivered", response="250 2.0.0 OK", tls=1, ip="127.0.0.1"))
                if outcome == "spamreport":
                    events.append(_event(common, "spamreport"))
    return events


class SendGridSandbox:
    """Speaks `api.sendgrid.com/v3/mail/send`; signs Event Webhook batches with an ECDSA P-256 key."""

    name = "sendgrid"

    def __init__(
        self, credentials: SendGridCredentials, outbox: Outbox, event_webhook_url: str | None = None
    ) -> None:
        self.credentials = credentials
        self.outbox = outbox
        self.rules = EventRules()
        self._posted: list[WebhookDelivery] = []
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()  # one batch on the wire at a time, in order
        self._queued: list[dict[str, Any]] = []  # events waiting for the batch window to close
        self._flush_timer: threading.Timer | None = None
        self._event_webhook_url: str | None = None
        self.event_webhook_url = event_webhook_url

    @property
    def event_webhook_url(self) -> str | None:
        """Where accepted mail's events go (None: nowhere; as set in SendGrid's Mail Settings)."""
        return self._event_webhook_url

    @event_webhook_url.setter
    def event_webhook_url(self, url: str | None) -> None:
        self._event_webhook_url = require_loopback_url(url) if url else None

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
        """Forget what was posted and what is queued; the rules go back to the defaults (the
        webhook URL stays)."""
        with self._lock:
            self._posted.clear()
            self._queued.clear()
            if self._flush_timer is not None:
                self._flush_timer.cancel()
                self._flush_timer = None
            self.rules = EventRules()

    def queue_events(self, events: list[dict[str, Any]]) -> None:
        """Queue events for the open batch (dropped while no webhook URL is set or it is off)."""
        with self._lock:
            if not self._event_webhook_url or not self.rules.enabled or not events:
                return
            self._queued += events
            if self._flush_timer is None:
                timer = threading.Timer(max(self.rules.batch_window_seconds, 0.0), self.flush)
                timer.daemon = True
                self._flush_timer = timer
                timer.start()

    def flush(self) -> WebhookDelivery | None:
        """POST the queued events now, as one signed batch."""
        with self._send_lock:
            with self._lock:
                events, self._queued = self._queued, []
                if self._flush_timer is not None:
                    self._flush_timer.cancel()
                    self._flush_timer = None
                url = self._event_webhook_url
            if not url or not events:
                return None
            return self.send_events(events, url)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event has been posted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                idle = not self._queued and self._flush_timer is None
            if idle and not self._send_lock.locked():
                return True
            time.sleep(0.01)
        return False

    def routes(self) -> list[Route]:
        return [
            Route("/v3/mail/send", ("POST",), self._send, "sendgrid", self._recipients),
            Route("/_sendgrid/events", ("POST",), self._control_events),
            Route("/_sendgrid/events", ("GET",), self._control_events_sent),
            Route("/_sendgrid/event_webhook", ("GET", "POST"), self._control_event_webhook),
        ]

    def _control_event_webhook(self, request: Request, args: dict[str, str]) -> Response:
        """GET: the event webhook's settings; POST: change any of `url`, `enabled`, `bounce`,
        `blocked`, `spamreport` (regular expressions) and `batch_window_seconds`."""
        if request.method == "POST":
            data = control_json(request)
            rules = asdict(self.rules)
            for key, value in data.items():
                if key == "url":
                    continue
                if key not in rules:
                    raise ControlError(f"unknown setting {key!r}")
                if key in ("bounce", "blocked", "spamreport"):
                    try:
                        re.compile(str(value))
                    except re.error as error:
                        raise ControlError(f"{key}: {error}") from None
                rules[key] = value
            try:
                updated = EventRules(
                    enabled=bool(rules["enabled"]),
                    bounce=str(rules["bounce"]),
                    blocked=str(rules["blocked"]),
                    spamreport=str(rules["spamreport"]),
                    batch_window_seconds=float(rules["batch_window_seconds"]),
                )
                if "url" in data:
                    self.event_webhook_url = str(data["url"]) if data["url"] else None
            except (TypeError, ValueError) as error:
                raise ControlError(str(error)) from None
            self.rules = updated
        return json_response({"url": self.event_webhook_url, **asdict(self.rules)})

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
        if self._event_webhook_url and self.rules.enabled:
            self.queue_events(delivery_events(payload, message_id, self.rules))
        return empty_response(202, {"X-Message-Id": message_id})
