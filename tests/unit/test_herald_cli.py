"""`herald redrive`: on AWS, a StartMessageMoveTask from the channel's DLQ (found through the queue's
RedrivePolicy, the queue through the stack's resources) back to the queue, checked against the SQS
and CloudFormation service models (botocore's Stubber); the command's usage errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from click.testing import CliRunner

from herald_cli.main import cli
from herald_cli.redrive import queue_pair, start_move_task, wait_for_move_task
from herald_cli.target import AwsTarget

pytestmark = pytest.mark.unit

ACCOUNT = "123456789012"
QUEUE_URL = f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/herald-prod-SmsQueue-AbC"
QUEUE_ARN = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:herald-prod-SmsQueue-AbC"
DLQ_URL = f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/herald-prod-SmsDeadLetterQueue-XyZ"
DLQ_ARN = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:herald-prod-SmsDeadLetterQueue-XyZ"


def client(service: str) -> Any:
    return boto3.session.Session(
        region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    ).client(service)


class OneClientPerService:
    """A boto3 session's `client()` answering with the given (stubbed) clients."""

    def __init__(self, **clients: Any) -> None:
        self._clients = clients

    def client(self, service: str, **_: Any) -> Any:
        return self._clients[service]


def test_on_aws_the_dlq_is_moved_back_to_the_queue_by_an_sqs_move_task() -> None:
    cloudformation, sqs = client("cloudformation"), client("sqs")
    with Stubber(cloudformation) as cfn_stub, Stubber(sqs) as sqs_stub:
        cfn_stub.add_response(
            "list_stack_resources",
            {
                "StackResourceSummaries": [
                    {
                        "LogicalResourceId": "SmsQueue",
                        "PhysicalResourceId": QUEUE_URL,
                        "ResourceType": "AWS::SQS::Queue",
                        "LastUpdatedTimestamp": "2026-03-01T12:00:00Z",
                        "ResourceStatus": "CREATE_COMPLETE",
                    }
                ]
            },
            {"StackName": "herald-prod"},
        )
        sqs_stub.add_response(
            "get_queue_attributes",
            {
                "Attributes": {
                    "QueueArn": QUEUE_ARN,
                    "RedrivePolicy": json.dumps({"deadLetterTargetArn": DLQ_ARN, "maxReceiveCount": 28}),
                }
            },
            {"QueueUrl": QUEUE_URL, "AttributeNames": ["QueueArn", "RedrivePolicy"]},
        )
        sqs_stub.add_response(
            "get_queue_url",
            {"QueueUrl": DLQ_URL},
            {"QueueName": "herald-prod-SmsDeadLetterQueue-XyZ", "QueueOwnerAWSAccountId": ACCOUNT},
        )
        # The destination is named: Herald's own dead-letters have no "original source queue".
        sqs_stub.add_response(
            "start_message_move_task",
            {"TaskHandle": "task-1"},
            {"SourceArn": DLQ_ARN, "DestinationArn": QUEUE_ARN, "MaxNumberOfMessagesPerSecond": 50},
        )
        for status, moved in (("RUNNING", 3), ("COMPLETED", 7)):
            sqs_stub.add_response(
                "list_message_move_tasks",
                {
                    "Results": [
                        {
                            "TaskHandle": "task-1",
                            "Status": status,
                            "SourceArn": DLQ_ARN,
                            "DestinationArn": QUEUE_ARN,
                            "ApproximateNumberOfMessagesMoved": moved,
                            "ApproximateNumberOfMessagesToMove": 7,
                        }
                    ]
                },
                {"SourceArn": DLQ_ARN, "MaxResults": 10},
            )

        target = AwsTarget("herald-prod", OneClientPerService(cloudformation=cloudformation, sqs=sqs))
        pair = queue_pair(sqs, target.physical_id("SmsQueue"))
        handle = start_move_task(sqs, pair, rate=50)
        task = wait_for_move_task(sqs, pair, handle, sleep=lambda _: None)

        cfn_stub.assert_no_pending_responses()
        sqs_stub.assert_no_pending_responses()
    assert (pair.dead_letter_queue_url, pair.queue_name) == (DLQ_URL, "herald-prod-SmsQueue-AbC")
    assert (task["Status"], task["ApproximateNumberOfMessagesMoved"]) == ("COMPLETED", 7)


def test_the_command_needs_a_stack_name_or_the_local_stack() -> None:
    result = CliRunner().invoke(cli, ["redrive", "sms"])
    assert result.exit_code == 2
    assert "--stack-name NAME (AWS) or --local" in result.output
    both = CliRunner().invoke(cli, ["redrive", "sms", "--local", "--stack-name", "herald-prod"])
    assert both.exit_code == 2


def test_an_unknown_queue_is_refused_with_the_known_ones() -> None:
    result = CliRunner().invoke(cli, ["redrive", "carrier-pigeon", "--local"])
    assert result.exit_code == 2
    assert "email" in result.output and "webhook" in result.output


def test_without_a_local_stack_the_command_says_how_to_start_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["redrive", "sms", "--local", "--state-file", str(tmp_path / "none.json")]
    )
    assert result.exit_code == 1
    assert "make local" in result.output
