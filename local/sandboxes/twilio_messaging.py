"""Twilio Programmable Messaging sandbox: Messages API, status callbacks and inbound replies.

Status callbacks and inbound messages are signed as Twilio signs them (`X-Twilio-Signature`: base64
HMAC-SHA1, keyed by the auth token, of the URL followed by the sorted form parameters). Callbacks
are sent on demand (`POST /_twilio/status_callback`), or automatically once switched on
(`POST /_twilio/callbacks {"enabled": true}`): every accepted message with a StatusCallback then
gets `sent` and `delivered` a moment later — `undelivered` with an error code for the numbers in
`failures` (e.g. {"+15005550009": 30006}, a landline). `POST /_twilio/inbound` simulates a text
from a phone (STOP / START / HELP ...) to the number's messaging webhook (`inbound_url`, set by the
local stack to Herald's `/v1/webhooks/twilio`, or the `url` given).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator
from werkzeug.wrappers import Request, Response

from local.sandboxes.credentials import TwilioCredentials
from local.sandboxes.outbox import Outbox
from local.sandboxes.web import (
    ControlError,
    Route,
    WebhookDelivery,
    control_json,
    json_response,
    post_loopback,
    require_loopback_url,
    utc_now,
)

logger = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
MAX_BODY_CHARS = 1600
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
CALLBACK_STATUSES = frozenset(
    {
        "queued",
        "sending",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "read",
        "accepted",
        "scheduled",
        "canceled",
    }
)
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


def twilio_error(status: int, code: int, message: str) -> Response:
    """Twilio's REST error JSON (what `TwilioRestException` is built from)."""
    return json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status,
    )


def segments(body: str) -> int:
    if all(char in GSM_BASIC for char in body):
        return 1 if len(body) <= 160 else -(-len(body) // 153)
    return 1 if len(body) <= 70 else -(-len(body) // 67)


@dataclass
class SentMessage:
    """A Message resource as stored by the sandbox (mutable: status callbacks move it on)."""

    sid: str
    account_sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status: str
    status_callback: str | None
    date_created: str
    date_updated: str
    error_code: int | None = None
    history: list[str] = field(default_factory=list)

    def resource(self) -> dict[str, Any]:
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": self.date_created,
            "date_sent": None,
            "date_updated": self.date_updated,
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(segments(self.body)),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{base}/Media.json", "feedback": f"{base}/Feedback.json"},
            "to": self.to,
            "uri": f"{base}.json",
        }


def _rfc2822_now() -> str:
    return format_datetime(utc_now().replace(microsecond=0))  # "Sun, 22 Nov 2026 02:30:13 +0000"


@dataclass
class CallbackRules:
    """Automatic status callbacks for accepted messages (off unless switched on)."""

    enabled: bool = False
    statuses: list[str] = field(default_factory=lambda: ["sent", "delivered"])
    delay_seconds: float = 0.5
    failures: dict[str, int] = field(default_factory=dict)  # phone -> ErrorCode (undelivered)

    def final(self, to: str) -> tuple[str, int | None]:
        code = self.failures.get(to)
        return ("undelivered", code) if code is not None else ("delivered", None)


class TwilioSandbox:
    """Speaks `api.twilio.com/2010-04-01` Messages; signs callbacks with the account's auth token."""

    name = "twilio"

    def __init__(
        self, credentials: TwilioCredentials, outbox: Outbox, inbound_url: str | None = None
    ) -> None:
        self.credentials = credentials
        self.outbox = outbox
        self.callback_rules = CallbackRules()
        self._opted_out: set[str] = set()
        self._messages: dict[str, SentMessage] = {}
        self._callbacks: list[WebhookDelivery] = []
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._validator = RequestValidator(credentials.auth_token)
        self._inbound_url: str | None = None
        self.inbound_url = inbound_url

    @property
    def inbound_url(self) -> str | None:
        """The number's messaging webhook ("A message comes in"), where inbound texts are POSTed."""
        return self._inbound_url

    @inbound_url.setter
    def inbound_url(self, url: str | None) -> None:
        self._inbound_url = require_loopback_url(url) if url else None

    # -- state -------------------------------------------------------------------------------

    def mark_opted_out(self, phone: str) -> None:
        """The recipient replied STOP: sends to it now fail with 21610."""
        with self._lock:
            self._opted_out.add(phone)

    def mark_opted_in(self, phone: str) -> None:
        with self._lock:
            self._opted_out.discard(phone)

    def is_opted_out(self, phone: str) -> bool:
        with self._lock:
            return phone in self._opted_out

    def message(self, sid: str) -> SentMessage | None:
        with self._lock:
            return self._messages.get(sid)

    def callbacks_sent(self) -> list[WebhookDelivery]:
        with self._lock:
            return list(self._callbacks)

    def reset(self) -> None:
        """Forget messages, opt-outs and callbacks; automatic callbacks go back to off (the
        inbound URL stays)."""
        with self._lock:
            self._opted_out.clear()
            self._messages.clear()
            self._callbacks.clear()
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            self.callback_rules = CallbackRules()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every scheduled automatic callback has been sent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._timers:
                    return True
            time.sleep(0.01)
        return False

    def _schedule_callbacks(self, message: SentMessage) -> None:
        rules = self.callback_rules
        if not rules.enabled or not message.status_callback:
            return

        def fire() -> None:
            try:
                for status in rules.statuses:
                    if status in ("delivered", "undelivered"):
                        final, code = rules.final(message.to)
                        self.send_status_callback(message.sid, final, code)
                    else:
                        self.send_status_callback(message.sid, status)
            except (KeyError, ValueError) as error:  # reset meanwhile, or the callback URL is not loopback
                logger.warning("twilio sandbox: status callback for %s not sent: %s", message.sid, error)
            finally:
                with self._lock:
                    self._timers.discard(timer)

        timer = threading.Timer(max(rules.delay_seconds, 0.0), fire)
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()

    def sign(self, url: str, params: dict[str, str]) -> str:
        """`X-Twilio-Signature` for a form POST to `url`."""
        return self._validator.compute_signature(url, params)

    def _post_signed(self, url: str, params: dict[str, str]) -> WebhookDelivery:
        require_loopback_url(url)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "User-Agent": "TwilioProxy/1.1",
            "X-Twilio-Signature": self.sign(url, params),
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }
        delivery = post_loopback(url, urlencode(params).encode(), headers)
        with self._lock:
            self._callbacks.append(delivery)
        return delivery

    def send_status_callback(self, sid: str, status: str, error_code: int | None = None) -> WebhookDelivery:
        """Move message `sid` to `status` and POST Twilio's signed status callback to its StatusCallback."""
        if status not in CALLBACK_STATUSES:
            raise ValueError(f"unknown message status {status!r}")
        with self._lock:
            message = self._messages.get(sid)
            if message is None:
                raise KeyError(f"no message {sid}")
            if not message.status_callback:
                raise ValueError(f"message {sid} was sent without a StatusCallback")
            url = require_loopback_url(message.status_callback)
            message.status = status
            message.error_code = error_code
            message.date_updated = _rfc2822_now()
            message.history.append(status)
            params = {
                "AccountSid": message.account_sid,
                "ApiVersion": API_VERSION,
                "From": message.from_ or self.credentials.from_number,
                "MessageSid": sid,
                "MessageStatus": status,
                "SmsSid": sid,
                "SmsStatus": status,
                "To": message.to,
            }
            if message.messaging_service_sid:
                params["MessagingServiceSid"] = message.messaging_service_sid
            if error_code is not None:
                params["ErrorCode"] = str(error_code)
        return self._post_signed(url, params)

    def send_inbound(
        self, from_: str, body: str, url: str | None = None, to: str | None = None
    ) -> WebhookDelivery:
        """A user texts `body` to our number (its messaging webhook is `url`, else `inbound_url`);
        STOP/START keywords also change the opt-out list."""
        url = url or self._inbound_url
        if not url:
            raise ValueError("no url given and no inbound_url configured")
        require_loopback_url(url)
        keyword = body.strip().upper()
        sid = "SM" + secrets.token_hex(16)
        params = {
            "AccountSid": self.credentials.account_sid,
            "ApiVersion": API_VERSION,
            "Body": body,
            "From": from_,
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": str(segments(body)),
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": to or self.credentials.from_number,
        }
        if self.credentials.messaging_service_sid:
            params["MessagingServiceSid"] = self.credentials.messaging_service_sid
        if keyword in STOP_WORDS:
            self.mark_opted_out(from_)
            params["OptOutType"] = "STOP"
        elif keyword in START_WORDS:
            self.mark_opted_in(from_)
            params["OptOutType"] = "START"
        elif keyword in HELP_WORDS:
            params["OptOutType"] = "HELP"
        return self._post_signed(url, params)

    # -- HTTP --------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        base = f"/{API_VERSION}/Accounts/<account_sid>"
        return [
            Route(f"{base}/Messages.json", ("POST",), self._create, "twilio", self._recipients),
            Route(f"{base}/Messages/<sid>.json", ("GET",), self._fetch, "twilio"),
            Route("/_twilio/opted_out", ("GET",), self._control_opted_out_list),
            Route("/_twilio/opted_out", ("POST", "DELETE"), self._control_opted_out),
            Route("/_twilio/status_callback", ("POST",), self._control_status_callback),
            Route("/_twilio/inbound", ("POST",), self._control_inbound),
            Route("/_twilio/callbacks", ("GET", "POST"), self._control_callbacks),
            Route("/_twilio/messages/<sid>", ("GET",), self._control_message),
        ]

    def _control_opted_out_list(self, request: Request, args: dict[str, str]) -> Response:
        with self._lock:
            return json_response({"opted_out": sorted(self._opted_out)})

    def _control_opted_out(self, request: Request, args: dict[str, str]) -> Response:
        phone = str(control_json(request, "phone")["phone"])
        if request.method == "POST":
            self.mark_opted_out(phone)
        else:
            self.mark_opted_in(phone)
        return json_response({"phone": phone, "opted_out": self.is_opted_out(phone)})

    def _control_status_callback(self, request: Request, args: dict[str, str]) -> Response:
        data = control_json(request, "sid", "status")
        error_code = data.get("error_code")
        try:
            delivery = self.send_status_callback(
                str(data["sid"]), str(data["status"]), int(error_code) if error_code is not None else None
            )
        except KeyError as error:
            raise ControlError(str(error.args[0]), 404) from None
        except ValueError as error:
            raise ControlError(str(error)) from None
        return json_response(delivery.to_dict())

    def _control_callbacks(self, request: Request, args: dict[str, str]) -> Response:
        """GET: the automatic callbacks' settings; POST: change any of `enabled`, `statuses`,
        `delay_seconds`, `failures` ({phone: error code})."""
        if request.method == "POST":
            data = control_json(request)
            rules = asdict(self.callback_rules)
            unknown = sorted(set(data) - set(rules))
            if unknown:
                raise ControlError(f"unknown settings {unknown}")
            rules.update(data)
            try:
                statuses = [str(status) for status in rules["statuses"]]
                if not set(statuses) <= CALLBACK_STATUSES:
                    raise ValueError(f"unknown statuses in {statuses}")
                updated = CallbackRules(
                    enabled=bool(rules["enabled"]),
                    statuses=statuses,
                    delay_seconds=float(rules["delay_seconds"]),
                    failures={str(phone): int(code) for phone, code in dict(rules["failures"]).items()},
                )
            except (TypeError, ValueError) as error:
                raise ControlError(str(error)) from None
            self.callback_rules = updated
        return json_response(asdict(self.callback_rules))

    def _control_inbound(self, request: Request, args: dict[str, str]) -> Response:
        data = control_json(request, "from", "body")
        try:
            delivery = self.send_inbound(
                str(data["from"]), str(data["body"]), data.get("url") or None, data.get("to")
            )
        except ValueError as error:
            raise ControlError(str(error)) from None
        return json_response(delivery.to_dict())

    def _control_message(self, request: Request, args: dict[str, str]) -> Response:
        message = self.message(args["sid"])
        if message is None:
            raise ControlError(f"no message {args['sid']}", 404)
        return json_response(
            {
                **message.resource(),
                "status_callback": message.status_callback,
                "history": list(message.history),
            }
        )

    def fault_response(self, status: int) -> Response:
        known = {
            429: (20429, "Too Many Requests"),
            500: (20500, "Internal Server Error"),
            503: (20503, "Service Unavailable"),
        }
        code, message = known.get(status, (20000 + status, f"Error {status}"))
        return twilio_error(status, code, message)

    @staticmethod
    def _recipients(request: Request, args: dict[str, str]) -> list[str]:
        return [request.form["To"]] if "To" in request.form else []

    def _authenticate(self, request: Request, account_sid: str) -> Response | None:
        header = request.headers.get("Authorization", "")
        user = password = ""
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user = password = ""
        if not (
            hmac.compare_digest(user, self.credentials.account_sid)
            and hmac.compare_digest(password, self.credentials.auth_token)
        ):
            return twilio_error(401, 20003, "Authenticate")
        if account_sid != self.credentials.account_sid:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        return None

    def _create(self, request: Request, args: dict[str, str]) -> Response:
        denied = self._authenticate(request, args["account_sid"])
        if denied:
            return denied
        form = request.form
        to = form.get("To", "")
        from_ = form.get("From") or None
        service = form.get("MessagingServiceSid") or None
        body = form.get("Body", "")
        callback = form.get("StatusCallback") or None
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not E164.match(to):
            return twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if from_ is None and service is None:
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if from_ is not None and from_ != self.credentials.from_number:
            return twilio_error(
                400,
                21606,
                f"The From phone number {from_} is not a valid, SMS-capable inbound phone number "
                "or short code for your account.",
            )
        if service is not None and service != self.credentials.messaging_service_sid:
            return twilio_error(400, 21701, f"The Messaging Service Sid {service} is invalid.")
        if not body and not form.get("MediaUrl"):
            return twilio_error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            return twilio_error(
                400, 21617, f"The concatenated message body exceeds the {MAX_BODY_CHARS} character limit."
            )
        if callback is not None and not callback.startswith(("http://", "https://")):
            return twilio_error(400, 21609, f"Invalid StatusCallback URL: {callback}")
        if self.is_opted_out(to):
            return twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
        now = _rfc2822_now()
        status = "queued" if from_ else "accepted"
        message = SentMessage(
            sid="SM" + secrets.token_hex(16),
            account_sid=self.credentials.account_sid,
            to=to,
            from_=from_,
            messaging_service_sid=service,
            body=body,
            status=status,
            status_callback=callback,
            date_created=now,
            date_updated=now,
            history=[status],
        )
        with self._lock:
            self._messages[message.sid] = message
        self._schedule_callbacks(message)
        self.outbox.record(
            provider="twilio",
            channel="sms",
            recipient=to,
            subject=None,
            body=body,
            provider_id=message.sid,
            request={key: form.get(key) for key in form},
        )
        return json_response(message.resource(), 201)

    def _fetch(self, request: Request, args: dict[str, str]) -> Response:
        denied = self._authenticate(request, args["account_sid"])
        if denied:
            return denied
        message = self.message(args["sid"])
        if message is None:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        return json_response(message.resource())
