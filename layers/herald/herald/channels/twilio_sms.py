"""SMS through Twilio's Messages API with the official SDK.

Sends through the messaging service SID when configured (Twilio picks the sender and handles
STOP), else from the configured number; the status callback points at the HTTP API's
`/v1/webhooks/twilio`. Errors: 21610 (the recipient replied STOP) → permanent plus an
`opt_out_phone` effect (the sender suppresses `sms#<phone>`); 21211 (invalid To) and other 4xx
→ permanent; 429 and 5xx → retry later (401/403: our credentials, retried).

Transport errors (requests): the SDK's session does not retry (requests' default adapter makes one
attempt; Herald never passes `max_retries`). A failure that proves the request never left
(`ConnectTimeout`, connection refused, DNS, TLS handshake) → retry later; a `ReadTimeout` or a
connection reset/closed after the request was written → `Uncertain`: Twilio may have queued the
SMS, so it is never sent again (docs/decisions/007).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from requests.exceptions import RequestException
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from herald.channels.ports import OutgoingSms
from herald.channels.result import (
    TRANSPORT,
    Accepted,
    Effects,
    PermanentFailure,
    RetryLater,
    SendResult,
    Uncertain,
    classify_http_error,
    short,
)
from herald.channels.transport import request_may_leave, requests_not_sent

PROVIDER = "twilio"
UNSUBSCRIBED_RECIPIENT = 21610
INVALID_TO = 21211
PERMANENT_RECIPIENT_CODES = frozenset({21211, 21612, 21614, 21408, 21635})


class RedirectingHttpClient(TwilioHttpClient):
    """Twilio's HTTP client with every `*.twilio.com` URL rebased on a configured API base URL
    (a regional edge, a proxy, or the loopback sandbox). Marks the point of no return: from the
    HTTP call on, an unexpected exception means Twilio may have the message."""

    def __init__(self, api_base: str | None = None, timeout: float | None = None) -> None:
        super().__init__(timeout=timeout)
        self._base = urlsplit(api_base.rstrip("/")) if api_base else None

    def rewrite(self, url: str) -> str:
        if self._base is None:
            return url
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host != "twilio.com" and not host.endswith(".twilio.com"):
            return url
        path = self._base.path.rstrip("/") + parts.path
        return urlunsplit((self._base.scheme, self._base.netloc, path, parts.query, parts.fragment))

    def request(self, method: str, url: str, *args: Any, **kwargs: Any):  # type: ignore[override]
        target = self.rewrite(url)
        if method.upper() != "GET":
            request_may_leave(PROVIDER)
        return super().request(method, target, *args, **kwargs)


def classify_error(error: TwilioRestException, to: str) -> PermanentFailure | RetryLater:
    code = int(error.code) if error.code is not None else None
    reason = short(f"Twilio {error.status} {code or ''}: {error.msg}")
    if code == UNSUBSCRIBED_RECIPIENT:
        return PermanentFailure(PROVIDER, reason, code=str(code), effects=Effects(opt_out_phone=to))
    if code in PERMANENT_RECIPIENT_CODES:
        return PermanentFailure(PROVIDER, reason, code=str(code))
    return classify_http_error(PROVIDER, int(error.status), reason, code=str(code) if code else None)


class TwilioSmsProvider:
    name = PROVIDER

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        messaging_service_sid: str | None = None,
        from_number: str | None = None,
        api_base: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not messaging_service_sid and not from_number:
            raise ValueError("Twilio needs a messaging_service_sid or a from_number")
        self._client = Client(
            account_sid,
            auth_token,
            http_client=RedirectingHttpClient(api_base, timeout=timeout),
        )
        self._messaging_service_sid = messaging_service_sid or None
        self._from_number = None if messaging_service_sid else from_number

    @classmethod
    def from_secret(cls, secret: dict[str, Any], timeout: float = 10.0) -> TwilioSmsProvider:
        return cls(
            str(secret["account_sid"]),
            str(secret["auth_token"]),
            messaging_service_sid=secret.get("messaging_service_sid") or None,
            from_number=secret.get("from_number") or None,
            api_base=secret.get("api_base") or None,
            timeout=timeout,
        )

    def send(self, sms: OutgoingSms) -> SendResult:
        params: dict[str, Any] = {"to": sms.to, "body": sms.body}
        if self._messaging_service_sid:
            params["messaging_service_sid"] = self._messaging_service_sid
        else:
            params["from_"] = self._from_number
        if sms.status_callback:
            params["status_callback"] = sms.status_callback
        try:
            message = self._client.messages.create(**params)
        except TwilioRestException as error:
            return classify_error(error, sms.to)
        except RequestException as error:
            return classify_transport_error(error)
        return Accepted(PROVIDER, message.sid)


def classify_transport_error(error: RequestException) -> RetryLater | Uncertain:
    if requests_not_sent(error):
        return RetryLater(PROVIDER, f"Twilio unreachable: {short(error)}", code=TRANSPORT)
    return Uncertain(PROVIDER, f"Twilio may have the SMS (no answer after sending): {short(error)}")
