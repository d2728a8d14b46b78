"""A provider outage longer than the tolerance, on the local stack, through its public surfaces: the
message waits out the budget, lands in the channel's DLQ with the reason, and once the provider is
back the operator's `herald redrive sms` (the installed console script) brings it back: delivered
exactly once (decision 010). The stack runs with a 4-second tolerance and a 1-second retry base."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from herald.stores.dynamo import from_attributes
from herald.stores.users import UserStore
from herald.users import UserProfile
from local.stack import LocalStack
from tests.e2e.conftest import http_json, outbox, put_event, wait_until
from tests.support.cli import herald

pytestmark = pytest.mark.e2e

TOLERANCE_SECONDS = 4
PHONE = "+14155550142"
USER = "outage-1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    state = tmp_path_factory.mktemp("outage") / "stack.json"
    with LocalStack(
        aws_port=0,
        sandbox_port=0,
        api_port=0,
        parameters={"ProviderOutageToleranceSeconds": TOLERANCE_SECONDS, "ProviderRetryBaseSeconds": 1},
        state_file=state,
    ) as running:
        yield running
        assert running.moto
        running.moto.reset()


def dead_letters(stack: LocalStack) -> list[dict[str, Any]]:
    """A look at the SMS DLQ that leaves its messages visible (for the redrive)."""
    assert stack.description
    return (
        stack.client("sqs")
        .receive_message(
            QueueUrl=stack.description.ref("SmsDeadLetterQueue"),
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=0,
        )
        .get("Messages", [])
    )


def sms_delivery(stack: LocalStack) -> dict[str, Any]:
    assert stack.description
    items = stack.client("dynamodb").query(
        TableName=stack.description.ref("NotificationsTable"),
        KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": USER}},
        ConsistentRead=True,
    )["Items"]
    assert len(items) == 1, items
    record = from_attributes(items[0])
    return {
        "state": record["deliveries"]["sms"],
        "log": [e for e in record["delivery_log"] if e["channel"] == "sms"],
    }


def twilio_fault(stack: LocalStack, method: str) -> None:
    assert stack.sandbox
    url = f"{stack.sandbox.url}/_faults" + ("?provider=twilio" if method == "DELETE" else "")
    body = json.dumps({"provider": "twilio", "status": 503}).encode() if method == "POST" else None
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 201)


def test_an_outage_past_the_tolerance_is_dead_lettered_and_redriven_once_it_is_over(
    stack: LocalStack,
) -> None:
    assert stack.description and stack.state_file
    UserStore(stack.client("dynamodb"), stack.description.ref("UsersTable")).put_profile(
        UserProfile(user_id=USER, phone=PHONE)
    )
    twilio_fault(stack, "POST")  # Twilio answers 503 until told otherwise
    started = time.monotonic()
    put_event(
        stack,
        {
            "event_id": "e2e-outage-1",
            "type": "security_alert",
            "user_id": USER,
            "data": {
                "action": "Password changed",
                "device": "Safari",
                "ip_address": "198.51.100.7",
                "location": "Porto, PT",
                "review_url": "https://app/security",
            },
        },
    )

    [dead] = wait_until(lambda: dead_letters(stack), timeout=30)
    assert time.monotonic() - started >= TOLERANCE_SECONDS
    reason = dead["MessageAttributes"]["herald_dead_letter_reason"]["StringValue"]
    assert f"past the outage tolerance of {TOLERANCE_SECONDS} s" in reason and "503" in reason
    assert outbox(stack, provider="twilio", recipient=PHONE) == []
    delivery = sms_delivery(stack)
    assert delivery["state"]["state"] == "retry" and "failing_since" not in delivery["state"]
    outcomes = [entry["outcome"] for entry in delivery["log"]]
    assert outcomes[-1] == "dead_lettered" and outcomes.count("retry") >= 2

    twilio_fault(stack, "DELETE")  # the provider is back
    assert "moved 1 message(s)" in herald(stack.state_file, "redrive", "sms")

    sent = wait_until(lambda: outbox(stack, provider="twilio", recipient=PHONE), timeout=20)
    time.sleep(3)  # time enough for a second delivery to show up, were there one
    assert len(sent) == len(outbox(stack, provider="twilio", recipient=PHONE)) == 1
    assert dead_letters(stack) == []
    assert sms_delivery(stack)["state"]["state"] == "sent"
    assert stack.sandbox and http_json(f"{stack.sandbox.url}/_faults") == []
