"""Broadcasts on the local stack (issue 12): a recurring schedule an operator puts with `herald
schedule put` fires on time through the local EventBridge Scheduler onto the bus, as the
`NotificationRequested` of that occurrence (`sched-<name>-<scheduled time>`), and reaches every
member of the role once; `herald send --topic … --wait` reaches the topic's followers and prints
the outcome. Driven through the bus, the CLI and the stack's tables."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from herald.catalog import load_catalog
from herald.routing.decision import notification_id_for
from herald.stores.dynamo import from_attributes
from herald.stores.users import UserStore
from herald.topics import TopicStore
from herald.users import UserProfile
from local.stack import LocalStack
from tests.e2e.conftest import wait_until
from tests.support.cli import herald

pytestmark = pytest.mark.e2e

ALERT = json.dumps(load_catalog().types["security_alert"].sample_data)


def people(stack: LocalStack, role: str, *user_ids: str) -> None:
    assert stack.description
    store = UserStore(stack.client("dynamodb"), stack.description.ref("UsersTable"))
    for user_id in user_ids:
        store.put_profile(
            UserProfile.model_validate(
                {
                    "user_id": user_id,
                    "roles": [role],
                    "devices": {
                        f"{user_id}-phone": {"platform": "android", "registered_at": "2026-01-01T00:00:00Z"}
                    },
                }
            )
        )


def record(stack: LocalStack, user_id: str, notification_id: str) -> dict[str, Any] | None:
    assert stack.description
    item = (
        stack.client("dynamodb")
        .get_item(
            TableName=stack.description.ref("NotificationsTable"),
            Key={"user_id": {"S": user_id}, "notification_id": {"S": notification_id}},
            ConsistentRead=True,
        )
        .get("Item")
    )
    return from_attributes(item) if item else None


def test_a_recurring_schedule_fires_on_time_once_per_member(stack: LocalStack) -> None:
    people(stack, "oncall", "oc-1", "oc-2")
    put = herald(
        stack.state_file,
        "schedule",
        "put",
        "oncall-check",
        "--expression",
        "cron(* * * * ? *)",  # every minute: the next occurrence is at most 60 s away
        "--type",
        "security_alert",
        "--role",
        "oncall",
        "--data",
        ALERT,
    )
    assert "created oncall-check" in put
    assert "oncall-check" in herald(stack.state_file, "schedule", "list")

    def first_occurrence() -> list[dict[str, Any]]:
        records = [
            r
            for user_id in ("oc-1", "oc-2")
            for r in stack.client("dynamodb").query(
                TableName=stack.description.ref("NotificationsTable") if stack.description else "",
                KeyConditionExpression="user_id = :u",
                ExpressionAttributeValues={":u": {"S": user_id}},
                ConsistentRead=True,
            )["Items"]
        ]
        return [from_attributes(r) for r in records]

    fired = wait_until(lambda: len(first_occurrence()) >= 2, timeout=90)
    herald(stack.state_file, "schedule", "delete", "oncall-check")  # before a next minute fires again
    assert fired, "the schedule did not fire within 90 s"
    first = min(r["event_id"] for r in first_occurrence())
    assert re.fullmatch(r"sched-oncall-check-\d{4}-\d\d-\d\dT\d\d:\d\d:00Z", first), first
    records = [r for r in first_occurrence() if r["event_id"] == first]
    assert sorted(r["user_id"] for r in records) == ["oc-1", "oc-2"]  # one each


def test_send_to_a_topic_waits_for_its_followers_outcome(stack: LocalStack) -> None:
    assert stack.description
    people(stack, "customers", "t-1", "t-2", "t-3")
    topics = TopicStore(stack.client("dynamodb"), stack.description.ref("UsersTable"))
    topics.choose("t-1", "launches", "joined")
    topics.choose("t-2", "launches", "joined")

    out = herald(
        stack.state_file,
        "send",
        "security_alert",
        "--topic",
        "launches",
        "--data",
        ALERT,
        "--event-id",
        "e2e-launch-1",
        "--wait",
        "--timeout",
        "60",
    )

    assert "2 of 2 routed: dispatched 2" in out, out
    assert "push sent 2" in out, out
    assert record(stack, "t-3", notification_id_for("manual-e2e-launch-1#t-3")) is None
