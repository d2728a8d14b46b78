"""Herald end to end on the local stack: events in through the bus, deliveries out at the sandboxes.

Users are seeded in the users table (the profile API is a later issue); everything else goes
through the stack's public surfaces: the bus (boto3 and the AWS CLI), SQS, the sandboxes' HTTP
control endpoints, the HTTP API and `.local/stack.json`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from herald.stores.users import UserStore
from herald.users import UserProfile
from local.demo import play
from local.stack import LocalStack
from tests.e2e.conftest import emails_to, outbox, put_event, wait_until

pytestmark = pytest.mark.e2e

DEVICE = {"platform": "ios", "registered_at": "2026-01-01T00:00:00Z"}


def add_user(stack: LocalStack, profile: UserProfile) -> None:
    assert stack.description
    UserStore(stack.client("dynamodb"), stack.description.ref("UsersTable")).put_profile(profile)


def test_stack_json_names_every_resource(stack: LocalStack) -> None:
    assert stack.state_file is not None
    described = json.loads(Path(stack.state_file).read_text())

    types = {r["type"] for r in described["resources"].values()}
    assert {
        "AWS::Events::EventBus",
        "AWS::SQS::Queue",
        "AWS::DynamoDB::Table",
        "AWS::StepFunctions::StateMachine",
        "AWS::SecretsManager::Secret",
    } <= types
    assert described["resources"]["HeraldBus"]["attributes"]["Name"] == stack.bus_name
    assert described["api_endpoint"] == stack.api.url if stack.api else False
    assert described["not_emulated"], "deliberately skipped resources are listed with their reason"


def test_the_aws_cli_put_events_reaches_the_users_phone(stack: LocalStack) -> None:
    add_user(stack, UserProfile(user_id="cli-1", email="cli-1@example.com", devices={"cli-phone": DEVICE}))
    detail = json.dumps(
        {
            "event_id": "e2e-cli-1",
            "type": "order_shipped",
            "user_id": "cli-1",
            "data": {"order_id": "7", "carrier": "UPS", "tracking_url": "https://t/7", "address": "x"},
        }
    )
    entries = json.dumps(
        [
            {
                "EventBusName": stack.bus_name,
                "Source": "cli",
                "DetailType": "NotificationRequested",
                "Detail": detail,
            }
        ]
    )
    assert stack.moto
    aws = Path(sys.executable).with_name("aws")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }

    done = subprocess.run(
        [str(aws), "--endpoint-url", stack.moto.url, "events", "put-events", "--entries", entries],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["FailedEntryCount"] == 0
    delivered = wait_until(lambda: outbox(stack, provider="fcm", recipient="cli-phone"))
    assert [(e["channel"], e["subject"]) for e in delivered] == [("push", "Order #7 has shipped")]


def test_critical_alert_goes_to_every_channel_and_keeps_sensitive_data_off_the_lock_screen(
    stack: LocalStack,
) -> None:
    add_user(
        stack,
        UserProfile(
            user_id="crit-1",
            email="crit-1+success@simulator.amazonses.com",
            phone="+14155550177",
            devices={"crit-phone": DEVICE},
        ),
    )
    put_event(
        stack,
        {
            "event_id": "e2e-crit-1",
            "type": "security_alert",
            "user_id": "crit-1",
            "data": {
                "action": "Password changed",
                "device": "Safari",
                "ip_address": "198.51.100.9",
                "location": "Porto, PT",
                "review_url": "https://app/security",
            },
        },
    )

    push = wait_until(lambda: outbox(stack, provider="fcm", recipient="crit-phone"))
    sms = wait_until(lambda: outbox(stack, provider="twilio", recipient="+14155550177"))
    emails = wait_until(lambda: emails_to(stack, "crit-1+success@simulator.amazonses.com"))
    assert len(push) == 1 and len(sms) == 1 and len(emails) == 1
    for entry in push + sms:
        text = json.dumps(entry)
        assert "198.51.100.9" not in text and "Porto" not in text


def test_a_repeated_event_is_delivered_once(stack: LocalStack) -> None:
    add_user(stack, UserProfile(user_id="dup-1", devices={"dup-phone": DEVICE}))
    detail = {
        "event_id": "e2e-dup-1",
        "type": "comment_reply",
        "user_id": "dup-1",
        "data": {"author": "Zoe", "excerpt": "hi", "thread_url": "https://app/t/9"},
    }

    for _ in range(3):
        put_event(stack, detail)

    assert wait_until(lambda: outbox(stack, recipient="dup-phone"))
    time.sleep(5)  # time enough for a second delivery to show up, were there one
    assert len(outbox(stack, recipient="dup-phone")) == 1


def test_a_malformed_event_lands_in_the_dead_letter_queue_with_its_reason(stack: LocalStack) -> None:
    assert stack.description
    put_event(
        stack, {"event_id": "e2e-bad-1", "type": "order_shipped", "user_id": "x", "urgency": "whenever"}
    )
    sqs = stack.client("sqs")
    dlq = stack.description.ref("IngestDeadLetterQueue")

    def rejected() -> list[dict]:
        messages = sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=0
        ).get("Messages", [])
        return [
            m for m in messages if m["MessageAttributes"]["herald_event_id"]["StringValue"] == "e2e-bad-1"
        ]

    [message] = wait_until(rejected)
    assert "urgency" in message["MessageAttributes"]["herald_rejection_reason"]["StringValue"]
    assert json.loads(message["Body"])["detail"]["event_id"] == "e2e-bad-1"


def test_quiet_hours_defer_a_push_until_they_end(stack: LocalStack) -> None:
    now = datetime.now(UTC)
    ends = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (ends - now).total_seconds() < 20:
        ends += timedelta(minutes=1)
    window = {"start": (now - timedelta(hours=1)).strftime("%H:%M"), "end": ends.strftime("%H:%M")}
    add_user(stack, UserProfile(user_id="quiet-1", devices={"quiet-phone": DEVICE}, quiet_hours=window))

    put_event(
        stack,
        {
            "event_id": "e2e-quiet-1",
            "type": "comment_reply",
            "user_id": "quiet-1",
            "data": {"author": "Ann", "excerpt": "later", "thread_url": "https://app/t/3"},
        },
    )

    assert wait_until(lambda: outbox(stack, recipient="quiet-phone"), timeout=5) == []
    [push] = wait_until(lambda: outbox(stack, recipient="quiet-phone"), timeout=150)
    assert datetime.fromisoformat(push["time"].replace("Z", "+00:00")) >= ends


def test_the_demo_scenarios_all_get_their_expected_outcome(stack: LocalStack) -> None:
    results, seen = play(stack)

    failed = {s.name: s.observed(seen) for s, ok in results if not ok}
    assert failed == {}
