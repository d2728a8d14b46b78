"""Email through SendGrid's v3 Mail Send API with the official SDK.

The request body is built here (v3 JSON: text part first, then HTML; custom headers such as
List-Unsubscribe; `custom_args` carrying `notification_id` / `user_id` so SendGrid's event webhook
echoes them back). 4xx are permanent, 429 and 5xx are retried (401/403 mean our key or sender
identity is wrong: retried so the messages can be redriven after the fix, see
`result.classify_http_error`).

The SDK (python-http-client) sends with `urllib.request` and retries nothing. urllib wraps an
error raised while connecting or writing the request in `URLError` (refused, DNS, connect timeout,
TLS handshake): nothing left, retried later. An error while waiting for the answer (a read
timeout, a reset or closed connection) escapes unwrapped: SendGrid may have the email, so it is
`Uncertain` and never resent, nor failed over to SES (docs/decisions/007).
"""

from __future__ import annotations

import http.client
import json
from email.utils import parseaddr
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from herald.channels.ports import OutgoingEmail
from herald.channels.result import (
    TRANSPORT,
    Accepted,
    RetryLater,
    SendResult,
    Uncertain,
    classify_http_error,
    header,
    parse_retry_after,
    short,
)
from herald.channels.transport import request_may_leave, urllib_not_sent

PROVIDER = "sendgrid"
DEFAULT_HOST = "https://api.sendgrid.com"


def _address(value: str) -> dict[str, str]:
    name, address = parseaddr(value)
    return {"email": address or value, **({"name": name} if name else {})}


# SendGrid's event webhook echoes custom args as top-level fields of each event: a tag named like
# one of the event's own fields (a bounce's `type: bounce | blocked`) would collide with it, so it
# is sent with a `herald_` prefix (the type also rides in `categories`). Decision 023.
EVENT_FIELDS = frozenset(
    {"type", "event", "email", "timestamp", "reason", "status", "response", "attempt", "category"}
    | {"sg_event_id", "sg_message_id", "smtp-id", "ip", "tls", "url", "useragent", "pool"}
    | {"bounce_classification", "asm_group_id", "sg_machine_open", "sg_content_type"}
)


def _custom_arg(tag: str) -> str:
    return f"herald_{tag}" if tag in EVENT_FIELDS else tag


def mail_body(email: OutgoingEmail) -> dict[str, Any]:
    """The v3 `mail/send` JSON for `email`."""
    content = [{"type": "text/plain", "value": email.text}]
    if email.html:
        content.append({"type": "text/html", "value": email.html})
    body: dict[str, Any] = {
        "personalizations": [{"to": [_address(email.to)]}],
        "from": _address(email.sender),
        "subject": email.subject,
        "content": content,
    }
    if email.reply_to:
        body["reply_to"] = _address(email.reply_to)
    if email.headers:
        body["headers"] = dict(email.headers)
    if email.tags:
        body["custom_args"] = {_custom_arg(k): str(v) for k, v in email.tags.items()}
        if "type" in email.tags:
            body["categories"] = [str(email.tags["type"])[:255]]
    return body


def _error_reason(error: HTTPError) -> str:
    try:
        errors = json.loads(error.body or b"{}").get("errors") or []
        messages = "; ".join(str(e.get("message")) for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError):
        messages = ""
    body = error.body.decode(errors="replace") if isinstance(error.body, bytes) else error.body
    return short(f"SendGrid {error.status_code}: {messages or body or error.reason}")


class SendGridEmailProvider:
    name = PROVIDER

    def __init__(self, api_key: str, host: str | None = None, timeout: float = 10.0) -> None:
        self._client = SendGridAPIClient(api_key=api_key, host=(host or DEFAULT_HOST).rstrip("/"))
        self._timeout = timeout

    @classmethod
    def from_secret(cls, secret: dict[str, Any], timeout: float = 10.0) -> SendGridEmailProvider:
        return cls(api_key=str(secret["api_key"]), host=secret.get("host") or None, timeout=timeout)

    def send(self, email: OutgoingEmail) -> SendResult:
        body = mail_body(email)
        request_may_leave(PROVIDER)
        try:
            response = self._client.client.mail.send.post(request_body=body, timeout=self._timeout)
        except HTTPError as error:
            headers = dict(error.headers.items()) if error.headers else {}
            return classify_http_error(
                PROVIDER,
                int(error.status_code),
                _error_reason(error),
                retry_after=parse_retry_after(header(headers, "Retry-After")),
            )
        except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
            if urllib_not_sent(error):
                reason = getattr(error, "reason", error)
                return RetryLater(PROVIDER, f"SendGrid unreachable: {short(reason)}", code=TRANSPORT)
            return Uncertain(
                PROVIDER, f"SendGrid may have the email (no answer after sending): {short(repr(error))}"
            )
        headers = dict(response.headers.items()) if response.headers else {}
        return Accepted(PROVIDER, header(headers, "X-Message-Id"))
