"""At most one effect per (notification, channel), retry-later through SQS visibility backoff up to
the DLQ, permanent failures recorded once, every attempt on the delivery log; through the real
email sender (SendGrid sandbox as provider) on moto's SQS and DynamoDB."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.channels.context import DeliveryContext, Skip
from herald.channels.result import SendResult
from herald.channels.sender import ChannelSender
from herald.channels.settings import EmailSenderSettings
from herald.channels.wiring import sender_for, stores_for
from herald.models import Channel
from herald.settings import load
from herald.stores.dynamo import to_attributes
from tests.integration.channels.conftest import Env, a_message, a_profile, handle

pytestmark = pytest.mark.integration


@pytest.fixture
def sendgrid_env(env: Env, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.setenv("EMAIL_PROVIDER", "sendgrid")
    return env


def sendgrid_entries(env: Env) -> list[Any]:
    return env.sandbox.outbox.entries(provider="sendgrid")


def set_delivery(env: Env, message: Any, delivery: dict[str, Any]) -> None:
    env.client("dynamodb").update_item(
        TableName=env.stack.tables["NotificationsTable"],
        Key=to_attributes({"user_id": message.user_id, "notification_id": message.notification_id}),
        UpdateExpression="SET deliveries.#ch = :d",
        ExpressionAttributeNames={"#ch": message.channel.value},
        ExpressionAttributeValues=to_attributes({":d": delivery}),
    )


def test_a_redelivered_message_never_sends_twice(sendgrid_env: Env) -> None:
    env = sendgrid_env
    app = env.app("email_sender")
    message = a_message(Channel.EMAIL, to="ana@example.com")
    env.create_record(message)
    env.enqueue("Email", message.queue_body())
    event = env.receive_event("Email")
    assert handle(env, app, event) == {"batchItemFailures": []}
    assert handle(env, app, event) == {"batchItemFailures": []}  # SQS delivered it again
    env.enqueue("Email", message.queue_body())  # and the router sent it twice
    assert handle(env, app, env.receive_event("Email")) == {"batchItemFailures": []}
    assert len(sendgrid_entries(env)) == 1
    record = env.record(message)
    assert record["deliveries"]["email"]["state"] == "sent"
    assert [e["outcome"] for e in record["delivery_log"]] == ["sent"]


def test_two_records_of_one_batch_for_the_same_channel_send_once(sendgrid_env: Env) -> None:
    env = sendgrid_env
    message = a_message(Channel.EMAIL, to="ana@example.com")
    env.create_record(message)
    env.enqueue("Email", message.queue_body(), message.queue_body())
    assert handle(env, env.app("email_sender"), env.receive_event("Email", expected=2)) == {
        "batchItemFailures": []
    }
    assert len(sendgrid_entries(env)) == 1


def test_retry_later_backs_off_through_sqs_then_succeeds(sendgrid_env: Env) -> None:
    env = sendgrid_env
    app = env.app("email_sender")
    message = a_message(Channel.EMAIL, to="ana@example.com")
    env.create_record(message)
    env.enqueue("Email", message.queue_body())
    event = env.receive_event("Email")
    with env.sandbox.fault("sendgrid", status=503, count=1):
        result = handle(env, app, event)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert env.record(message)["deliveries"]["email"]["state"] == "retry"
    assert env.visible("Email") == 0  # hidden for the backoff (RETRY_MAX_SECONDS=1), not the queue's 60 s
    time.sleep(1.5)
    again = env.receive_event("Email")
    assert again["Records"][0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert handle(env, app, again) == {"batchItemFailures": []}
    assert len(sendgrid_entries(env)) == 1
    record = env.record(message)
    assert record["deliveries"]["email"]["state"] == "sent"
    log = record["delivery_log"]
    assert [(e["outcome"], e["attempt"]) for e in log] == [("retry", 1), ("sent", 2)]
    assert log[0]["code"] == "503"
    assert all(e["channel"] == "email" and e["provider"] == "sendgrid" and e["at"] for e in log)


def test_past_the_outage_tolerance_the_message_goes_to_the_dlq_with_the_reason(
    sendgrid_env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = sendgrid_env
    monkeypatch.setenv("PROVIDER_OUTAGE_TOLERANCE_SECONDS", "3")  # decision 010: a budget in time
    app = env.app("email_sender")
    message = a_message(Channel.EMAIL, to="ana@example.com")
    env.create_record(message)
    env.enqueue("Email", message.queue_body())
    sqs = env.client("sqs")
    started = time.monotonic()
    with env.sandbox.fault("sendgrid", status=503):
        for receive in range(1, 10):
            event = env.receive_event("Email")
            assert event["Records"][0]["attributes"]["ApproximateReceiveCount"] == str(receive)
            if handle(env, app, event)["batchItemFailures"] == []:
                break  # dead-lettered: the record succeeded
            assert time.monotonic() - started < 3 + 1  # retried while within the tolerance
            time.sleep(1.2)
        assert time.monotonic() - started >= 3, "dead-lettered before the tolerance was spent"
        assert sqs.receive_message(QueueUrl=env.stack.queue_urls["Email"]).get("Messages", []) == []
    dead = sqs.receive_message(QueueUrl=env.stack.dlq_urls["Email"], MessageAttributeNames=["All"])[
        "Messages"
    ]
    assert [json.loads(m["Body"])["notification_id"] for m in dead] == ["ntf-1"]
    reason = dead[0]["MessageAttributes"]["herald_dead_letter_reason"]["StringValue"]
    assert "past the outage tolerance of 3 s" in reason and "503" in reason
    assert sendgrid_entries(env) == []
    record = env.record(message)
    outcomes = [e["outcome"] for e in record["delivery_log"]]
    assert outcomes == ["retry"] * receive + ["dead_lettered"]
    assert record["deliveries"]["email"]["state"] == "retry"  # a redriven copy may claim it...
    assert "failing_since" not in record["deliveries"]["email"]  # ...with a fresh budget


def test_a_permanent_failure_is_recorded_and_not_retried(sendgrid_env: Env) -> None:
    env = sendgrid_env
    message = a_message(Channel.EMAIL, to="not-an-address")
    env.create_record(message)
    env.enqueue("Email", message.queue_body())
    assert handle(env, env.app("email_sender"), env.receive_event("Email")) == {"batchItemFailures": []}
    record = env.record(message)
    assert (record["deliveries"]["email"]["state"], record["deliveries"]["email"]["code"]) == (
        "failed",
        "400",
    )
    assert [e["outcome"] for e in record["delivery_log"]] == ["failed"]
    env.enqueue("Email", message.queue_body())  # a duplicate of a failed channel is a no-op
    handle(env, env.app("email_sender"), env.receive_event("Email"))
    assert len(env.record(message)["delivery_log"]) == 1


def test_a_stale_claim_is_recorded_uncertain_and_not_resent(
    sendgrid_env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env = sendgrid_env
    message = a_message(Channel.EMAIL, to="ana@example.com")
    env.create_record(message)
    set_delivery(env, message, {"state": "sending", "claim_id": "crashed", "claim_expires_at": 1})
    env.enqueue("Email", message.queue_body())
    assert handle(env, env.app("email_sender"), env.receive_event("Email")) == {"batchItemFailures": []}
    assert sendgrid_entries(env) == []
    record = env.record(message)
    assert record["deliveries"]["email"]["state"] == "uncertain"
    assert [e["outcome"] for e in record["delivery_log"]] == ["uncertain"]
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(m.get("channel") == "email" and "DeliveryUncertain" in m for m in metrics), (
        "DeliveryUncertain with the channel dimension"
    )


def test_a_claim_held_by_another_invocation_is_retried_after_it_expires(sendgrid_env: Env) -> None:
    env = sendgrid_env
    message = a_message(Channel.EMAIL, to="ana@example.com")
    env.create_record(message)
    expires = int(time.time()) + 2
    set_delivery(env, message, {"state": "sending", "claim_id": "busy", "claim_expires_at": expires})
    env.enqueue("Email", message.queue_body())
    event = env.receive_event("Email")
    assert len(handle(env, env.app("email_sender"), event)["batchItemFailures"]) == 1
    assert sendgrid_entries(env) == []
    assert env.record(message)["deliveries"]["email"]["claim_id"] == "busy"  # untouched
    assert env.visible("Email") == 0


def test_a_stale_webhook_claim_is_resent_and_the_receiver_deduplicates(env: Env) -> None:
    env.add_webhook_secret("orders", env.sandbox.receivers.secret("orders"))
    env.put_profile(
        a_profile(webhook={"url": f"{env.sandbox.url}/receivers/orders", "secret_name": "orders"})
    )
    message = a_message(
        Channel.WEBHOOK,
        type="order_webhook",
        urgency="system",
        category="system",
        data={"order_id": "999", "status": "shipped"},
    )
    env.create_record(message)
    app = env.app("webhook_sender")
    env.enqueue("Webhook", message.queue_body())
    assert handle(env, app, env.receive_event("Webhook")) == {"batchItemFailures": []}
    # as if that invocation had crashed after the POST, before recording it
    set_delivery(env, message, {"state": "sending", "claim_id": "crashed", "claim_expires_at": 1})
    env.enqueue("Webhook", message.queue_body())
    assert handle(env, app, env.receive_event("Webhook")) == {"batchItemFailures": []}
    assert env.sandbox.receivers.stats()["orders"] == {"accepted": 1, "duplicates": 1, "rejected": 0}
    record = env.record(message)
    assert record["deliveries"]["webhook"]["state"] == "sent"
    assert [e["outcome"] for e in record["delivery_log"]] == ["sent", "sent"]


def test_a_message_without_a_record_creates_it(sendgrid_env: Env) -> None:
    env = sendgrid_env
    message = a_message(Channel.EMAIL, to="ana@example.com", notification_id="ntf-no-record")
    env.enqueue("Email", message.queue_body())
    assert handle(env, env.app("email_sender"), env.receive_event("Email")) == {"batchItemFailures": []}
    record = env.record(message)
    assert record["deliveries"]["email"]["state"] == "sent"
    assert (record["type"], record["event_id"], record["status"]) == (
        "payment_receipt",
        "evt-1",
        "created_by_sender",
    )
    assert record["created_at"] and record["expires_at"] > time.time()
    assert len(sendgrid_entries(env)) == 1


def test_a_message_for_later_is_hidden_until_then_without_a_claim(sendgrid_env: Env) -> None:
    env = sendgrid_env
    message = a_message(
        Channel.EMAIL, to="ana@example.com", not_before=datetime.now(UTC) + timedelta(seconds=30)
    )
    env.create_record(message)
    env.enqueue("Email", message.queue_body())
    assert len(handle(env, env.app("email_sender"), env.receive_event("Email"))["batchItemFailures"]) == 1
    assert env.record(message)["deliveries"] == {}
    assert sendgrid_entries(env) == []


def test_a_body_that_can_never_succeed_goes_to_the_dlq_at_once(sendgrid_env: Env) -> None:
    env = sendgrid_env
    env.enqueue("Email", json.dumps({"not": "a channel message"}))
    env.enqueue("Email", a_message(Channel.PUSH).queue_body())  # a push message on the email queue
    result = handle(env, env.app("email_sender"), env.receive_event("Email", expected=2))
    assert result == {"batchItemFailures": []}  # not retried: rejected
    dead = env.client("sqs").receive_message(
        QueueUrl=env.stack.dlq_urls["Email"], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    reasons = sorted(m["MessageAttributes"]["herald_rejection_reason"]["StringValue"] for m in dead)
    assert len(reasons) == 2
    assert reasons[0].startswith("a push message on the email queue")
    assert reasons[1].startswith("invalid event")
    assert sendgrid_entries(env) == []


class Exploding:
    channel = Channel.EMAIL
    resend_stale_claims = False

    def deliver(self, context: DeliveryContext) -> SendResult | Skip:
        raise RuntimeError("a bug before any provider call")


def test_an_unexpected_error_releases_the_claim_for_a_retry(sendgrid_env: Env) -> None:
    env = sendgrid_env
    settings = load(EmailSenderSettings)
    sender: ChannelSender = sender_for(
        Exploding(), settings, stores_for(settings, env.client("dynamodb")), sqs=env.client("sqs")
    )
    message = a_message(Channel.EMAIL, to="ana@example.com")
    env.create_record(message)
    with pytest.raises(RuntimeError):
        sender.process(message)
    record = env.record(message)
    assert record["deliveries"]["email"]["state"] == "retry"
    assert record["delivery_log"][0]["outcome"] == "error"
    assert "RuntimeError" in record["delivery_log"][0]["detail"]
    # a crash is no provider answer: it starts no retry run (spends none of the outage budget)
    assert "failing_since" not in record["deliveries"]["email"]


def test_no_send_starts_when_the_invocation_deadline_is_too_near(
    sendgrid_env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = sendgrid_env
    app = env.app("email_sender")
    message = a_message(Channel.EMAIL, to="ana@example.com")
    env.create_record(message)
    env.enqueue("Email", message.queue_body())
    event = env.receive_event("Email")
    monkeypatch.setattr(env.context, "get_remaining_time_in_millis", lambda: 5_000)

    response = handle(env, app, event)

    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert sendgrid_entries(env) == []
    assert "email" not in env.record(message).get("deliveries", {})  # not claimed: nothing uncertain
