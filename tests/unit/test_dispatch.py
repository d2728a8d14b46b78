"""SendMessageBatch chunking: at most 10 messages and 256 KiB per call."""

from __future__ import annotations

from typing import Any

import pytest

from herald.dispatch import SQS_BATCH_BYTES, DispatchError, send_batches

pytestmark = pytest.mark.unit


class RecordingSqs:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.fail = fail

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        if self.fail:
            return {"Failed": [{"Id": Entries[0]["Id"], "Code": "InternalError", "Message": "boom"}]}
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def test_batches_hold_at_most_ten_messages() -> None:
    sqs = RecordingSqs()

    send_batches(sqs, "q", [(f"m{i}", 0) for i in range(23)])

    assert [len(c) for c in sqs.calls] == [10, 10, 3]


def test_batches_stay_under_the_request_size_limit() -> None:
    sqs = RecordingSqs()
    big = "x" * (100 * 1024)

    send_batches(sqs, "q", [(big, 0)] * 5)

    assert [len(c) for c in sqs.calls] == [2, 2, 1]
    assert all(sum(len(e["MessageBody"]) for e in c) <= SQS_BATCH_BYTES for c in sqs.calls)


def test_delays_travel_per_message_and_failures_raise() -> None:
    sqs = RecordingSqs()
    send_batches(sqs, "q", [("a", 0), ("b", 30)])
    assert [e.get("DelaySeconds") for e in sqs.calls[0]] == [None, 30]

    with pytest.raises(DispatchError, match="InternalError: boom"):
        send_batches(RecordingSqs(fail=True), "q", [("a", 0)])
