"""Email through Amazon SES v2 (boto3 `sesv2`).

Simple content (SES builds the MIME) when no custom header is needed; Raw MIME built here when
one is (List-Unsubscribe on marketing mail), because Simple content cannot carry arbitrary
headers. Both carry the configuration set (feedback events) and the `notification_id` /
`user_id` tags that the feedback function reads back from SES events.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from herald.channels.ports import OutgoingEmail
from herald.channels.result import (
    AUTH,
    TRANSPORT,
    Accepted,
    PermanentFailure,
    RetryLater,
    SendResult,
    short,
)

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
_TAG_VALUE = re.compile(r"[^A-Za-z0-9_-]")


def tag_value(value: str) -> str:
    """SES tag values allow only ASCII letters, digits, `_` and `-` (at most 256)."""
    return _TAG_VALUE.sub("_", value)[:256] or "_"


def build_mime(email: OutgoingEmail) -> bytes:
    """multipart/alternative (text, then HTML) with the email's extra headers, as SES Raw data."""
    message = EmailMessage(policy=SMTP)
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


class SesEmailProvider:
    name = PROVIDER

    def __init__(self, client: Any, configuration_set: str | None = None) -> None:
        self._client = client
        self._configuration_set = configuration_set

    def request(self, email: OutgoingEmail) -> dict[str, Any]:
        """The SendEmail parameters for `email` (Raw when it has custom headers)."""
        params: dict[str, Any] = {
            "FromEmailAddress": email.sender,
            "Destination": {"ToAddresses": [email.to]},
            "EmailTags": [{"Name": name, "Value": tag_value(value)} for name, value in email.tags.items()],
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
        try:
            response = self._client.send_email(**self.request(email))
        except ClientError as error:
            return classify_client_error(error)
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionError) as error:
            return RetryLater(PROVIDER, f"SES unreachable: {short(error)}", code=TRANSPORT)
        except BotoCoreError as error:
            return RetryLater(PROVIDER, f"SES call failed: {short(error)}", code=TRANSPORT)
        return Accepted(PROVIDER, response.get("MessageId"))


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
        return RetryLater(PROVIDER, message, code=code)
    if 400 <= status < 500:
        return PermanentFailure(PROVIDER, message, code=code)
    return RetryLater(PROVIDER, message, code=code)
