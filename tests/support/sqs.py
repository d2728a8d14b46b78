"""Lambda's SQS event, built by hand for tests that invoke a handler without a queue."""

from __future__ import annotations

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
