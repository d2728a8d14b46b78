"""The user directory on the local stack, driven through the bus only: `UserUpserted` makes a person
reachable, `UserDeleted` removes them, an invalid event lands in the directory DLQ with its reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from herald.stores.users import UserStore
from herald.users import UserProfile
from local.stack import LocalStack
from tests.e2e.conftest import outbox, put_bus_event, put_event, wait_until

pytestmark = pytest.mark.e2e

SECURITY_DATA = {
    "action": "Password changed",
    "device": "Safari",
    "ip_address": "198.51.100.9",
    "location": "Porto, PT",
    "review_url": "https://app/security",
}


def users(stack: LocalStack) -> UserStore:
    assert stack.description
    return UserStore(stack.client("dynamodb"), stack.description.ref("UsersTable"))


def applied(stack: LocalStack, user_id: str) -> UserProfile | None:
    """The person's profile once the directory applied it. moto applies a transaction's items one
    after another, so a read can meet the profile item created but not yet filled: not yet."""
    try:
        return users(stack).get_profile(user_id)
    except ValidationError:
        return None


def test_an_upserted_user_is_texted_at_the_upserted_phone(stack: LocalStack) -> None:
    # GIVEN the product's backend announces a person over the bus
    put_bus_event(
        stack,
        "UserUpserted",
        {"user_id": "dir-1", "version": 1, "phone": "+14155550161", "time_zone": "Europe/Lisbon"},
    )
    assert wait_until(lambda: applied(stack, "dir-1")), "the directory never applied the upsert"

    # WHEN a producer asks for a security alert to them
    put_event(
        stack, {"event_id": "e2e-dir-1", "type": "security_alert", "user_id": "dir-1", "data": SECURITY_DATA}
    )

    # THEN the SMS reaches the phone the directory knows
    assert len(wait_until(lambda: outbox(stack, provider="twilio", recipient="+14155550161"))) == 1


def test_a_deleted_user_is_no_longer_reachable_and_a_late_upsert_does_not_revive_them(
    stack: LocalStack,
) -> None:
    put_bus_event(stack, "UserUpserted", {"user_id": "dir-2", "version": 5, "phone": "+14155550162"})
    assert wait_until(lambda: applied(stack, "dir-2"))

    put_bus_event(stack, "UserDeleted", {"user_id": "dir-2", "version": 6})
    assert wait_until(lambda: users(stack).get_profile("dir-2") is None)
    put_bus_event(stack, "UserUpserted", {"user_id": "dir-2", "version": 5, "phone": "+14155550162"})
    put_bus_event(stack, "UserUpserted", {"user_id": "dir-2b", "version": 1})  # a marker after it
    assert wait_until(lambda: applied(stack, "dir-2b"))

    assert users(stack).get_profile("dir-2") is None


def test_an_invalid_upsert_lands_in_the_directory_dlq_with_its_reason(stack: LocalStack) -> None:
    assert stack.description
    put_bus_event(stack, "UserUpserted", {"user_id": "dir-bad", "version": 1, "time_zone": "Mars/Olympus"})
    sqs = stack.client("sqs")
    dlq = stack.description.ref("DirectoryDeadLetterQueue")

    def rejected() -> list[dict[str, Any]]:
        messages = sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=0
        ).get("Messages", [])
        return [m for m in messages if json.loads(m["Body"])["detail"].get("user_id") == "dir-bad"]

    [message] = wait_until(rejected)
    reason = message["MessageAttributes"]["herald_rejection_reason"]["StringValue"]
    assert "time_zone" in reason and "unknown IANA time zone" in reason
    assert message["MessageAttributes"]["herald_event_id"]["StringValue"] == "UserUpserted:dir-bad@1"
    assert users(stack).get_profile("dir-bad") is None
