"""Push, SMS, realtime and webhook senders end to end (moto + sandboxes), and the escalation
primary: an undeliverable push or in-app message fails its task token, so the state machine
(moto, really executing the ASL) sends the email fallback at once."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from herald.delivery import DeliveryLedger
from herald.feedback import Feedback, FeedbackRecorder, ProviderEvent
from herald.messages import ChannelMessage, EscalationInput, EscalationStepInput
from herald.models import Category, Channel, Urgency
from herald.stores.keys import push_address, sms_address
from herald.stores.suppression import SuppressionStore
from herald.stores.users import UserStore
from tests.integration.channels.conftest import Env, a_message, a_profile, handle
from tests.integration.channels.presence import pusher_requests, set_presence
from tests.integration.channels.test_email_sender import sent_by_ses

pytestmark = pytest.mark.integration


def deliver(env: Env, queue: str, app_name: str, message: ChannelMessage, *, record: bool = True) -> dict:
    if record:
        env.create_record(message)
    env.enqueue(queue, message.queue_body())
    return handle(env, env.app(app_name), env.receive_event(queue))


def wait_for_messages(env: Env, queue: str, timeout: float = 15.0) -> list[dict[str, Any]]:
    sqs = env.client("sqs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sqs.receive_message(
            QueueUrl=env.stack.queue_urls[queue], MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"nothing arrived on {queue} within {timeout}s")


def start_escalation(env: Env, primary: ChannelMessage, queue: str) -> str:
    fallback = primary.model_copy(
        update={"channel": Channel.EMAIL, "to": "user42@example.com", "device_tokens": []}
    )
    execution = EscalationInput(
        notification_id=primary.notification_id,
        user_id=primary.user_id,
        first=EscalationStepInput(
            queue_url=env.stack.queue_urls[queue],
            message=primary.model_copy(update={"escalation": True}),
            wait_seconds=300,
        ),
        last=EscalationStepInput(queue_url=env.stack.queue_urls["Email"], message=fallback),
    )
    return env.client("stepfunctions").start_execution(
        stateMachineArn=env.stack.state_machine_arn,
        name=primary.notification_id,
        input=execution.execution_input(),
    )["executionArn"]


def run_primary(env: Env, queue: str, app_name: str, app: Any = None) -> dict:
    """Receive the state machine's task message and hand it to the sender (`app`, else the handler
    module imported fresh), as Lambda would."""
    (message,) = wait_for_messages(env, queue)
    body = json.loads(message["Body"])
    assert body["task_token"] and body["message"]["escalation"] is True
    env.client("sqs").change_message_visibility(
        QueueUrl=env.stack.queue_urls[queue], ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    return handle(env, app or env.app(app_name), env.receive_event(queue))


def execution_status(env: Env, arn: str, wanted: str, timeout: float = 10.0) -> str:
    sfn = env.client("stepfunctions")
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = sfn.describe_execution(executionArn=arn)["status"]
        if status == wanted:
            return status
        time.sleep(0.1)
    return status


# -- push --------------------------------------------------------------------------------------


def test_push_removes_a_dead_token_and_delivers_to_the_others(env: Env) -> None:
    devices = {
        t: {"platform": "android", "registered_at": "2026-01-01T00:00:00Z"} for t in ("tok-a", "tok-b")
    }
    env.put_profile(a_profile(devices=devices))
    env.sandbox.fcm.mark_unregistered("tok-a")
    message = a_message(Channel.PUSH, device_tokens=["tok-a", "tok-b"])
    assert deliver(env, "Push", "push_sender", message) == {"batchItemFailures": []}
    assert [e.recipient for e in env.sandbox.outbox.entries(provider="fcm")] == ["tok-b"]
    profile = env.profile("42")
    assert profile is not None
    assert set(profile.devices) == {"tok-b"}
    assert env.suppressed(push_address("tok-a"))
    delivery = env.record(message)["deliveries"]["push"]
    assert (delivery["state"], delivery["provider"]) == ("sent", "fcm")


def test_push_with_every_token_dead_is_not_delivered(env: Env) -> None:
    env.put_profile(a_profile())
    env.sandbox.fcm.mark_unregistered("tok-42")
    message = a_message(Channel.PUSH, device_tokens=["tok-42"])
    assert deliver(env, "Push", "push_sender", message) == {"batchItemFailures": []}
    assert env.record(message)["deliveries"]["push"]["state"] == "not_delivered"
    assert env.profile("42").devices == {}  # type: ignore[union-attr]
    # the next push to that token is stopped before FCM: it is suppressed now
    again = a_message(Channel.PUSH, notification_id="ntf-2", device_tokens=["tok-42"])
    deliver(env, "Push", "push_sender", again)
    assert env.record(again)["deliveries"]["push"]["code"] == "no_live_tokens"


def test_an_escalation_push_with_no_live_token_sends_the_email_at_once(env: Env) -> None:
    env.put_profile(a_profile())
    env.sandbox.fcm.mark_unregistered("tok-42")
    primary = a_message(Channel.PUSH, device_tokens=["tok-42"])
    env.create_record(primary)
    arn = start_escalation(env, primary, "Push")
    assert run_primary(env, "Push", "push_sender") == {"batchItemFailures": []}
    (email,) = wait_for_messages(env, "Email")
    fallback = ChannelMessage.model_validate_json(email["Body"])
    assert (fallback.channel, fallback.notification_id, fallback.to) == (
        Channel.EMAIL,
        "ntf-1",
        "user42@example.com",
    )
    assert execution_status(env, arn, "SUCCEEDED") == "SUCCEEDED"
    record = env.record(primary)
    assert record["deliveries"]["push"]["state"] == "not_delivered"
    assert "task_token" not in record  # answered: the ack endpoint has nothing to answer


def test_a_delivered_escalation_push_keeps_the_token_for_the_ack(env: Env) -> None:
    env.put_profile(a_profile())
    primary = a_message(Channel.PUSH, device_tokens=["tok-42"])
    env.create_record(primary)
    arn = start_escalation(env, primary, "Push")
    assert run_primary(env, "Push", "push_sender") == {"batchItemFailures": []}
    record = env.record(primary)
    assert record["deliveries"]["push"]["state"] == "sent"
    assert record["task_token"]
    assert env.client("stepfunctions").describe_execution(executionArn=arn)["status"] == "RUNNING"
    assert env.client("sqs").receive_message(QueueUrl=env.stack.queue_urls["Email"]).get("Messages", []) == []
    env.client("stepfunctions").send_task_success(taskToken=record["task_token"], output="{}")  # the ack
    assert execution_status(env, arn, "SUCCEEDED") == "SUCCEEDED"


@pytest.mark.parametrize(
    "preferences",
    [{"channels": {"push": False}}, {"muted_channels": {"transactional": ["push"]}}],
    ids=["push-off", "push-off-for-the-category"],
)
def test_an_escalation_push_to_a_user_who_disabled_push_fails_over(
    env: Env, preferences: dict[str, Any]
) -> None:
    # GIVEN push turned off (for everything, or for this category) while the step waited
    env.put_profile(a_profile(preferences=preferences))
    primary = a_message(Channel.PUSH, device_tokens=["tok-42"])
    assert primary.category == "transactional"
    env.create_record(primary)
    start_escalation(env, primary, "Push")
    run_primary(env, "Push", "push_sender")
    assert wait_for_messages(env, "Email")
    assert env.sandbox.outbox.entries(provider="fcm") == []
    assert env.record(primary)["deliveries"]["push"]["code"] == "push_disabled"


@pytest.mark.parametrize(
    "preferences",
    [{"channels": {"email": False}}, {"muted_channels": {"transactional": ["email"]}}],
    ids=["email-off", "email-off-for-the-category"],
)
def test_a_later_step_on_a_channel_turned_off_while_it_waited_is_not_sent(
    env: Env, preferences: dict[str, Any]
) -> None:
    # GIVEN an escalation's email step, sent after the push step went unacknowledged; meanwhile
    # the person turned email off (for everything, or for this category)
    env.put_profile(a_profile(preferences=preferences))
    step = a_message(Channel.EMAIL, to="user42@example.com", after_escalation=True)

    # WHEN the email sender gets it
    assert deliver(env, "Email", "email_sender", step) == {"batchItemFailures": []}

    # THEN nothing is sent, and the log says why
    assert env.sandbox.outbox.entries(provider="sendgrid") == [] and sent_by_ses() == []
    delivery = env.record(step)["deliveries"]["email"]
    assert (delivery["state"], delivery["code"]) == ("suppressed", "email_disabled")
    assert "disabled by the user" in delivery["reason"]


@pytest.mark.parametrize(
    ("channel", "queue", "app_name", "to", "provider"),
    [
        (Channel.SMS, "Sms", "sms_sender", "+14155550100", "twilio"),
        (Channel.REALTIME, "Realtime", "realtime_sender", None, "pusher"),
    ],
    ids=["sms", "realtime"],
)
def test_an_sms_or_in_app_step_turned_off_for_its_category_while_it_waited_is_not_sent(
    env: Env, channel: Channel, queue: str, app_name: str, to: str | None, provider: str
) -> None:
    # GIVEN an escalation step on this channel; meanwhile the person turned it off for the category
    env.put_profile(a_profile(preferences={"muted_channels": {"transactional": [channel.value]}}))
    if channel is Channel.REALTIME:  # the channel is occupied: only the preference can stop it
        set_presence(env, "42", occupied=True)
    step = a_message(channel, to=to, after_escalation=True)

    deliver(env, queue, app_name, step)

    assert env.sandbox.outbox.entries(provider=provider) == []
    delivery = env.record(step)["deliveries"][channel.value]
    assert (delivery["state"], delivery["code"]) == ("suppressed", f"{channel.value}_disabled")


# -- realtime ----------------------------------------------------------------------------------


def realtime_metrics(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    lines = capsys.readouterr().out.splitlines()
    emitted = [json.loads(line) for line in lines if '"_aws"' in line]
    return [m for m in emitted if m.get("channel") == "realtime"]


def test_realtime_triggers_once_on_an_occupied_channel_and_stores_the_in_app_render(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN Pusher's webhook said user 42's channel is occupied
    set_presence(env, "42", occupied=True)
    message = a_message(Channel.REALTIME)
    # WHEN the realtime sender handles the message
    with pusher_requests(monkeypatch) as sent:
        assert deliver(env, "Realtime", "realtime_sender", message) == {"batchItemFailures": []}
    # THEN exactly one Pusher request went out, the trigger: nobody asked Pusher for the channel
    ((method, path),) = sent
    assert method == "POST" and path.endswith("/events")
    (entry,) = env.sandbox.outbox.entries(provider="pusher")
    payload = json.loads(entry.body or "{}")
    record = env.record(message)
    assert (entry.recipient, entry.subject) == ("private-user-42", "notification")
    assert payload["notification_id"] == "ntf-1"
    assert (payload["title"], payload["body"]) == (record["in_app"]["title"], record["in_app"]["body"])
    assert record["in_app"]["title"]
    assert record["deliveries"]["realtime"]["state"] == "sent"
    assert not any("RealtimeSkippedVacant" in m for m in realtime_metrics(capsys))


@pytest.mark.parametrize(
    ("occupied", "age_seconds", "why"),
    [
        (None, 0, "never been occupied"),  # no presence item at all
        (False, 0, "is vacant"),  # channel_vacated
        (True, 21600 + 60, "stale"),  # occupied, but no webhook confirmed it within the bound
    ],
)
def test_realtime_does_not_trigger_on_a_vacant_channel_but_keeps_the_inbox_item(
    env: Env,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    occupied: bool | None,
    age_seconds: float,
    why: str,
) -> None:
    # GIVEN the presence table does not hold user 42's channel occupied (the sandbox channel may be)
    if occupied is not None:
        set_presence(env, "42", occupied=occupied, age_seconds=age_seconds)
    message = a_message(Channel.REALTIME)
    # WHEN the realtime sender handles the message
    with pusher_requests(monkeypatch) as sent:
        assert deliver(env, "Realtime", "realtime_sender", message) == {"batchItemFailures": []}
    # THEN no Pusher request at all, the delivery is not_delivered with the reason, and counted
    assert sent == []
    assert env.sandbox.outbox.entries(provider="pusher") == []
    record = env.record(message)
    delivery = record["deliveries"]["realtime"]
    assert (delivery["state"], delivery["code"]) == ("not_delivered", "channel_vacant")
    assert why in delivery["reason"] and "private-user-42" in delivery["reason"]
    assert record["in_app"]["title"] and record["in_app"]["body"]
    skipped = [m for m in realtime_metrics(capsys) if "RealtimeSkippedVacant" in m]
    assert len(skipped) == 1 and skipped[0]["RealtimeSkippedVacant"] in (1, 1.0, [1.0])


def test_a_realtime_batch_reads_its_presence_once_and_settles_each_record_alone(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a batch for three people: one online, one offline, one whose presence item is malformed
    set_presence(env, "u-on", occupied=True)
    set_presence(env, "u-off", occupied=False)
    env.client("dynamodb").put_item(
        TableName=env.stack.tables["PresenceTable"],
        Item={"user_id": {"S": "u-bad"}, "occupied": {"S": "not a bool"}},
    )
    messages = {
        user: a_message(Channel.REALTIME, user_id=user, notification_id=f"ntf-{user}", event_id=f"e-{user}")
        for user in ("u-on", "u-off", "u-bad")
    }
    for message in messages.values():
        env.create_record(message)
    env.enqueue("Realtime", *(m.queue_body() for m in messages.values()))
    event = env.receive_event("Realtime", expected=len(messages))
    app = env.app("realtime_sender")
    calls: list[str] = []
    app.dynamodb.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))

    # WHEN the realtime sender handles the batch
    with pusher_requests(monkeypatch) as sent:
        response = handle(env, app, event)

    # THEN presence was read once for the batch, never per message
    assert calls.count("BatchGetItem") == 1 and "GetItem" not in calls
    # AND each record has its own outcome: triggered; not triggered; the malformed presence item
    # concerns its own message only (nothing sent, dead-lettered with the reason)
    ((_, path),) = sent
    assert path.endswith("/events")
    assert env.record(messages["u-on"])["deliveries"]["realtime"]["state"] == "sent"
    assert env.record(messages["u-off"])["deliveries"]["realtime"]["code"] == "channel_vacant"
    assert response == {"batchItemFailures": []}
    assert env.record(messages["u-bad"])["deliveries"]["realtime"]["state"] == "retry"
    (dead,) = env.stack.drain("RealtimeDeadLetter")
    assert '"ntf-u-bad"' in dead["Body"]


def test_an_escalation_in_app_message_to_a_vacant_channel_sends_the_email_at_once(env: Env) -> None:
    primary = a_message(Channel.REALTIME)
    env.create_record(primary)
    arn = start_escalation(env, primary, "Realtime")
    assert run_primary(env, "Realtime", "realtime_sender") == {"batchItemFailures": []}
    assert wait_for_messages(env, "Email")
    assert execution_status(env, arn, "SUCCEEDED") == "SUCCEEDED"
    assert env.sandbox.outbox.entries(provider="pusher") == []


# -- SMS ---------------------------------------------------------------------------------------


def security_sms(**overrides: Any) -> ChannelMessage:
    fields: dict[str, Any] = {
        "type": "security_alert",
        "urgency": Urgency.CRITICAL,
        "category": Category.SECURITY,
        "to": "+14155550100",
        "data": {
            "action": "New sign-in",
            "device": "Firefox",
            "ip_address": "203.0.113.7",
            "location": "Lisbon",
            "review_url": "https://app.example.com/security",
        },
    }
    fields.update(overrides)
    return a_message(Channel.SMS, **fields)


def test_sms_goes_through_twilio_with_the_status_callback(env: Env) -> None:
    message = security_sms()
    assert deliver(env, "Sms", "sms_sender", message) == {"batchItemFailures": []}
    delivery = env.record(message)["deliveries"]["sms"]
    assert (delivery["state"], delivery["provider"]) == ("sent", "twilio")
    sent = env.sandbox.twilio.message(delivery["provider_message_id"])
    assert sent is not None
    # the ids ride on the callback URL (signed by Twilio): its status callback finds the notification
    ids = urlencode({"notification_id": message.notification_id, "user_id": message.user_id})
    assert sent.status_callback == f"https://api.example.com/v1/webhooks/twilio?{ids}"
    assert sent.to == "+14155550100"
    assert "203.0.113.7" not in sent.body and "Lisbon" not in sent.body  # sensitive fields


def test_twilio_21610_suppresses_the_phone(env: Env) -> None:
    env.sandbox.twilio.mark_opted_out("+14155550100")
    message = security_sms()
    assert deliver(env, "Sms", "sms_sender", message) == {"batchItemFailures": []}
    assert env.suppressed(sms_address("+14155550100"))
    delivery = env.record(message)["deliveries"]["sms"]
    assert (delivery["state"], delivery["code"]) == ("suppressed", "21610")
    later = security_sms(notification_id="ntf-2")
    deliver(env, "Sms", "sms_sender", later)
    assert env.record(later)["deliveries"]["sms"]["code"] == "suppressed"  # stopped before Twilio


def test_marketing_sms_needs_a_recorded_consent_at_send_time(env: Env) -> None:
    env.put_profile(a_profile(preferences={"marketing_opt_in": True}))
    message = security_sms(category=Category.MARKETING, urgency=Urgency.LOW)
    deliver(env, "Sms", "sms_sender", message)
    assert env.record(message)["deliveries"]["sms"]["code"] == "no_consent"
    assert env.sandbox.outbox.entries(provider="twilio") == []
    env.put_profile(
        a_profile(
            preferences={"marketing_opt_in": True},
            sms_marketing_consent={"given_at": "2026-01-01T00:00:00Z", "source": "signup form"},
        )
    )
    consented = security_sms(notification_id="ntf-2", category=Category.MARKETING, urgency=Urgency.LOW)
    deliver(env, "Sms", "sms_sender", consented)
    assert env.record(consented)["deliveries"]["sms"]["state"] == "sent"
    assert len(env.sandbox.outbox.entries(provider="twilio")) == 1


# -- webhooks ----------------------------------------------------------------------------------


def webhook_message(**overrides: Any) -> ChannelMessage:
    fields: dict[str, Any] = {
        "type": "order_webhook",
        "urgency": Urgency.SYSTEM,
        "category": Category.SYSTEM,
        "data": {"order_id": "999", "status": "shipped"},
    }
    fields.update(overrides)
    return a_message(Channel.WEBHOOK, **fields)


def subscribe(env: Env, receiver: str = "orders") -> None:
    env.add_webhook_secret(receiver, json.dumps({"secret": env.sandbox.receivers.secret(receiver)}))
    env.put_profile(
        a_profile(webhook={"url": f"{env.sandbox.url}/receivers/{receiver}", "secret_name": receiver})
    )


def test_a_webhook_is_signed_so_the_receiver_accepts_it(env: Env) -> None:
    subscribe(env)
    message = webhook_message()
    assert deliver(env, "Webhook", "webhook_sender", message) == {"batchItemFailures": []}
    (entry,) = env.sandbox.outbox.entries(provider="webhook")
    assert entry.provider_id == "ntf-1"  # the Idempotency-Key
    assert entry.request["id"] == "ntf-1"
    assert entry.request["data"] == {
        "type": "order_webhook",
        "event_id": "evt-1",
        "notification_id": "ntf-1",
        "data": {"order_id": "999", "status": "shipped"},
    }
    assert env.sandbox.receivers.stats()["orders"]["rejected"] == 0
    assert env.record(message)["deliveries"]["webhook"]["state"] == "sent"


def test_a_failing_receiver_is_retried_later(env: Env) -> None:
    subscribe(env)
    message = webhook_message()
    with env.sandbox.fault("webhook", status=503):
        result = deliver(env, "Webhook", "webhook_sender", message)
    assert len(result["batchItemFailures"]) == 1
    delivery = env.record(message)["deliveries"]["webhook"]
    assert (delivery["state"], delivery["code"]) == ("retry", "503")


def test_a_subscriber_without_an_endpoint_is_not_delivered(env: Env) -> None:
    env.put_profile(a_profile())
    message = webhook_message()
    assert deliver(env, "Webhook", "webhook_sender", message) == {"batchItemFailures": []}
    assert env.record(message)["deliveries"]["webhook"]["code"] == "no_endpoint"


def test_a_missing_signing_secret_is_retried_not_sent_unsigned(env: Env) -> None:
    env.put_profile(a_profile(webhook={"url": f"{env.sandbox.url}/receivers/orders", "secret_name": "nope"}))
    message = webhook_message()
    assert len(deliver(env, "Webhook", "webhook_sender", message)["batchItemFailures"]) == 1
    assert env.sandbox.outbox.entries(provider="webhook") == []
    assert env.record(message)["deliveries"]["webhook"]["code"] == "credentials_unavailable"


# -- acknowledgement (decision 019) ------------------------------------------------------------


def acknowledge(env: Env, message: ChannelMessage, at: str = "2026-11-30T12:00:00.000000Z") -> None:
    """`acked_at` on the record, as POST .../ack writes it (herald.acknowledgement)."""
    env.client("dynamodb").update_item(
        TableName=env.stack.tables["NotificationsTable"],
        Key={"user_id": {"S": message.user_id}, "notification_id": {"S": message.notification_id}},
        UpdateExpression="SET acked_at = if_not_exists(acked_at, :at)",
        ExpressionAttributeValues={":at": {"S": at}},
    )


def test_a_step_for_an_acknowledged_notification_is_not_sent_and_ends_the_chain(env: Env) -> None:
    # GIVEN an escalation whose push step waits on the queue, and the person acknowledged the
    # notification before the push sender took the step (so no token was on the record to answer)
    env.put_profile(a_profile())
    primary = a_message(Channel.PUSH, device_tokens=["tok-42"])
    env.create_record(primary)
    arn = start_escalation(env, primary, "Push")
    (waiting,) = wait_for_messages(env, "Push")
    assert json.loads(waiting["Body"])["task_token"]  # the step waits for an answer
    env.client("sqs").change_message_visibility(
        QueueUrl=env.stack.queue_urls["Push"], ReceiptHandle=waiting["ReceiptHandle"], VisibilityTimeout=0
    )
    acknowledge(env, primary)
    # WHEN the push sender handles the step
    assert run_primary(env, "Push", "push_sender") == {"batchItemFailures": []}
    # THEN nothing is pushed, the sender answers the step's token so the chain ends with no email,
    # and the channel says why; the token never lands on the record
    assert env.sandbox.outbox.entries(provider="fcm") == []
    assert execution_status(env, arn, "SUCCEEDED") == "SUCCEEDED"
    assert env.client("sqs").receive_message(QueueUrl=env.stack.queue_urls["Email"]).get("Messages", []) == []
    history = env.client("stepfunctions").get_execution_history(executionArn=arn)["events"]
    outputs = [e["taskSucceededEventDetails"]["output"] for e in history if "taskSucceededEventDetails" in e]
    assert [json.loads(o) for o in outputs] == [
        {"acknowledged_at": "2026-11-30T12:00:00.000000Z", "via": "sender"}
    ]
    record = env.record(primary)
    delivery = record["deliveries"]["push"]
    assert (delivery["state"], delivery["code"]) == ("not_delivered", "acknowledged")
    assert record["delivery_log"][-1]["code"] == "acknowledged"
    assert "task_token" not in record


# -- a chain whose first step is an SMS that ends it when delivered (decision 021) --------------


def start_sms_first_chain(env: Env) -> tuple[ChannelMessage, str]:
    """The fraud alert's chain: an SMS whose delivery ends it, then push only if it cannot be delivered."""
    sms = security_sms(urgency=Urgency.HIGH, escalation=True, ends_when_delivered=True)
    env.create_record(sms)
    push = a_message(Channel.PUSH, device_tokens=["tok-42"])
    execution = EscalationInput(
        notification_id=sms.notification_id,
        user_id=sms.user_id,
        first=EscalationStepInput(queue_url=env.stack.queue_urls["Sms"], message=sms, wait_seconds=300),
        last=EscalationStepInput(queue_url=env.stack.queue_urls["Push"], message=push),
    )
    arn = env.client("stepfunctions").start_execution(
        stateMachineArn=env.stack.state_machine_arn,
        name=sms.notification_id,
        input=execution.execution_input(),
    )["executionArn"]
    return sms, arn


def test_a_delivered_sms_step_that_ends_the_chain_ends_it_at_once(env: Env) -> None:
    env.put_profile(a_profile())
    sms, arn = start_sms_first_chain(env)

    assert run_primary(env, "Sms", "sms_sender") == {"batchItemFailures": []}

    assert execution_status(env, arn, "SUCCEEDED") == "SUCCEEDED"  # not after the 300 s wait
    assert env.visible("Push") == 0
    record = env.record(sms)
    assert record["deliveries"]["sms"]["state"] == "sent"
    assert "task_token" not in record


def test_an_undeliverable_sms_step_sends_the_push_at_once(env: Env) -> None:
    env.put_profile(a_profile())
    env.sandbox.twilio.mark_opted_out("+14155550100")
    sms, arn = start_sms_first_chain(env)

    assert run_primary(env, "Sms", "sms_sender") == {"batchItemFailures": []}

    (push,) = wait_for_messages(env, "Push")
    assert ChannelMessage.model_validate_json(push["Body"]).channel is Channel.PUSH
    assert execution_status(env, arn, "SUCCEEDED") == "SUCCEEDED"
    assert env.record(sms)["deliveries"]["sms"]["state"] == "suppressed"


def test_an_sms_step_reported_failed_before_its_answer_was_recorded_sends_the_push_at_once(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an SMS-first chain, and Twilio's `failed` callback applied while the sender still holds
    # the claim (it answered the send, its outcome not yet recorded: decision 039)
    env.put_profile(a_profile())
    sms, arn = start_sms_first_chain(env)
    app = env.app("sms_sender")
    dynamodb = env.client("dynamodb")
    recorder = FeedbackRecorder(
        DeliveryLedger(dynamodb, env.stack.tables["NotificationsTable"]),
        SuppressionStore(dynamodb, env.stack.tables["SuppressionTable"]),
        UserStore(dynamodb, env.stack.tables["UsersTable"]),
    )
    send = app.deliverer.provider.send

    def send_then_report(*args: Any, **kwargs: Any) -> Any:
        answer = send(*args, **kwargs)
        report = ProviderEvent(
            channel=Channel.SMS,
            feedback=Feedback.FAILED,
            provider="twilio",
            at=datetime.now(UTC),
            user_id=sms.user_id,
            notification_id=sms.notification_id,
            code="30003",
        )
        assert recorder.apply([report]).moved == 1
        return answer

    monkeypatch.setattr(app.deliverer.provider, "send", send_then_report)

    # WHEN the SMS sender records its own answer (`sent`) after the report
    assert run_primary(env, "Sms", "sms_sender", app) == {"batchItemFailures": []}

    # THEN the channel stays failed, and the chain moves on to the push at once (not ended as sent)
    assert env.record(sms)["deliveries"]["sms"]["state"] == "failed"
    (push,) = wait_for_messages(env, "Push")
    assert ChannelMessage.model_validate_json(push["Body"]).channel is Channel.PUSH
    assert execution_status(env, arn, "SUCCEEDED") == "SUCCEEDED"


@pytest.mark.parametrize("after_escalation", [True, False], ids=["chain's last step", "a plain delivery"])
def test_a_later_step_is_not_sent_once_the_notification_is_acknowledged(
    env: Env, after_escalation: bool
) -> None:
    # GIVEN the SMS a chain sends after its first step timed out (e.g. held until quiet hours end),
    # and the person acknowledged the notification in the app meanwhile
    env.put_profile(a_profile())
    sms = security_sms(urgency=Urgency.HIGH, after_escalation=after_escalation)
    env.create_record(sms)
    acknowledge(env, sms)

    # WHEN the SMS sender handles it
    assert deliver(env, "Sms", "sms_sender", sms, record=False) == {"batchItemFailures": []}

    # THEN a chain's step is not sent (the person answered); a plain delivery is (no chain to end)
    delivery = env.record(sms)["deliveries"]["sms"]
    if after_escalation:
        assert env.sandbox.outbox.entries(provider="twilio") == []
        assert (delivery["state"], delivery["code"]) == ("not_delivered", "acknowledged")
    else:
        assert len(env.sandbox.outbox.entries(provider="twilio")) == 1
        assert delivery["state"] == "sent"
