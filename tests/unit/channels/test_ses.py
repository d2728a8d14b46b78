"""SES v2 adapter: Simple vs Raw content, tags, and error classification (botocore Stubber)."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.policy import default

import pytest
from botocore.stub import Stubber

from herald.channels.ports import OutgoingEmail
from herald.channels.result import AUTH, Accepted, PermanentFailure, RetryLater
from herald.channels.ses import SesEmailProvider, build_mime, send_client
from herald.provider_tags import decode_tag, encode_tag

pytestmark = pytest.mark.unit

EMAIL = OutgoingEmail(
    sender="Herald <notifications@example.com>",
    to="ana@example.com",
    subject="Olá — your order",
    text="Plain text body",
    html="<p>HTML body</p>",
    reply_to="support@example.com",
    tags={"notification_id": "n#1", "user_id": "42"},
)
UNSUBSCRIBE = {
    "List-Unsubscribe": "<https://api.example.com/v1/unsubscribe?token=abc.def>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


@pytest.fixture
def client():
    client = send_client(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        client.stubber = stubber
        yield client


def test_without_custom_headers_the_content_is_simple_with_both_parts() -> None:
    request = SesEmailProvider(client=None, configuration_set="herald-dev").request(EMAIL)
    body = request["Content"]["Simple"]["Body"]
    assert body["Text"]["Data"] == "Plain text body"
    assert body["Html"]["Data"] == "<p>HTML body</p>"
    assert request["ConfigurationSetName"] == "herald-dev"
    assert request["ReplyToAddresses"] == ["support@example.com"]
    assert {"Name": "notification_id", "Value": encode_tag("n#1")} in request["EmailTags"]  # lossless


def test_custom_headers_need_raw_mime_with_text_then_html() -> None:
    email = OutgoingEmail(**{**EMAIL.__dict__, "headers": UNSUBSCRIBE})
    request = SesEmailProvider(client=None, configuration_set="herald-dev").request(email)
    assert "Simple" not in request["Content"]
    parsed = message_from_bytes(request["Content"]["Raw"]["Data"], policy=default)
    assert parsed["List-Unsubscribe"] == UNSUBSCRIBE["List-Unsubscribe"]
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Subject"] == "Olá — your order"
    assert parsed["Reply-To"] == "support@example.com"
    assert parsed.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in parsed.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert parsed.get_body(("plain",)).get_content().strip() == "Plain text body"
    assert request["ConfigurationSetName"] == "herald-dev"


def test_a_text_only_email_is_a_single_part() -> None:
    email = OutgoingEmail(**{**EMAIL.__dict__, "html": None, "headers": UNSUBSCRIBE})
    assert message_from_bytes(build_mime(email), policy=default).get_content_type() == "text/plain"


@pytest.mark.parametrize("value", ["ntf-0123abcd", "42", "auth0|1", "user@example.com#1", "b64-x", "", "ünï"])
def test_tag_values_keep_to_what_ses_allows_and_decode_to_the_very_id(value: str) -> None:
    encoded = encode_tag(value)

    assert encoded is not None and re.fullmatch(r"[A-Za-z0-9_-]{1,256}", encoded)
    assert decode_tag(encoded) == value
    assert encode_tag("ntf-0123abcd") == "ntf-0123abcd"  # what fits is kept readable


def test_a_value_too_long_for_a_tag_is_left_out() -> None:
    assert encode_tag("é" * 200) is None


def test_accepted_with_the_ses_message_id(client) -> None:
    client.stubber.add_response("send_email", {"MessageId": "0100-abc"})
    result = SesEmailProvider(client).send(EMAIL)
    assert result == Accepted("ses", "0100-abc")


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("MessageRejected", 400, PermanentFailure),
        ("AccountSendingPausedException", 400, RetryLater),
        ("SendingPausedException", 400, RetryLater),
        ("MailFromDomainNotVerifiedException", 400, RetryLater),
        ("ConfigurationSetDoesNotExistException", 404, RetryLater),
        ("TooManyRequestsException", 429, RetryLater),
        ("Throttling", 400, RetryLater),
        ("LimitExceededException", 400, RetryLater),
        ("InternalFailure", 500, RetryLater),
        ("ServiceUnavailable", 503, RetryLater),
        ("SomethingNew", 502, RetryLater),
        ("SomethingElse", 400, PermanentFailure),
    ],
)
def test_ses_errors_are_classified(client, code: str, status: int, kind: type) -> None:
    client.stubber.add_client_error("send_email", service_error_code=code, http_status_code=status)
    result = SesEmailProvider(client).send(EMAIL)
    assert isinstance(result, kind)
    assert result.code == code
    assert code in result.reason


def test_refused_credentials_are_retried(client) -> None:
    client.stubber.add_client_error(
        "send_email", service_error_code="AccessDeniedException", http_status_code=403
    )
    result = SesEmailProvider(client).send(EMAIL)
    assert isinstance(result, RetryLater)
    assert result.code == AUTH
