"""Adapters' pure parts: request bodies, URL rewriting and error classification without a network."""

from __future__ import annotations

import json

import pytest
import requests
from firebase_admin import exceptions as firebase_exceptions
from firebase_admin import messaging
from pusher.errors import PusherBadAuth, PusherBadRequest, PusherBadStatus
from twilio.base.exceptions import TwilioRestException

from herald.channels import fcm, pusher_realtime, twilio_sms
from herald.channels.ports import OutgoingEmail, PushNotification
from herald.channels.result import AUTH, DEAD_TOKEN, PermanentFailure, RetryLater
from herald.channels.sendgrid_email import mail_body

pytestmark = pytest.mark.unit

PUSH = PushNotification(
    title="Payment received",
    body="Thanks!",
    data={"notification_id": "n-1", "type": "payment_receipt"},
    android_channel="payments",
    android_priority="high",
    apns_priority=10,
    collapse_key="n-1",
)


# -- SendGrid ----------------------------------------------------------------------------------


def test_sendgrid_body_has_text_first_headers_and_custom_args() -> None:
    email = OutgoingEmail(
        sender="Herald <notifications@example.com>",
        to="ana@example.com",
        subject="Hi",
        text="text",
        html="<b>html</b>",
        reply_to="support@example.com",
        headers={"List-Unsubscribe": "<https://x/v1/unsubscribe?token=t>"},
        tags={"notification_id": "n-1", "user_id": "42", "type": "marketing_promo"},
    )
    body = mail_body(email)
    assert body["from"] == {"email": "notifications@example.com", "name": "Herald"}
    assert body["personalizations"] == [{"to": [{"email": "ana@example.com"}]}]
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["reply_to"] == {"email": "support@example.com"}
    assert body["headers"]["List-Unsubscribe"] == "<https://x/v1/unsubscribe?token=t>"
    # `type` would collide with the event webhook's own field (a bounce's type): prefixed (decision 023)
    args = {"notification_id": "n-1", "user_id": "42", "herald_type": "marketing_promo"}
    assert body["custom_args"] == args
    assert body["categories"] == ["marketing_promo"]


# -- FCM ---------------------------------------------------------------------------------------


def test_fcm_message_carries_channel_priority_and_only_identifiers() -> None:
    encoded = messaging._MessagingService.encode_message(fcm.build_message(PUSH, "tok-1"))
    assert encoded["token"] == "tok-1"
    assert encoded["notification"] == {"title": "Payment received", "body": "Thanks!"}
    assert encoded["data"] == {"notification_id": "n-1", "type": "payment_receipt"}
    assert encoded["android"]["notification"]["channel_id"] == "payments"
    assert encoded["android"]["priority"] == "high"
    assert encoded["apns"]["headers"]["apns-priority"] == "10"


def test_fcm_normal_urgency_uses_low_priorities() -> None:
    push = PushNotification(**{**PUSH.__dict__, "android_priority": "normal", "apns_priority": 5})
    encoded = messaging._MessagingService.encode_message(fcm.build_message(push, "t"))
    assert (encoded["android"]["priority"], encoded["apns"]["headers"]["apns-priority"]) == ("normal", "5")


def _response(body: dict, status: int = 400) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    return response


@pytest.mark.parametrize(
    ("error", "kind", "code", "dead"),
    [
        (messaging.UnregisteredError("gone"), PermanentFailure, DEAD_TOKEN, True),
        (messaging.SenderIdMismatchError("other project"), PermanentFailure, DEAD_TOKEN, True),
        (
            firebase_exceptions.InvalidArgumentError(
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                http_response=_response(
                    {"error": {"message": "The registration token is not a valid FCM registration token"}}
                ),
            ),
            PermanentFailure,
            DEAD_TOKEN,
            True,
        ),
        (
            firebase_exceptions.InvalidArgumentError(
                "INVALID_ARGUMENT",
                "Request contains an invalid argument.",
                http_response=_response(
                    {
                        "error": {
                            "message": "Request contains an invalid argument.",
                            "details": [
                                {
                                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                                    "fieldViolations": [{"field": "message.token"}],
                                }
                            ],
                        }
                    }
                ),
            ),
            PermanentFailure,
            DEAD_TOKEN,
            True,
        ),
        (
            firebase_exceptions.InvalidArgumentError("INVALID_ARGUMENT", "Invalid data payload key: from"),
            PermanentFailure,
            "INVALID_ARGUMENT",
            False,
        ),
        (messaging.QuotaExceededError("quota"), RetryLater, "QUOTA_EXCEEDED", False),
        (firebase_exceptions.UnavailableError("UNAVAILABLE", "down"), RetryLater, "UNAVAILABLE", False),
        (firebase_exceptions.InternalError("INTERNAL", "oops"), RetryLater, "INTERNAL", False),
        (firebase_exceptions.UnknownError("UNKNOWN", "socket"), RetryLater, "UNKNOWN", False),
        (firebase_exceptions.UnauthenticatedError("UNAUTHENTICATED", "bad token"), RetryLater, AUTH, False),
    ],
)
def test_fcm_errors_are_classified(error: Exception, kind: type, code: str, dead: bool) -> None:
    result = fcm.classify_error(error, "tok-1")
    assert isinstance(result, kind)
    assert result.code == code
    assert result.effects.dead_tokens == (("tok-1",) if dead else ())


# -- Twilio ------------------------------------------------------------------------------------


def test_twilio_urls_are_rebased_on_the_configured_api() -> None:
    client = twilio_sms.RedirectingHttpClient("http://127.0.0.1:4010/")
    assert (
        client.rewrite("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?x=1")
        == "http://127.0.0.1:4010/2010-04-01/Accounts/AC1/Messages.json?x=1"
    )
    assert client.rewrite("https://messaging.twilio.com/v1/Services") == "http://127.0.0.1:4010/v1/Services"
    assert client.rewrite("https://example.com/other") == "https://example.com/other"
    assert (
        twilio_sms.RedirectingHttpClient(None).rewrite("https://api.twilio.com/x")
        == "https://api.twilio.com/x"
    )


@pytest.mark.parametrize(
    ("status", "code", "kind", "opt_out"),
    [
        (400, 21610, PermanentFailure, True),
        (400, 21211, PermanentFailure, False),
        (400, 21614, PermanentFailure, False),
        (429, 20429, RetryLater, False),
        (500, 20500, RetryLater, False),
        (503, None, RetryLater, False),
        (401, 20003, RetryLater, False),
        (400, 21602, PermanentFailure, False),
    ],
)
def test_twilio_errors_are_classified(status: int, code: int | None, kind: type, opt_out: bool) -> None:
    error = TwilioRestException(status, "https://api.twilio.com/x", msg="nope", code=code)
    result = twilio_sms.classify_error(error, "+14155550100")
    assert isinstance(result, kind)
    assert result.effects.opt_out_phone == ("+14155550100" if opt_out else None)


def test_twilio_needs_a_sender() -> None:
    with pytest.raises(ValueError):
        twilio_sms.TwilioSmsProvider("AC1", "token")


# -- Pusher ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (PusherBadRequest("Invalid channel name"), PermanentFailure, "400"),
        (PusherBadAuth("Invalid signature"), RetryLater, AUTH),
        (PusherBadStatus("429: Too Many Requests"), RetryLater, "429"),
        (PusherBadStatus("503: Service Unavailable"), RetryLater, "503"),
        (PusherBadStatus("413: Payload too large"), PermanentFailure, "413"),
        (ValueError("Too much data"), PermanentFailure, "invalid"),
        (requests.ConnectionError("refused"), RetryLater, "transport"),
    ],
)
def test_pusher_errors_are_classified(error: Exception, kind: type, code: str) -> None:
    result = pusher_realtime.classify_error(error)
    assert isinstance(result, kind)
    assert result.code == code


def test_pusher_secret_shapes() -> None:
    provider = pusher_realtime.PusherRealtimeProvider.from_secret(
        {"app_id": 1, "key": "k", "secret": "s", "host": "127.0.0.1", "port": 4010, "ssl": "false"}
    )
    client = provider._client._pusher_client
    assert (client.host, client.port, client.ssl) == ("127.0.0.1", 4010, False)
