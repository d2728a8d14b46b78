"""Email through Amazon SES v2 (boto3 `sesv2`).

Simple content (SES builds the MIME) when no custom header is needed; Raw MIME built here when
one is (List-Unsubscribe on marketing mail), because Simple content cannot carry arbitrary
headers. Both carry the configuration set (feedback events) and the `notification_id` /
`user_id` tags that the feedback function reads back from SES events.

A send never happens twice (docs/decisions/007). botocore retries a read timeout or a closed
connection by itself (legacy mode: up to 5 attempts), each of which may have reached SES: the
sending client is built by `send_client()` with one attempt and the function's timeouts, and
`SesEmailProvider` refuses a client that would retry. Errors are sorted by what they prove:

- an answer from SES (`ClientError`): permanent, account/auth problems and throttling/5xx retried;
- nothing left (`EndpointConnectionError`, `ConnectTimeoutError`, a proxy or TLS handshake error,
  or any botocore error raised before the request was handed to the HTTP layer, such as missing
  credentials): retried later;
- anything after the request went out (`ReadTimeoutError`, `ConnectionClosedError`, ...):
  `Uncertain`, never resent, and no failover to the other provider.
"""

from __future__ import annotations

import threading
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ProxyConnectionError,
    SSLError,
)

from herald.channels.ports import OutgoingEmail
from herald.channels.result import (
    AUTH,
    TRANSPORT,
    Accepted,
    PermanentFailure,
    RetryLater,
    SendResult,
    Uncertain,
    server_error,
    short,
)
from herald.channels.transport import request_may_leave, tls_handshake_failed
from herald.provider_tags import encode_tag

PROVIDER = "ses"

# This message can never be sent as it is: retrying the same request will not help.
PERMANENT_CODES = frozenset(
    {
        "MessageRejected",
        "BadRequestException",
        "InvalidParameterValue",
        "ValidationException",
        "NotFoundException",
    }
)
# Throttling and service trouble.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "LimitExceededException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServiceError",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# Of those, the ones that do not prove SES did not take the message (retry SES, never fail over).
SERVER_FAULT_CODES = frozenset({"InternalFailure", "InternalServiceError"})
# The account or its setup cannot send right now (paused, suspended, identity or configuration set
# missing): every message would fail the same way. Retried, then dead-lettered, so an operator can
# redrive them once the account is fixed, rather than recorded as failed one by one.
ACCOUNT_CODES = frozenset(
    {
        "AccountSendingPausedException",
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "ConfigurationSetDoesNotExistException",
        "ConfigurationSetSendingPausedException",
    }
)
AUTH_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId"}
)


# Header lines up to RFC 5322's 998 characters: at the default 78, a List-Unsubscribe URL longer than a
# line (no place to fold) is RFC 2047-encoded, which no mail client parses as a URL (decision 024).
MIME_POLICY = SMTP.clone(max_line_length=998)


def build_mime(email: OutgoingEmail) -> bytes:
    """multipart/alternative (text, then HTML) with the email's extra headers, as SES Raw data."""
    message = EmailMessage(policy=MIME_POLICY)
    message["From"] = email.sender
    message["To"] = email.to
    if email.reply_to:
        message["Reply-To"] = email.reply_to
    message["Subject"] = email.subject
    message["Date"] = formatdate(usegmt=True)
    message["MIME-Version"] = "1.0"
    for name, value in email.headers.items():
        message[name] = value
    message.set_content(email.text, subtype="plain", charset="utf-8")
    if email.html:
        message.add_alternative(email.html, subtype="html", charset="utf-8")
    return message.as_bytes()


def send_client(timeout: float = 10.0, **kwargs: Any) -> Any:
    """An `sesv2` client for sending: one attempt (no resend after a read timeout) and short
    connect/read timeouts (the default read timeout is 60 s). Throttling and 5xx come back to
    Herald, which backs off through SQS (and may fail over to SendGrid)."""
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=timeout,
        read_timeout=timeout,
    )
    return boto3.client("sesv2", config=config, **kwargs)


def max_attempts(client: Any) -> int | None:
    """How many attempts botocore makes per call on `client` (None: botocore's default, > 1)."""
    retries = getattr(client.meta.config, "retries", None) or {}
    total = retries.get("total_max_attempts")
    return int(total) if total is not None else None


class SesEmailProvider:
    name = PROVIDER

    def __init__(self, client: Any, configuration_set: str | None = None) -> None:
        self._client = client
        self._configuration_set = configuration_set
        self._sending = threading.local()
        if client is not None:
            if max_attempts(client) != 1:
                raise ValueError(
                    "the SES client retries by itself: a retried read timeout can send an email "
                    "twice; build it with herald.channels.ses.send_client()"
                )
            # the point of no return: botocore hands the signed request to the HTTP layer
            client.meta.events.register("before-send.sesv2.SendEmail", self._request_leaves)

    def _request_leaves(self, **kwargs: Any) -> None:
        self._sending.out = True
        request_may_leave(PROVIDER)

    def request(self, email: OutgoingEmail) -> dict[str, Any]:
        """The SendEmail parameters for `email` (Raw when it has custom headers)."""
        params: dict[str, Any] = {
            "FromEmailAddress": email.sender,
            "Destination": {"ToAddresses": [email.to]},
            "EmailTags": [
                {"Name": name, "Value": tagged}
                for name, value in email.tags.items()
                if (tagged := encode_tag(value)) is not None  # herald.provider_tags: lossless
            ],
        }
        if email.reply_to:
            params["ReplyToAddresses"] = [email.reply_to]
        if self._configuration_set:
            params["ConfigurationSetName"] = self._configuration_set
        if email.headers:
            params["Content"] = {"Raw": {"Data": build_mime(email)}}
        else:
            body: dict[str, Any] = {"Text": {"Data": email.text, "Charset": "UTF-8"}}
            if email.html:
                body["Html"] = {"Data": email.html, "Charset": "UTF-8"}
            params["Content"] = {
                "Simple": {"Subject": {"Data": email.subject, "Charset": "UTF-8"}, "Body": body}
            }
        return params

    def send(self, email: OutgoingEmail) -> SendResult:
        params = self.request(email)
        self._sending.out = False
        try:
            response = self._client.send_email(**params)
        except ClientError as error:
            return classify_client_error(error)
        except BotoCoreError as error:
            return classify_transport_error(error, request_left=getattr(self._sending, "out", False))
        return Accepted(PROVIDER, response.get("MessageId"))


def classify_transport_error(error: BotoCoreError, *, request_left: bool) -> RetryLater | Uncertain:
    """A botocore error without an answer from SES: did the request leave?"""
    if not request_left:  # signing, parameters, endpoint resolution: nothing was sent
        return RetryLater(PROVIDER, f"SES call failed before sending: {short(error)}", code=TRANSPORT)
    if isinstance(error, EndpointConnectionError | ConnectTimeoutError | ProxyConnectionError):
        return RetryLater(PROVIDER, f"SES unreachable: {short(error)}", code=TRANSPORT)
    if isinstance(error, SSLError) and tls_handshake_failed(error):
        return RetryLater(PROVIDER, f"SES TLS handshake failed: {short(error)}", code=TRANSPORT)
    return Uncertain(PROVIDER, f"SES may have the email (no answer after sending): {short(error)}")


def classify_client_error(error: ClientError) -> PermanentFailure | RetryLater:
    details = error.response.get("Error", {})
    code = str(details.get("Code") or "Unknown")
    message = short(f"{code}: {details.get('Message') or ''}")
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in PERMANENT_CODES:
        return PermanentFailure(PROVIDER, message, code=code)
    if code in AUTH_CODES:
        return RetryLater(PROVIDER, message, code=AUTH)
    if code in ACCOUNT_CODES:
        return RetryLater(PROVIDER, message, code=code)
    if code in TRANSIENT_CODES or status >= 500 or status == 429:
        ambiguous = code in SERVER_FAULT_CODES or (server_error(status) and code not in TRANSIENT_CODES)
        return RetryLater(PROVIDER, message, code=code, proves_not_accepted=not ambiguous)
    if 400 <= status < 500:
        return PermanentFailure(PROVIDER, message, code=code)
    return RetryLater(PROVIDER, message, code=code)
