"""Issue 7 item 2, decision 007: a timeout never sends twice.

Each provider answers after the client's timeout (the sandbox's `latency_ms`; for SES, whose
AWS is moto and has no latency, a loopback server that answers SendEmail late). Through the real
sender functions: at most one delivery reaches the provider's outbox (no retry inside the SDK, no
retry by Herald), the channel is recorded `uncertain` with a delivery-log entry, the
`DeliveryUncertain` metric is emitted, the message is not retried, and a redelivery of it sends
nothing. A refused connection still retries; email fails over only when the first provider
provably did not take the message.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from moto.ses.models import ses_backends

from herald.channels.context import DeliveryContext, Skip
from herald.channels.fcm import FcmPushProvider
from herald.channels.ports import OutgoingEmail, OutgoingSms, PushNotification, RealtimeEvent
from herald.channels.pusher_realtime import PusherRealtimeProvider
from herald.channels.result import TRANSPORT, RetryLater, SendResult
from herald.channels.sender import ChannelSender
from herald.channels.sendgrid_email import SendGridEmailProvider
from herald.channels.ses import SesEmailProvider, send_client
from herald.channels.settings import EmailSenderSettings
from herald.channels.transport import request_may_leave
from herald.channels.twilio_sms import TwilioSmsProvider
from herald.channels.wiring import sender_for, stores_for
from herald.messages import ChannelMessage
from herald.models import Category, Channel, Urgency
from herald.settings import load
from local.sandboxes import SandboxHost
from tests.integration.channels.conftest import ACCOUNT, REGION, Env, a_message, handle
from tests.integration.channels.presence import set_presence

pytestmark = pytest.mark.integration

CLIENT_TIMEOUT = 0.25  # seconds: PROVIDER_TIMEOUT_SECONDS for these tests
LATENCY_MS = 700  # the provider answers well after the client gave up
PHONE = "+14155550100"


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def impatient(env: Env, monkeypatch: pytest.MonkeyPatch) -> Env:
    """The sender functions with sub-second provider timeouts."""
    monkeypatch.setenv("PROVIDER_TIMEOUT_SECONDS", str(CLIENT_TIMEOUT))
    return env


def metric_emitted(output: str, name: str, channel: str) -> bool:
    """`name` with the `channel` dimension in the EMF lines powertools printed."""
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                dimensioned = any("channel" in dims for dims in directive["Dimensions"])
                if metric["Name"] == name and dimensioned and blob.get("channel") == channel:
                    return True
    return False


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again: nothing listens there


class SlowSes:
    """A loopback SES v2 endpoint that keeps every SendEmail request and answers it late."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.answered = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append({"path": self.path, "body": json.loads(body or b"{}")})
                time.sleep(outer.delay)
                answer = json.dumps({"MessageId": f"ses-{uuid.uuid4().hex}"}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the client gave up before the answer
                finally:
                    outer.answered.set()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SlowSes:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def slow_ses(impatient: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowSes]:
    """SES answering after the client's read timeout; the email sender's sesv2 client aims at it."""
    with SlowSes(delay=LATENCY_MS / 1000) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", server.url)
        yield server


@dataclass(frozen=True)
class Case:
    """One channel's sender with its provider answering too late."""

    queue: str
    app: str
    provider: str
    message: Callable[[], ChannelMessage]
    prepare: Callable[[Env], None] = lambda env: None
    fault: tuple[tuple[str, Any], ...] = ()


def sms() -> ChannelMessage:
    return a_message(
        Channel.SMS,
        type="security_alert",
        urgency=Urgency.CRITICAL,
        category=Category.SECURITY,
        to=PHONE,
        data={
            "action": "New sign-in",
            "device": "Firefox",
            "ip_address": "203.0.113.7",
            "location": "Lisbon",
            "review_url": "https://app.example.com/security",
        },
    )


CASES = {
    "sms": Case("Sms", "sms_sender", "twilio", sms),
    "push": Case("Push", "push_sender", "fcm", lambda: a_message(Channel.PUSH, device_tokens=["tok-42"])),
    "realtime": Case(
        "Realtime",
        "realtime_sender",
        "pusher",
        lambda: a_message(Channel.REALTIME),
        prepare=lambda env: set_presence(env, "42", occupied=True),
        fault=(("match", "/events"),),  # the trigger, the one Pusher request
    ),
    "email": Case(
        "Email", "email_sender", "sendgrid", lambda: a_message(Channel.EMAIL, to="ana@example.com")
    ),
}


def send_once(env: Env, queue: str, app: Any, message: ChannelMessage) -> dict[str, Any]:
    env.enqueue(queue, message.queue_body())
    return handle(env, app, env.receive_event(queue))


def assert_recorded_uncertain(env: Env, message: ChannelMessage, provider: str) -> dict[str, Any]:
    record = env.record(message)
    delivery = record["deliveries"][message.channel.value]
    assert (delivery["state"], delivery["provider"]) == ("uncertain", provider)
    (entry,) = record["delivery_log"]
    assert (entry["outcome"], entry["provider"]) == ("uncertain", provider)
    assert "may have" in entry["detail"]
    return record


# -- a provider answering after the timeout: one delivery at most, recorded uncertain -----------


@pytest.mark.parametrize("name", list(CASES))
def test_a_provider_answering_after_the_timeout_gets_the_message_at_most_once(
    impatient: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    env, case = impatient, CASES[name]
    if name == "email":
        monkeypatch.setenv("EMAIL_PROVIDER", "sendgrid")
    case.prepare(env)
    message = case.message()
    env.create_record(message)
    app = env.app(case.app)

    # GIVEN the provider answers every request after the client's timeout
    with env.sandbox.fault(case.provider, latency_ms=LATENCY_MS, **dict(case.fault)):
        # WHEN the sender sends the message
        result = send_once(env, case.queue, app, message)
        # (the provider handles the request once its latency is over; any resend would land later)
        env.sandbox.outbox.wait_for(1, provider=case.provider, timeout=5)
        time.sleep(CLIENT_TIMEOUT + LATENCY_MS / 1000)

    # THEN the message is not retried, the provider got it once, and the channel is uncertain
    assert result == {"batchItemFailures": []}
    assert len(env.sandbox.outbox.entries(provider=case.provider)) == 1
    assert_recorded_uncertain(env, message, case.provider)
    assert metric_emitted(capsys.readouterr().out, "DeliveryUncertain", message.channel.value)

    # WHEN SQS (or the router) delivers the same message again, THEN nothing more is sent
    assert send_once(env, case.queue, app, message) == {"batchItemFailures": []}
    assert len(env.sandbox.outbox.entries(provider=case.provider)) == 1
    assert len(env.record(message)["delivery_log"]) == 1


def test_ses_answering_after_the_timeout_gets_the_email_at_most_once(
    impatient: Env, slow_ses: SlowSes, capsys: pytest.CaptureFixture[str]
) -> None:
    env = impatient
    message = a_message(Channel.EMAIL, to="ana@example.com")
    env.create_record(message)
    app = env.app("email_sender")

    result = send_once(env, "Email", app, message)
    assert slow_ses.answered.wait(5)
    time.sleep(CLIENT_TIMEOUT + slow_ses.delay)  # botocore's own retry would have landed by now

    assert result == {"batchItemFailures": []}
    assert len(slow_ses.requests) == 1
    assert slow_ses.requests[0]["body"]["Destination"] == {"ToAddresses": ["ana@example.com"]}
    assert_recorded_uncertain(env, message, "ses")
    assert metric_emitted(capsys.readouterr().out, "DeliveryUncertain", "email")

    assert send_once(env, "Email", app, message) == {"batchItemFailures": []}
    assert len(slow_ses.requests) == 1


def test_a_push_to_several_devices_is_sent_when_one_accepts_and_the_uncertain_one_is_never_resent(
    impatient: Env,
) -> None:
    env = impatient
    message = a_message(Channel.PUSH, device_tokens=["tok-fast", "tok-slow"])
    env.create_record(message)
    app = env.app("push_sender")

    with env.sandbox.fault("fcm", latency_ms=LATENCY_MS, match="tok-slow"):
        assert send_once(env, "Push", app, message) == {"batchItemFailures": []}
        env.sandbox.outbox.wait_for(2, provider="fcm", timeout=5)
        time.sleep(CLIENT_TIMEOUT + LATENCY_MS / 1000)

    assert sorted(e.recipient for e in env.sandbox.outbox.entries(provider="fcm")) == ["tok-fast", "tok-slow"]
    record = env.record(message)
    assert record["deliveries"]["push"]["state"] == "sent"
    (entry,) = record["delivery_log"]
    assert "1 of 2 device(s) accepted, 1 uncertain" in entry["detail"]

    assert send_once(env, "Push", app, message) == {"batchItemFailures": []}
    assert len(env.sandbox.outbox.entries(provider="fcm")) == 2


# -- email failover only after a proven non-delivery ------------------------------------------


def sent_by_moto_ses() -> list[Any]:
    return list(ses_backends[ACCOUNT][REGION].sent_messages)


def test_no_failover_to_ses_after_a_sendgrid_read_timeout(
    impatient: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = impatient
    monkeypatch.setenv("EMAIL_PROVIDER", "sendgrid")
    monkeypatch.setenv("EMAIL_FAILOVER", "true")
    message = a_message(Channel.EMAIL, to="ana@example.com")
    env.create_record(message)

    with env.sandbox.fault("sendgrid", latency_ms=LATENCY_MS):
        assert send_once(env, "Email", env.app("email_sender"), message) == {"batchItemFailures": []}
        env.sandbox.outbox.wait_for(1, provider="sendgrid", timeout=5)

    assert sent_by_moto_ses() == []  # SendGrid may have it: a copy through SES would be a duplicate
    assert_recorded_uncertain(env, message, "sendgrid")


def test_no_failover_to_sendgrid_after_an_ses_read_timeout(
    impatient: Env, slow_ses: SlowSes, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = impatient
    monkeypatch.setenv("EMAIL_FAILOVER", "true")
    message = a_message(Channel.EMAIL, to="ana@example.com")
    env.create_record(message)

    assert send_once(env, "Email", env.app("email_sender"), message) == {"batchItemFailures": []}

    assert len(slow_ses.requests) == 1
    assert env.sandbox.outbox.entries(provider="sendgrid") == []
    assert_recorded_uncertain(env, message, "ses")


def test_ses_refusing_the_connection_fails_over_to_sendgrid(
    impatient: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = impatient
    monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("EMAIL_FAILOVER", "true")
    message = a_message(Channel.EMAIL, to="ana@example.com")
    env.create_record(message)

    assert send_once(env, "Email", env.app("email_sender"), message) == {"batchItemFailures": []}

    (entry,) = env.sandbox.outbox.entries(provider="sendgrid")
    assert entry.recipient == "ana@example.com"
    delivery = env.record(message)["deliveries"]["email"]
    assert (delivery["state"], delivery["provider"]) == ("sent", "sendgrid")


# -- a refused connection proves nothing left: still retried ---------------------------------


def test_a_refused_connection_is_still_retried_later(impatient: Env) -> None:
    env = impatient
    secret = {**env.sandbox.credentials.secrets()["twilio"], "api_base": f"http://127.0.0.1:{closed_port()}"}
    env.client("secretsmanager").put_secret_value(
        SecretId=env.secret_arns["twilio"], SecretString=json.dumps(secret)
    )
    message = sms()
    env.create_record(message)

    result = send_once(env, "Sms", env.app("sms_sender"), message)

    assert len(result["batchItemFailures"]) == 1
    record = env.record(message)
    assert record["deliveries"]["sms"]["state"] == "retry"
    assert [(e["outcome"], e["code"]) for e in record["delivery_log"]] == [("retry", TRANSPORT)]


EMAIL = OutgoingEmail(sender="notifications@example.com", to="ana@example.com", subject="Hi", text="Hi")
PUSH = PushNotification(
    title="Hi",
    body="Hi",
    data={"notification_id": "n-1"},
    android_channel="payments",
    android_priority="high",
    apns_priority=10,
)


def refused_sendgrid(sandbox: SandboxHost, port: int) -> SendResult:
    secret = {**sandbox.credentials.secrets()["sendgrid"], "host": f"http://127.0.0.1:{port}"}
    return SendGridEmailProvider.from_secret(secret, timeout=1).send(EMAIL)


def refused_twilio(sandbox: SandboxHost, port: int) -> SendResult:
    secret = {**sandbox.credentials.secrets()["twilio"], "api_base": f"http://127.0.0.1:{port}"}
    return TwilioSmsProvider.from_secret(secret, timeout=1).send(OutgoingSms(to=PHONE, body="hi"))


def refused_pusher(sandbox: SandboxHost, port: int) -> SendResult:
    secret = {**sandbox.credentials.secrets()["pusher"], "port": port}
    event = RealtimeEvent("private-user-42", "notification", {"notification_id": "n-1"})
    return PusherRealtimeProvider.from_secret(secret, timeout=1).publish(event)


def refused_fcm(sandbox: SandboxHost, port: int) -> SendResult:
    secret = sandbox.credentials.secrets()["fcm"]  # OAuth answers: only the FCM endpoint refuses
    secret = {**secret, "fcm_url": secret["fcm_url"].replace(str(sandbox.port), str(port))}
    provider = FcmPushProvider.from_secret(secret, timeout=1)
    try:
        (result,) = provider.send(PUSH, ["tok-1"])
    finally:
        provider.close()
    return result


def refused_ses(sandbox: SandboxHost, port: int) -> SendResult:
    client = send_client(timeout=1, endpoint_url=f"http://127.0.0.1:{port}", region_name=REGION)
    return SesEmailProvider(client).send(EMAIL)


@pytest.mark.parametrize(
    "send",
    [refused_sendgrid, refused_twilio, refused_pusher, refused_fcm, refused_ses],
    ids=lambda f: f.__name__,
)
def test_every_adapter_retries_a_refused_connection(
    sandbox: SandboxHost, send: Callable[[SandboxHost, int], SendResult]
) -> None:
    result = send(sandbox, closed_port())
    assert isinstance(result, RetryLater)
    assert result.code == TRANSPORT


# -- the sender's own catch-all ----------------------------------------------------------------


class FailingAfterSending:
    """A deliverer whose adapter raises something unexpected after its request went out."""

    channel = Channel.EMAIL
    resend_stale_claims = False

    def deliver(self, context: DeliveryContext) -> SendResult | Skip:
        request_may_leave("sendgrid")
        raise RuntimeError("the SDK choked on the answer")


def email_sender_with(env: Env, deliverer: Any) -> ChannelSender:
    settings = load(EmailSenderSettings)
    return sender_for(
        deliverer, settings, stores_for(settings, env.client("dynamodb")), sqs=env.client("sqs")
    )


def test_an_unexpected_error_after_the_request_went_out_is_uncertain_not_retried(env: Env) -> None:
    message = a_message(Channel.EMAIL, to="ana@example.com")
    env.create_record(message)

    outcome = email_sender_with(env, FailingAfterSending()).process(message)

    assert outcome.state == "uncertain"
    record = env.record(message)
    assert (record["deliveries"]["email"]["state"], record["deliveries"]["email"]["code"]) == (
        "uncertain",
        "unexpected_error",
    )
    assert "RuntimeError" in record["delivery_log"][0]["detail"]
    assert email_sender_with(env, FailingAfterSending()).process(message).state == "duplicate"


class WebhookFailingAfterSending(FailingAfterSending):
    channel = Channel.WEBHOOK
    resend_stale_claims = True  # receivers deduplicate on Idempotency-Key


def test_a_webhook_failing_after_the_request_went_out_is_retried(env: Env) -> None:
    message = a_message(Channel.WEBHOOK, type="order_webhook", urgency="system", category="system")
    env.create_record(message)
    with pytest.raises(RuntimeError):
        email_sender_with(env, WebhookFailingAfterSending()).process(message)
    assert env.record(message)["deliveries"]["webhook"]["state"] == "retry"
