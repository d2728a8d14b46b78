"""Internal messages through the real handlers (router, Step Functions in moto, senders):

- deploys: a body with fields this release does not know (or a newer version) is delivered,
  not dead-lettered;
- no data where it does not belong: the escalation's execution history and Scheduler inputs hold
  references only (no catalog sensitive field, no address, no token), and the senders still
  render the notification's data, read back from the record the claim returns;
- a reference whose record is gone is a permanent failure on the log, never an empty send;
- webhook destinations: refused outside the local stack's loopback allowance, for good.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.ses.models import ses_backends

from herald.catalog import load_catalog
from herald.messages import MESSAGE_VERSION, parse_channel_body
from herald.models import Channel
from tests.integration.channels.conftest import Env, a_message, a_profile, handle
from tests.support.sqs import sqs_event
from tests.support.stack import ACCOUNT, REGION

pytestmark = pytest.mark.integration

PAYMENT = load_catalog().types["payment_receipt"]
SHIPPED = load_catalog().types["order_shipped"]
ROUTING_FIELDS = (
    "notification_id",
    "event_id",
    "user_id",
    "type",
    "channel",
    "urgency",
    "category",
    "locale",
)


def sensitive_values(entry: Any) -> list[str]:
    values = [str(entry.sample_data[name]) for name in sorted(entry.sensitive_fields)]
    assert values, f"{entry.name} declares sensitive fields"
    return values


def router(env: Env, monkeypatch: pytest.MonkeyPatch, **settings: str) -> Any:

    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return env.app("router")


def route(env: Env, app: Any, detail: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(
        {
            "version": "0",
            "id": f"id-{detail['event_id']}",
            "detail-type": "NotificationRequested",
            "source": "tests",
            "account": ACCOUNT,
            "time": "2026-11-22T12:00:00Z",
            "region": REGION,
            "resources": [],
            "detail": detail,
        }
    )
    return app.lambda_handler(sqs_event(body, arn="arn:aws:sqs:us-east-1:123456789012:Ingest"), env.context)


def when_queued(env: Env, queue: str, timeout: float = 15.0) -> dict[str, Any]:
    """The next message on `queue` (as Lambda's SQS event) once it arrives."""
    deadline = time.monotonic() + timeout
    while env.visible(queue) == 0:
        assert time.monotonic() < deadline, f"nothing arrived on {queue} within {timeout}s"
        time.sleep(0.1)
    return env.receive_event(queue)


def ses_mail_text() -> str:
    return "\n".join(str(getattr(m, "body", "")) for m in ses_backends[ACCOUNT][REGION].sent_messages)


# -- deploys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [{"priority_hint": "gold"}, {"v": MESSAGE_VERSION + 1, "delivery_window": {"end": "2030-01-01"}}],
    ids=["unknown field", "newer version"],
)
def test_a_message_with_fields_this_release_does_not_know_is_delivered_not_dead_lettered(
    env: Env, extra: dict[str, Any]
) -> None:
    # GIVEN the record the router wrote and, on the queue, what a newer router sends
    env.put_profile(a_profile())
    full = a_message(Channel.EMAIL, to="ana@example.com")
    env.create_record(full)
    body = {**{name: getattr(full, name) for name in ROUTING_FIELDS}, "v": MESSAGE_VERSION, **extra}
    env.enqueue("Email", json.dumps(body, default=str))

    # WHEN the sender of this release handles it
    result = handle(env, env.app("email_sender"), env.receive_event("Email"))

    # THEN it is delivered, with the record's data, and nothing went to the DLQ
    assert result == {"batchItemFailures": []}
    assert env.stack.drain("EmailDeadLetter") == []
    assert env.record(full)["deliveries"]["email"]["state"] == "sent"
    assert "4242" in ses_mail_text() and "Example Store" in ses_mail_text()


# -- no data in Step Functions history or Scheduler inputs ----------------------------------------


def test_an_escalation_keeps_sensitive_data_out_of_its_history_and_still_renders_it(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an offline user and a high-urgency payment receipt (sensitive: amount, card_last4)
    env.put_profile(a_profile())
    app = router(env, monkeypatch, FALLBACK_DELAY_SECONDS="1")

    # WHEN the router escalates it: push first, email when nobody acknowledges within a second
    assert route(
        env,
        app,
        {"event_id": "pay-1", "type": "payment_receipt", "user_id": "42", "data": PAYMENT.sample_data},
    ) == {"batchItemFailures": []}
    assert handle(env, env.app("push_sender"), when_queued(env, "Push")) == {"batchItemFailures": []}
    email_event = when_queued(env, "Email")
    assert handle(env, env.app("email_sender"), email_event) == {"batchItemFailures": []}

    # THEN the execution's input and history hold references only ...
    sfn = env.client("stepfunctions")
    (execution,) = sfn.list_executions(stateMachineArn=env.stack.state_machine_arn)["executions"]
    described = sfn.describe_execution(executionArn=execution["executionArn"])
    history = json.dumps(
        sfn.get_execution_history(executionArn=execution["executionArn"])["events"], default=str
    )
    assert '"task_token' in history and execution["name"] in history  # the task messages are in it
    for text in (described["input"], history, email_event["Records"][0]["body"]):
        for secret in [*sensitive_values(PAYMENT), "user42@example.com", "tok-42"]:
            assert secret not in text
    assert '\\"data\\"' not in history and '"data"' not in described["input"]
    # ... and the push and the email still render the notification's data
    (push,) = env.sandbox.outbox.entries(provider="fcm")
    assert push.recipient == "tok-42" and "Example Store" in f"{push.subject} {push.body}"
    mail = ses_mail_text()
    assert all(value in mail for value in sensitive_values(PAYMENT))


def test_a_scheduled_delivery_carries_no_data_and_renders_it_when_it_fires(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a user in quiet hours for the next three hours
    now = datetime.now(UTC)
    window = {
        "start": (now - timedelta(hours=1)).strftime("%H:00"),
        "end": (now + timedelta(hours=3)).strftime("%H:00"),
    }
    env.put_profile(a_profile(quiet_hours=window))
    app = router(env, monkeypatch)

    # WHEN an order-shipped push (sensitive: address) is routed, it is deferred with a schedule
    route(
        env,
        app,
        {"event_id": "ship-1", "type": "order_shipped", "user_id": "42", "data": SHIPPED.sample_data},
    )
    scheduler = env.client("scheduler")
    group = env.stack.env["SCHEDULE_GROUP"]
    (summary,) = scheduler.list_schedules(GroupName=group)["Schedules"]
    target_input = scheduler.get_schedule(Name=summary["Name"], GroupName=group)["Target"]["Input"]

    # THEN the schedule's input is a reference: no data, no sensitive value, no device token
    reference = json.loads(target_input)
    assert reference["channel"] == "push" and reference["v"] == MESSAGE_VERSION
    assert "data" not in reference and "to" not in reference and not reference.get("device_tokens")
    for secret in [*sensitive_values(SHIPPED), "tok-42"]:
        assert secret not in target_input

    # WHEN it fires (the queue receives the input) after quiet hours, the push renders the data
    push_app = env.app("push_sender")
    not_before = parse_channel_body(target_input).not_before
    assert not_before is not None
    monkeypatch.setattr(push_app.sender, "_clock", lambda: not_before + timedelta(seconds=1))
    env.enqueue("Push", target_input)
    assert handle(env, push_app, env.receive_event("Push")) == {"batchItemFailures": []}
    (push,) = env.sandbox.outbox.entries(provider="fcm")
    assert push.recipient == "tok-42"
    assert "999" in f"{push.subject} {push.body}" and "DHL" in f"{push.subject} {push.body}"


def test_a_reference_whose_record_is_gone_fails_for_good_and_sends_nothing(env: Env) -> None:
    # GIVEN a reference message and no notification record (TTL, or a wrong id)
    env.put_profile(a_profile())
    full = a_message(Channel.EMAIL, to="ana@example.com", notification_id="ntf-gone")
    env.enqueue("Email", json.dumps({name: getattr(full, name) for name in ROUTING_FIELDS}, default=str))

    # WHEN the sender handles it
    result = handle(env, env.app("email_sender"), env.receive_event("Email"))

    # THEN it is recorded as a permanent failure on the log (not retried, not sent empty)
    assert result == {"batchItemFailures": []}
    assert ses_backends[ACCOUNT][REGION].sent_messages == []
    record = env.record(full)
    delivery = record["deliveries"]["email"]
    assert (delivery["state"], delivery["code"]) == ("failed", "record_missing")
    assert [(e["outcome"], e["code"]) for e in record["delivery_log"]] == [("failed", "record_missing")]
    assert "data" not in record  # the sender never wrote an empty map in its place


# -- webhook destinations --------------------------------------------------------------------------


def test_outside_the_local_stack_a_loopback_webhook_is_refused_for_good(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a subscriber whose endpoint is on loopback, and a deployed stack's settings
    monkeypatch.delenv("WEBHOOK_ALLOW_LOOPBACK", raising=False)
    env.add_webhook_secret("orders", json.dumps({"secret": env.sandbox.receivers.secret("orders")}))
    env.put_profile(
        a_profile(webhook={"url": f"{env.sandbox.url}/receivers/orders", "secret_name": "orders"})
    )
    message = a_message(
        Channel.WEBHOOK,
        type="order_webhook",
        urgency="system",
        category="system",
        data={"order_id": "9", "status": "shipped"},
    )
    env.create_record(message)
    env.enqueue("Webhook", message.queue_body())

    # WHEN the webhook sender handles it
    result = handle(env, env.app("webhook_sender"), env.receive_event("Webhook"))

    # THEN nothing is sent, and the refusal is recorded with its reason, not retried
    assert result == {"batchItemFailures": []}
    assert env.sandbox.outbox.entries(provider="webhook") == []
    record = env.record(message)
    delivery = record["deliveries"]["webhook"]
    assert (delivery["state"], delivery["code"]) == ("failed", "destination_refused")
    assert "loopback" in delivery["reason"]
    assert record["delivery_log"][-1]["code"] == "destination_refused"


def test_the_local_stack_delivers_to_its_loopback_receivers(env: Env) -> None:
    # GIVEN the local stack's settings (its provisioner allows loopback) and a sandbox receiver
    assert env.stack.env["WEBHOOK_ALLOW_LOOPBACK"] == "true"
    env.add_webhook_secret("orders", json.dumps({"secret": env.sandbox.receivers.secret("orders")}))
    env.put_profile(
        a_profile(webhook={"url": f"{env.sandbox.url}/receivers/orders", "secret_name": "orders"})
    )
    message = a_message(
        Channel.WEBHOOK,
        type="order_webhook",
        urgency="system",
        category="system",
        data={"order_id": "9", "status": "shipped"},
    )
    env.create_record(message)
    reference = {name: getattr(message, name) for name in ROUTING_FIELDS}
    env.enqueue("Webhook", json.dumps(reference, default=str))

    # WHEN the webhook sender handles the router's reference message
    assert handle(env, env.app("webhook_sender"), env.receive_event("Webhook")) == {"batchItemFailures": []}

    # THEN the receiver got it, with the record's data
    (entry,) = env.sandbox.outbox.entries(provider="webhook")
    assert entry.request["data"]["data"] == {"order_id": "9", "status": "shipped"}
    assert env.record(message)["deliveries"]["webhook"]["state"] == "sent"
