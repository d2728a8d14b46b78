"""The senders and an erased person (decision 017): a message queued before the erasure (held to
the end of quiet hours, a retry, an escalation's email) is acknowledged as not delivered, sent to
nobody, and recreates nothing; a dead push token is suppressed without its plain value.

The real sender handlers on moto + the loopback sandboxes; the person is erased by herald.erasure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from herald.channels.wiring import sender_for
from herald.delivery import DeliveryLedger, RecipientErased
from herald.erasure import Erasure
from herald.messages import ChannelMessage
from herald.models import Category, Channel, Urgency
from herald.stores.dynamo import from_attributes
from herald.stores.keys import push_address, sms_address
from tests.integration.channels.conftest import Env, a_message, a_profile, handle

pytestmark = pytest.mark.integration


def erase(env: Env, user_id: str = "42") -> None:
    tables = env.stack.tables
    Erasure(
        env.client("dynamodb"),
        users=tables["UsersTable"],
        notifications=tables["NotificationsTable"],
        presence=tables["PresenceTable"],
        rate_counters=tables["RateCountersTable"],
        suppression=tables["SuppressionTable"],
    ).erase(user_id)


def items(env: Env, table: str) -> list[dict[str, Any]]:
    """Every item of a table (a test may scan; Herald never does)."""
    pages = env.client("dynamodb").get_paginator("scan").paginate(TableName=env.stack.tables[table])
    return [from_attributes(item) for page in pages for item in page["Items"]]


def dead_lettered(env: Env, queue: str) -> int:
    attributes = env.client("sqs").get_queue_attributes(
        QueueUrl=env.stack.dlq_urls[queue], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def security_sms() -> ChannelMessage:
    return a_message(
        Channel.SMS,
        type="security_alert",
        urgency=Urgency.CRITICAL,
        category=Category.SECURITY,
        to="+14155550100",
        data={
            "action": "New sign-in",
            "device": "Firefox",
            "ip_address": "203.0.113.7",
            "location": "Lisbon",
            "review_url": "https://app.example.com/security",
        },
    )


QUEUED = {
    # other producers' messages carry their data and address: they would be sent as they are
    "inline email": ("Email", "email_sender", a_message(Channel.EMAIL, to="user42@example.com")),
    "inline sms": ("Sms", "sms_sender", security_sms()),
    "inline push": ("Push", "push_sender", a_message(Channel.PUSH, device_tokens=["tok-42"])),
    # the router's messages are references to the record the erasure deleted
    "reference email": ("Email", "email_sender", a_message(Channel.EMAIL, data=None)),
}


@pytest.mark.parametrize(("queue", "app", "message"), QUEUED.values(), ids=QUEUED.keys())
def test_a_message_queued_before_the_erasure_is_acknowledged_not_sent_and_recreates_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch, queue: str, app: str, message: ChannelMessage
) -> None:
    # GIVEN a person with a routed notification whose message waits in the queue
    monkeypatch.setenv("EMAIL_PROVIDER", "sendgrid")
    env.put_profile(a_profile())
    env.create_record(message.model_copy(update={"data": message.data or a_message(Channel.EMAIL).data}))
    env.enqueue(queue, message.queue_body())
    # WHEN the person is erased before the sender gets to it
    erase(env)
    assert items(env, "NotificationsTable") == []

    response = handle(env, env.app(app), env.receive_event(queue))

    # THEN the message is acknowledged (not retried, not dead-lettered) and sent to nobody
    assert response == {"batchItemFailures": []}
    assert env.sandbox.outbox.entries() == []
    assert env.visible(queue) == 0 and dead_lettered(env, queue) == 0
    # and nothing about the person was written again: the tombstone is all there is
    assert items(env, "NotificationsTable") == []
    assert [item["sk"] for item in items(env, "UsersTable")] == ["DIRECTORY"]


def test_the_ledger_reads_the_tombstone_only_when_the_record_is_missing(env: Env) -> None:
    # GIVEN a ledger that counts its reads of the Users table
    reads: list[str] = []
    client = env.client("dynamodb")

    class Counting:
        def get_item(self, **kwargs: Any) -> Any:
            reads.append(kwargs["TableName"])
            return client.get_item(**kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(client, name)

    users = env.stack.tables["UsersTable"]
    ledger = DeliveryLedger(Counting(), env.stack.tables["NotificationsTable"], users_table=users)
    routed = a_message(Channel.EMAIL, to="user42@example.com")
    env.create_record(routed)

    # WHEN a routed message is claimed, and one of another producer with no record
    ledger.claim(routed, lease_seconds=60)
    other = ledger.claim(a_message(Channel.EMAIL, notification_id="ntf-other"), lease_seconds=60)

    # THEN only the second read the person's directory item (no tombstone: it claims and creates)
    assert reads.count(users) == 1
    assert not isinstance(other, RecipientErased)
    erase(env)
    erased = ledger.claim(a_message(Channel.EMAIL, notification_id="ntf-3"), lease_seconds=60)
    assert isinstance(erased, RecipientErased)
    assert items(env, "NotificationsTable") == []


def test_a_created_record_gets_a_fixed_width_creation_stamp(env: Env) -> None:
    ledger = DeliveryLedger(
        env.client("dynamodb"),
        env.stack.tables["NotificationsTable"],
        users_table=env.stack.tables["UsersTable"],
    )

    ledger.claim(a_message(Channel.EMAIL), lease_seconds=60)

    (record,) = items(env, "NotificationsTable")
    assert len(record["created_at"]) == len("2026-11-30T20:01:02.000000Z")
    assert record["created_at"].endswith("Z")


def test_a_dead_token_is_suppressed_without_its_plain_value_and_is_gone_after_the_erasure(env: Env) -> None:
    # GIVEN a person with two devices, one of which FCM no longer knows
    devices = {
        t: {"platform": "android", "registered_at": "2026-01-01T00:00:00Z"} for t in ("tok-a", "tok-b")
    }
    env.put_profile(a_profile(devices=devices))
    env.sandbox.fcm.mark_unregistered("tok-a")
    message = a_message(Channel.PUSH, device_tokens=["tok-a", "tok-b"])
    env.create_record(message)
    env.enqueue("Push", message.queue_body())

    # WHEN the push sender meets the dead token
    assert handle(env, env.app("push_sender"), env.receive_event("Push")) == {"batchItemFailures": []}

    # THEN the token is suppressed by its hash only, and removed from the profile
    (entry,) = items(env, "SuppressionTable")
    assert entry["address"] == push_address("tok-a")
    assert (entry["reason"], "contact" in entry) == ("dead_token", False)
    assert entry["notification_id"] == message.notification_id  # the cause, for support
    assert set(env.profile("42").devices) == {"tok-b"}  # type: ignore[union-attr]
    # and once the person is erased, the dead token is nowhere in plain form
    erase(env)
    for table in env.stack.tables:
        assert "tok-a" not in json.dumps(items(env, table), default=str), table


def test_a_stopped_phone_keeps_its_number_for_support_until_the_erasure(env: Env) -> None:
    # GIVEN Twilio reports the number opted out (STOP)
    env.put_profile(a_profile())
    env.sandbox.twilio.mark_opted_out("+14155550100")
    message = security_sms()
    env.create_record(message)
    env.enqueue("Sms", message.queue_body())
    handle(env, env.app("sms_sender"), env.receive_event("Sms"))

    (entry,) = items(env, "SuppressionTable")
    assert (entry["address"], entry["contact"]) == (sms_address("+14155550100"), "+14155550100")

    # WHEN the person (whose phone it is) is erased THEN the entry stays, without the number
    erase(env)
    (entry,) = items(env, "SuppressionTable")
    assert entry["address"] == sms_address("+14155550100") and "contact" not in entry


def test_an_erased_escalation_primary_fails_over_without_writing(env: Env) -> None:
    # GIVEN an escalation's push primary for a person erased meanwhile
    env.put_profile(a_profile())
    primary = a_message(Channel.PUSH, device_tokens=["tok-42"], task_token="task-1", escalation=True)
    erase(env)
    failures: list[dict[str, Any]] = []

    class StepFunctions:
        def send_task_failure(self, **kwargs: Any) -> None:
            failures.append(kwargs)

    app = env.app("push_sender")  # the function's own deliverer, settings and stores
    sender = sender_for(app.deliverer, app.settings, app.stores, sqs=env.client("sqs"), sfn=StepFunctions())

    # WHEN it is processed
    outcome = sender.process(primary)

    # THEN the escalation moves on at once (its email is not delivered either), nothing is written
    assert outcome.state == "not_delivered"
    assert [f["taskToken"] for f in failures] == ["task-1"]
    assert items(env, "NotificationsTable") == []
