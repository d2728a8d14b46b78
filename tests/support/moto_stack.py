"""Herald's AWS resources inside moto (in-process), for handler tests: tables from template.yaml,
queues with their DLQs, the escalation state machine from its ASL, the scheduler group."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3

from tests.support.aws import REPO_ROOT, create_tables_from_template

REGION = "us-east-1"
ACCOUNT = "123456789012"
CHANNEL_QUEUES = ("Email", "Push", "Sms", "Realtime", "Webhook")
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}

TABLE_ENV = {
    "UsersTable": "USERS_TABLE",
    "PresenceTable": "PRESENCE_TABLE",
    "SuppressionTable": "SUPPRESSION_TABLE",
    "NotificationsTable": "NOTIFICATIONS_TABLE",
    "RateCountersTable": "RATE_COUNTERS_TABLE",
    "IdempotencyTable": "IDEMPOTENCY_TABLE",
}


@dataclass
class MotoStack:
    env: dict[str, str] = field(default_factory=dict)
    queue_urls: dict[str, str] = field(default_factory=dict)
    dlq_urls: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    state_machine_arn: str = ""

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION)

    def drain(self, queue: str, max_messages: int = 100) -> list[dict[str, Any]]:
        """Receive (and delete) every visible message of a queue; bodies parsed as JSON."""
        sqs = self.client("sqs")
        url = self.queue_urls.get(queue) or self.dlq_urls[queue.removesuffix("DeadLetter")]
        messages: list[dict[str, Any]] = []
        while len(messages) < max_messages:
            batch = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
            ).get("Messages", [])
            if not batch:
                break
            for message in batch:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            messages.extend(batch)
        return messages


def provision(prefix: str = "herald-test-") -> MotoStack:
    stack = MotoStack()
    stack.tables = create_tables_from_template(stack.client("dynamodb"), prefix=prefix)
    for logical_id, variable in TABLE_ENV.items():
        stack.env[variable] = stack.tables[logical_id]

    sqs = stack.client("sqs")
    for name in ("Ingest", *CHANNEL_QUEUES):
        dlq_url = sqs.create_queue(QueueName=f"{prefix}{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        url = sqs.create_queue(
            QueueName=f"{prefix}{name}",
            Attributes={
                "VisibilityTimeout": "60",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
            },
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        stack.queue_urls[name] = url
        stack.dlq_urls[name] = dlq_url
        stack.env[f"{name.upper()}_QUEUE_URL"] = url
        stack.env[f"{name.upper()}_QUEUE_ARN"] = arn
        stack.env[f"{name.upper()}_DLQ_URL"] = dlq_url

    definition = (REPO_ROOT / "statemachine" / "escalation.asl.json").read_text()
    definition = definition.replace("${EmailQueueUrl}", stack.queue_urls["Email"])
    stack.state_machine_arn = stack.client("stepfunctions").create_state_machine(
        name=f"{prefix}escalation",
        definition=definition,
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/herald-escalation",
        type="STANDARD",
    )["stateMachineArn"]
    stack.client("scheduler").create_schedule_group(Name=f"{prefix}schedules")

    stack.env.update(
        {
            "STAGE": "dev",
            "AWS_DEFAULT_REGION": REGION,
            "POWERTOOLS_SERVICE_NAME": "herald",
            "POWERTOOLS_METRICS_NAMESPACE": "Herald",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "ESCALATION_STATE_MACHINE_ARN": stack.state_machine_arn,
            "SCHEDULER_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/herald-scheduler",
            "SCHEDULE_GROUP": f"{prefix}schedules",
            "RATE_LIMITS": json.dumps({"email": 20, "push": 30, "sms": 5, "realtime": 120, "webhook": 600}),
            "FALLBACK_DELAY_SECONDS": "300",
            "DIGEST_DELAY_SECONDS": "86400",
            "PRESENCE_MAX_AGE_SECONDS": "21600",
            "NOTIFICATION_RETENTION_DAYS": "90",
        }
    )
    return stack
