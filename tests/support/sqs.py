"""Lambda's SQS event, built by hand for tests that invoke a handler without a queue."""

from __future__ import annotations

import json
from typing import Any

DEFAULT_ARN = "arn:aws:sqs:us-east-1:123456789012:herald-test"


def sqs_record(body: str, *, index: int = 0, arn: str = DEFAULT_ARN) -> dict[str, Any]:
    """One record as Lambda's SQS event source delivers it (first receive)."""
    return {
        "messageId": f"msg-{index}",
        "receiptHandle": f"rh-{index}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1795348800000",
            "SenderId": "AIDA",
            "ApproximateFirstReceiveTimestamp": "1795348800001",
        },
        "messageAttributes": {},
        "md5OfBody": "0",
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": arn.split(":")[3],
    }


def sqs_event(*bodies: str, arn: str = DEFAULT_ARN) -> dict[str, Any]:
    """An SQS event with one record per body, in order."""
    return {"Records": [sqs_record(body, index=i, arn=arn) for i, body in enumerate(bodies)]}


def received_event(messages: list[dict[str, Any]], arn: str) -> dict[str, Any]:
    """Lambda's SQS event for messages received from a real queue (`ReceiveMessage` with
    `AttributeNames=["All"]`), as the event source mapping hands them to the function."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": arn.split(":")[3],
            }
            for m in messages
        ]
    }


def directory_body(detail_type: str, detail: dict[str, Any]) -> str:
    """The body a bus rule puts on the directory queue: EventBridge's envelope around a
    `UserUpserted` / `UserDeleted` detail (its id derived from the user and version)."""
    return json.dumps(
        {
            "version": "0",
            "id": f"evt-{detail.get('user_id')}-{detail.get('version')}",
            "detail-type": detail_type,
            "source": "tests.integration",
            "time": "2026-11-30T12:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        }
    )
