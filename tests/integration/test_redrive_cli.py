"""The local stack's redrive (moto has no StartMessageMoveTask): every dead-lettered message back in
its queue with its body and its own attributes, without Herald's dead-letter bookkeeping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from herald_cli.redrive import RedriveError, move_messages, queue_pair

pytestmark = pytest.mark.integration

DEAD_LETTER_ATTRIBUTES = {
    "herald_dead_letter_reason": {"DataType": "String", "StringValue": "provider outage: past the tolerance"},
    "herald_failing_since": {"DataType": "String", "StringValue": "2026-03-01T12:00:00+00:00"},
    "herald_failures": {"DataType": "Number", "StringValue": "9"},
    "herald_retry_at": {"DataType": "Number", "StringValue": "1772366400"},
    "tenant": {"DataType": "String", "StringValue": "acme"},
}


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def queues(sqs: Any) -> tuple[str, str]:
    dlq = sqs.create_queue(QueueName="sms-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName="sms",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "28"})},
    )["QueueUrl"]
    return queue, dlq


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=60
    ).get("Messages", []):
        found += batch
    return found


def test_every_message_goes_back_with_its_body_and_attributes_minus_the_bookkeeping(sqs: Any) -> None:
    queue, dlq = queues(sqs)
    bodies = [json.dumps({"notification_id": f"ntf-{i}", "channel": "sms"}) for i in range(13)]
    for body in bodies:
        sqs.send_message(QueueUrl=dlq, MessageBody=body, MessageAttributes=DEAD_LETTER_ATTRIBUTES)

    report = move_messages(sqs, queue_pair(sqs, queue))

    assert (report.moved, report.failed) == (13, 0)
    back = drain(sqs, queue)
    assert sorted(m["Body"] for m in back) == sorted(bodies)
    assert all(set(m["MessageAttributes"]) == {"tenant"} for m in back)
    assert all(m["MessageAttributes"]["tenant"]["StringValue"] == "acme" for m in back)
    assert drain(sqs, dlq) == []


def test_a_limit_moves_only_that_many(sqs: Any) -> None:
    queue, dlq = queues(sqs)
    for i in range(7):
        sqs.send_message(QueueUrl=dlq, MessageBody=f"m{i}")

    report = move_messages(sqs, queue_pair(sqs, queue), limit=3)

    assert report.moved == 3
    assert len(drain(sqs, queue)) == 3
    assert len(drain(sqs, dlq)) == 4


def test_a_queue_without_a_dead_letter_queue_is_refused(sqs: Any) -> None:
    plain = sqs.create_queue(QueueName="plain")["QueueUrl"]
    with pytest.raises(RedriveError, match="no RedrivePolicy"):
        queue_pair(sqs, plain)
