"""Move a queue's dead-lettered messages back to the queue (`herald redrive <queue>`).

On AWS, SQS does the move: `StartMessageMoveTask` from the DLQ to the queue. The destination is
always named, because the messages Herald dead-letters itself (rejections, outages past the
tolerance) were sent to the DLQ, not moved there by SQS, and have no "original source queue". SQS
moves them as they are, dead-letter attributes included (the senders ignore them).

On the local stack moto has no `StartMessageMoveTask` (it answers 500), so the same move is done
by hand: receive from the DLQ, `SendMessageBatch` to the queue with the original body and message
attributes minus Herald's dead-letter bookkeeping (`herald.dead_letter`), then `DeleteMessageBatch`
of what was sent. A message that could not be sent stays in the DLQ.

A redriven message starts a fresh outage budget: the sender ended its retry run when it
dead-lettered it (docs/decisions/010-outage-budget-in-time.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from herald.dead_letter import without_bookkeeping

# `herald redrive <queue>`: the template's queues that have a DLQ, by the name operators use.
QUEUES = {
    "email": "EmailQueue",
    "push": "PushQueue",
    "sms": "SmsQueue",
    "realtime": "RealtimeQueue",
    "webhook": "WebhookQueue",
    "ingest": "IngestQueue",
    "broadcast": "BroadcastQueue",
    "feedback": "FeedbackQueue",
}
FINISHED_TASK_STATES = frozenset({"COMPLETED", "CANCELLED", "FAILED"})


class RedriveError(Exception):
    """Something an operator must fix (unknown stack, queue without a DLQ, ...)."""


@dataclass(frozen=True)
class QueuePair:
    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str
    dead_letter_queue_arn: str

    @property
    def queue_name(self) -> str:
        return self.queue_arn.rsplit(":", 1)[-1]

    @property
    def dead_letter_queue_name(self) -> str:
        return self.dead_letter_queue_arn.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class MoveReport:
    moved: int
    failed: int
    failures: tuple[str, ...] = ()


def queue_pair(sqs: Any, queue_url: str) -> QueuePair:
    """The queue and the DLQ its RedrivePolicy names."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn", "RedrivePolicy"])[
        "Attributes"
    ]
    policy = attributes.get("RedrivePolicy")
    if not policy:
        raise RedriveError(f"{queue_url} has no RedrivePolicy: it has no dead-letter queue")
    dlq_arn = str(json.loads(policy)["deadLetterTargetArn"])
    parts = dlq_arn.split(":")
    dlq_url = sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
    return QueuePair(queue_url, attributes["QueueArn"], dlq_url, dlq_arn)


def messages_waiting(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"].get("ApproximateNumberOfMessages", 0))


def start_move_task(sqs: Any, pair: QueuePair, *, rate: int | None = None) -> str:
    """AWS: SQS moves the DLQ's messages to the queue in the background; returns the task handle."""
    arguments: dict[str, Any] = {"SourceArn": pair.dead_letter_queue_arn, "DestinationArn": pair.queue_arn}
    if rate is not None:
        arguments["MaxNumberOfMessagesPerSecond"] = rate
    return str(sqs.start_message_move_task(**arguments)["TaskHandle"])


def wait_for_move_task(
    sqs: Any,
    pair: QueuePair,
    task_handle: str,
    *,
    poll_seconds: float = 5.0,
    timeout_seconds: float = 900.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """The task's last status (ListMessageMoveTasks) once finished, or when the wait times out."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        tasks = sqs.list_message_move_tasks(SourceArn=pair.dead_letter_queue_arn, MaxResults=10)["Results"]
        task = next((t for t in tasks if t.get("TaskHandle") == task_handle), tasks[0] if tasks else {})
        if task.get("Status") in FINISHED_TASK_STATES or time.monotonic() >= deadline:
            return task
        sleep(poll_seconds)


def _sendable(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """ReceiveMessage's attributes as SendMessage takes them, minus Herald's bookkeeping."""
    sendable: dict[str, Any] = {}
    for name, value in without_bookkeeping(attributes).items():
        attribute = {"DataType": value["DataType"]}
        for key in ("StringValue", "BinaryValue"):
            if key in value:
                attribute[key] = value[key]
        sendable[name] = attribute
    return sendable


def move_messages(
    sqs: Any, pair: QueuePair, *, limit: int | None = None, visibility_timeout: int = 120
) -> MoveReport:
    """The local stack's redrive: receive from the DLQ, send to the queue, delete what was sent."""
    moved = failed = 0
    failures: list[str] = []
    while limit is None or moved + failed < limit:
        wanted = 10 if limit is None else max(1, min(10, limit - moved - failed))
        batch = sqs.receive_message(
            QueueUrl=pair.dead_letter_queue_url,
            MaxNumberOfMessages=wanted,
            MessageAttributeNames=["All"],
            VisibilityTimeout=visibility_timeout,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not batch:
            break
        entries = []
        for index, message in enumerate(batch):
            entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
            attributes = _sendable(message.get("MessageAttributes"))
            if attributes:
                entry["MessageAttributes"] = attributes
            entries.append(entry)
        response = sqs.send_message_batch(QueueUrl=pair.queue_url, Entries=entries)
        sent = {item["Id"] for item in response.get("Successful", [])}
        for item in response.get("Failed", []):
            failed += 1
            message_id = batch[int(item["Id"])]["MessageId"]
            failures.append(f"{message_id}: {item.get('Code')} {item.get('Message', '')}")
        done = [
            {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
            for index, message in enumerate(batch)
            if str(index) in sent
        ]
        if done:
            deleted = sqs.delete_message_batch(QueueUrl=pair.dead_letter_queue_url, Entries=done)
            for item in deleted.get("Failed", []):  # sent but still in the DLQ: it would come back twice
                failures.append(f"{batch[int(item['Id'])]['MessageId']}: sent, but not deleted from the DLQ")
        moved += len(sent)
    return MoveReport(moved=moved, failed=failed, failures=tuple(failures))
