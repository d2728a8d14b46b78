"""Each adapter through its provider's real SDK into the loopback sandbox: accepted messages and
the classification of the provider's real errors (sandbox faults, bad input, refused credentials)."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from herald.channels.fcm import FcmPushProvider
from herald.channels.ports import OutgoingEmail, OutgoingSms, PushNotification, RealtimeEvent, WebhookDelivery
from herald.channels.pusher_realtime import PusherRealtimeProvider
from herald.channels.result import (
    AUTH,
    DEAD_TOKEN,
    POSSIBLY_RECEIVED,
    TRANSPORT,
    Accepted,
    PermanentFailure,
    RetryLater,
    Uncertain,
)
from herald.channels.sendgrid_email import SendGridEmailProvider
from herald.channels.twilio_sms import TwilioSmsProvider
from herald.channels.webhook_http import UrllibWebhookTransport
from herald.webhook_signing import IDEMPOTENCY_HEADER, verify
from local.sandboxes import SandboxHost
from tests.integration.channels.presence import pusher_requests

pytestmark = pytest.mark.integration

EMAIL = OutgoingEmail(
    sender="Herald <notifications@example.com>",
    to="ana@example.com",
    subject="Your receipt",
    text="Thanks",
    html="<p>Thanks</p>",
    headers={"List-Unsubscribe": "<https://api.example.com/v1/unsubscribe?token=t>"},
    tags={"notification_id": "n-1", "user_id": "42"},
)
PUSH = PushNotification(
    title="Payment received",
    body="Thanks for your purchase",
    data={"notification_id": "n-1", "type": "payment_receipt"},
    android_channel="payments",
    android_priority="high",
    apns_priority=10,
)
PHONE = "+14155550100"


# -- SendGrid ----------------------------------------------------------------------------------


@pytest.fixture
def sendgrid(sandbox: SandboxHost) -> SendGridEmailProvider:
    return SendGridEmailProvider.from_secret(sandbox.credentials.secrets()["sendgrid"], timeout=2)


def test_sendgrid_accepts_with_its_message_id(sandbox: SandboxHost, sendgrid: SendGridEmailProvider) -> None:
    result = sendgrid.send(EMAIL)
    assert isinstance(result, Accepted)
    (entry,) = sandbox.outbox.entries(provider="sendgrid")
    assert result.provider_message_id == entry.provider_id
    assert entry.recipient == "ana@example.com"
    assert entry.request["headers"]["List-Unsubscribe"] == EMAIL.headers["List-Unsubscribe"]
    assert entry.request["custom_args"]["notification_id"] == "n-1"


def test_sendgrid_refuses_a_bad_address_permanently(sendgrid: SendGridEmailProvider) -> None:
    result = sendgrid.send(replace(EMAIL, to="not-an-address"))
    assert isinstance(result, PermanentFailure)
    assert result.code == "400"
    assert "valid address" in result.reason


@pytest.mark.parametrize("status", [429, 500, 503])
def test_sendgrid_throttling_and_outages_are_retried(
    sandbox: SandboxHost, sendgrid: SendGridEmailProvider, status: int
) -> None:
    with sandbox.fault("sendgrid", status=status, count=1):
        result = sendgrid.send(EMAIL)
    assert isinstance(result, RetryLater)
    assert result.code == str(status)
    assert sandbox.outbox.entries(provider="sendgrid") == []
    assert isinstance(sendgrid.send(EMAIL), Accepted)  # the fault was consumed


def test_sendgrid_with_a_wrong_key_is_retried_as_an_auth_problem(sandbox: SandboxHost) -> None:
    secret = {**sandbox.credentials.secrets()["sendgrid"], "api_key": "SG.wrong"}
    result = SendGridEmailProvider.from_secret(secret).send(EMAIL)
    assert isinstance(result, RetryLater)
    assert result.code == AUTH


def test_a_sendgrid_read_timeout_is_uncertain_not_retried(sandbox: SandboxHost) -> None:
    provider = SendGridEmailProvider.from_secret(sandbox.credentials.secrets()["sendgrid"], timeout=0.3)
    with sandbox.fault("sendgrid", latency_ms=1500, count=1):
        result = provider.send(EMAIL)
    assert isinstance(result, Uncertain)  # SendGrid may have it: decision 007
    assert result.code == POSSIBLY_RECEIVED


# -- FCM ---------------------------------------------------------------------------------------


@pytest.fixture
def fcm(sandbox: SandboxHost) -> Iterator[FcmPushProvider]:
    provider = FcmPushProvider.from_secret(sandbox.credentials.secrets()["fcm"], timeout=5)
    yield provider
    provider.close()


def test_fcm_sends_one_message_per_token(sandbox: SandboxHost, fcm: FcmPushProvider) -> None:
    results = fcm.send(PUSH, ["tok-a", "tok-b"])
    assert [type(r) for r in results] == [Accepted, Accepted]
    entries = sandbox.outbox.entries(provider="fcm")
    assert sorted(e.recipient for e in entries) == ["tok-a", "tok-b"]
    message = entries[0].request["message"]
    assert message["data"] == {"notification_id": "n-1", "type": "payment_receipt"}
    assert message["android"]["notification"]["channel_id"] == "payments"
    assert message["apns"]["headers"]["apns-priority"] == "10"
    assert {r.provider_message_id for r in results} == {e.provider_id for e in entries}


def test_fcm_unregistered_and_invalid_tokens_are_dead(sandbox: SandboxHost, fcm: FcmPushProvider) -> None:
    sandbox.fcm.mark_unregistered("tok-gone")
    gone, invalid, fine = fcm.send(PUSH, ["tok-gone", "invalid-token", "tok-ok"])
    for result, token in ((gone, "tok-gone"), (invalid, "invalid-token")):
        assert isinstance(result, PermanentFailure)
        assert result.code == DEAD_TOKEN
        assert result.effects.dead_tokens == (token,)
    assert isinstance(fine, Accepted)


def test_fcm_an_invalid_payload_is_permanent_and_keeps_the_token(fcm: FcmPushProvider) -> None:
    (result,) = fcm.send(replace(PUSH, data={"from": "x"}), ["tok-a"])
    assert isinstance(result, PermanentFailure)
    assert result.code == "INVALID_ARGUMENT"
    assert result.effects.dead_tokens == ()


def test_fcm_quota_exceeded_is_retried(sandbox: SandboxHost, fcm: FcmPushProvider) -> None:
    with sandbox.fault("fcm", status=429, count=1):
        (result,) = fcm.send(PUSH, ["tok-a"])
    assert isinstance(result, RetryLater)
    assert result.code == "QUOTA_EXCEEDED"


def test_fcm_unavailable_is_retried_after_the_sdks_own_retries(
    sandbox: SandboxHost, fcm: FcmPushProvider
) -> None:
    with sandbox.fault("fcm", status=503):  # firebase-admin itself retries 503 four times
        (result,) = fcm.send(PUSH, ["tok-a"])
    assert isinstance(result, RetryLater)
    assert result.code == "UNAVAILABLE"
    assert sandbox.outbox.entries(provider="fcm") == []


def test_fcm_oauth_outage_is_retried_for_every_token(sandbox: SandboxHost) -> None:
    provider = FcmPushProvider.from_secret(sandbox.credentials.secrets()["fcm"], timeout=5)
    try:
        with sandbox.fault("oauth", status=400):
            results = provider.send(PUSH, ["tok-a", "tok-b"])
    finally:
        provider.close()
    assert all(isinstance(r, RetryLater) for r in results)
    assert len(results) == 2


# -- Twilio ------------------------------------------------------------------------------------


@pytest.fixture
def twilio(sandbox: SandboxHost) -> TwilioSmsProvider:
    return TwilioSmsProvider.from_secret(sandbox.credentials.secrets()["twilio"], timeout=5)


def test_twilio_sends_through_the_messaging_service_with_a_status_callback(
    sandbox: SandboxHost, twilio: TwilioSmsProvider
) -> None:
    callback = "https://api.example.com/v1/webhooks/twilio"
    result = twilio.send(OutgoingSms(to=PHONE, body="Your code", status_callback=callback))
    assert isinstance(result, Accepted)
    sent = sandbox.twilio.message(result.provider_message_id or "")
    assert sent is not None
    assert (sent.to, sent.body, sent.status_callback) == (PHONE, "Your code", callback)
    assert sent.messaging_service_sid == sandbox.credentials.twilio.messaging_service_sid


def test_twilio_sends_from_a_number_without_a_messaging_service(sandbox: SandboxHost) -> None:
    secret = {**sandbox.credentials.secrets()["twilio"], "messaging_service_sid": ""}
    result = TwilioSmsProvider.from_secret(secret).send(OutgoingSms(to=PHONE, body="hi"))
    assert isinstance(result, Accepted)
    sent = sandbox.twilio.message(result.provider_message_id or "")
    assert sent is not None
    assert sent.from_ == sandbox.credentials.twilio.from_number


def test_twilio_21610_opts_the_phone_out(sandbox: SandboxHost, twilio: TwilioSmsProvider) -> None:
    sandbox.twilio.mark_opted_out(PHONE)
    result = twilio.send(OutgoingSms(to=PHONE, body="hi"))
    assert isinstance(result, PermanentFailure)
    assert result.code == "21610"
    assert result.effects.opt_out_phone == PHONE


def test_twilio_21211_invalid_number_is_permanent(twilio: TwilioSmsProvider) -> None:
    result = twilio.send(OutgoingSms(to="12345", body="hi"))
    assert isinstance(result, PermanentFailure)
    assert result.code == "21211"
    assert not result.effects


@pytest.mark.parametrize("status", [429, 500, 503])
def test_twilio_throttling_and_outages_are_retried(
    sandbox: SandboxHost, twilio: TwilioSmsProvider, status: int
) -> None:
    with sandbox.fault("twilio", status=status, count=1):
        result = twilio.send(OutgoingSms(to=PHONE, body="hi"))
    assert isinstance(result, RetryLater)
    assert sandbox.outbox.entries(provider="twilio") == []


def test_twilio_refused_credentials_are_retried(sandbox: SandboxHost) -> None:
    secret = {**sandbox.credentials.secrets()["twilio"], "auth_token": "wrong"}
    result = TwilioSmsProvider.from_secret(secret).send(OutgoingSms(to=PHONE, body="hi"))
    assert isinstance(result, RetryLater)
    assert result.code == AUTH


# -- Pusher ------------------------------------------------------------------------------------


@pytest.fixture
def pusher(sandbox: SandboxHost) -> PusherRealtimeProvider:
    return PusherRealtimeProvider.from_secret(sandbox.credentials.secrets()["pusher"])


EVENT = RealtimeEvent("private-user-42", "notification", {"notification_id": "n-1", "title": "Hi"})


def test_pusher_triggers_on_an_occupied_channel(sandbox: SandboxHost, pusher: PusherRealtimeProvider) -> None:
    sandbox.pusher.occupy("private-user-42")
    result = pusher.publish(EVENT)
    assert isinstance(result, Accepted)
    (entry,) = sandbox.outbox.entries(provider="pusher")
    assert (entry.recipient, entry.subject) == ("private-user-42", "notification")
    assert entry.extra["delivered_to_subscribers"] is True


def test_pusher_publish_is_one_request_the_trigger(
    sandbox: SandboxHost, pusher: PusherRealtimeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an occupied channel WHEN an event is published
    sandbox.pusher.occupy("private-user-42")
    with pusher_requests(monkeypatch) as sent:
        result = pusher.publish(EVENT)
    # THEN the SDK sent one request, the trigger (occupancy is Herald's presence table's business)
    assert isinstance(result, Accepted)
    ((method, path),) = sent
    assert method == "POST" and path.endswith("/events")


@pytest.mark.parametrize("status", [429, 500, 503])
def test_pusher_throttling_and_outages_are_retried(
    sandbox: SandboxHost, pusher: PusherRealtimeProvider, status: int
) -> None:
    sandbox.pusher.occupy("private-user-42")
    with sandbox.fault("pusher", status=status, count=1):
        result = pusher.publish(EVENT)
    assert isinstance(result, RetryLater)
    assert result.code == str(status)


def test_pusher_refused_signature_is_retried(sandbox: SandboxHost) -> None:
    secret = {**sandbox.credentials.secrets()["pusher"], "secret": "wrong"}
    result = PusherRealtimeProvider.from_secret(secret).publish(EVENT)
    assert isinstance(result, RetryLater)
    assert result.code == AUTH


# -- Webhooks ----------------------------------------------------------------------------------


def a_delivery(sandbox: SandboxHost, receiver: str = "default", secret: str | None = None) -> WebhookDelivery:
    return WebhookDelivery(
        url=f"{sandbox.url}/receivers/{receiver}",
        body=b'{"id":"n-1","type":"order_webhook","data":{"order_id":"999"}}',
        secret=secret if secret is not None else sandbox.receivers.secret(receiver),
        idempotency_key="n-1",
        event_type="order_webhook",
    )


def test_the_receiver_verifies_the_signature_and_accepts(sandbox: SandboxHost) -> None:
    result = UrllibWebhookTransport(timeout=2, allow_loopback=True).post(a_delivery(sandbox))
    assert isinstance(result, Accepted)
    (entry,) = sandbox.outbox.entries(provider="webhook")
    assert (entry.recipient, entry.provider_id) == ("default", "n-1")


@pytest.mark.parametrize(
    ("receiver", "secret", "code"),
    [("default", "whsec_wrong", "401"), ("nobody", "whsec_any", "404")],
)
def test_receiver_refusals_are_permanent(sandbox: SandboxHost, receiver: str, secret: str, code: str) -> None:
    result = UrllibWebhookTransport(timeout=2, allow_loopback=True).post(
        a_delivery(sandbox, receiver, secret)
    )
    assert isinstance(result, PermanentFailure)
    assert result.code == code


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_receiver_timeouts_throttling_and_5xx_are_retried(sandbox: SandboxHost, status: int) -> None:
    with sandbox.fault("webhook", status=status, count=1):
        result = UrllibWebhookTransport(timeout=2, allow_loopback=True).post(a_delivery(sandbox))
    assert isinstance(result, RetryLater)
    assert result.code == str(status)


def test_a_slow_receiver_times_out_and_is_retried(sandbox: SandboxHost) -> None:
    with sandbox.fault("webhook", latency_ms=1500, count=1):
        result = UrllibWebhookTransport(timeout=0.3, allow_loopback=True).post(a_delivery(sandbox))
    assert isinstance(result, RetryLater)
    assert result.code == TRANSPORT


def test_an_unreachable_receiver_is_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    delivery = WebhookDelivery(f"http://127.0.0.1:{port}/hook", b"{}", "s", "n-1", "order_webhook")
    result = UrllibWebhookTransport(timeout=1, allow_loopback=True).post(delivery)
    assert isinstance(result, RetryLater)
    assert result.code == TRANSPORT


class _Capture(http.server.BaseHTTPRequestHandler):
    captured: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.captured.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_request_verifies_with_the_published_helper() -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Capture.captured.clear()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        delivery = WebhookDelivery(url, b'{"id":"n-9"}', "subscriber-secret", "n-9", "order_webhook")
        result = UrllibWebhookTransport(timeout=2, allow_loopback=True).post(delivery)
    finally:
        server.shutdown()
        server.server_close()
    assert isinstance(result, Accepted)
    ((headers, body),) = _Capture.captured
    assert body == b'{"id":"n-9"}'
    assert verify("subscriber-secret", headers, body)
    assert not verify("another-secret", headers, body)
    assert headers[IDEMPOTENCY_HEADER] == "n-9"
    assert headers["Content-Type"] == "application/json"
