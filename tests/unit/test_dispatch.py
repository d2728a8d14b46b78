"""SendMessageBatch chunking (at most 10 messages and 256 KiB per call) and the batch outbox."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from herald.dispatch import SQS_BATCH_BYTES, DispatchError, Outbox, send_batches

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


# -- the batch's outbox: messages of several records share calls; refusals name their records -----


class RefusingSqs(RecordingSqs):
    """Refuses the messages whose body contains `refuse`; raises for `broken_queue`."""

    def __init__(self, refuse: str = "", broken_queue: str = "") -> None:
        super().__init__()
        self.refuse = refuse
        self.broken_queue = broken_queue

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        if QueueUrl == self.broken_queue:
            raise ClientError(
                {"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessageBatch"
            )
        failed = [e for e in Entries if self.refuse and self.refuse in e["MessageBody"]]
        return {
            "Successful": [{"Id": e["Id"]} for e in Entries if e not in failed],
            "Failed": [{"Id": e["Id"], "Code": "InternalError", "Message": "boom"} for e in failed],
        }


def test_the_outbox_sends_the_messages_of_many_records_in_shared_calls_per_queue() -> None:
    sqs = RecordingSqs()
    outbox = Outbox()
    for record in range(12):
        outbox.add(f"r{record}", "push", f"push-{record}", 0)
    outbox.add("r0", "email", "email-0", 30)

    refused = outbox.flush(sqs)

    assert refused == {}
    assert [len(c) for c in sqs.calls] == [10, 2, 1]
    assert sqs.calls[2] == [{"Id": "0", "MessageBody": "email-0", "DelaySeconds": 30}]
    assert outbox.flush(sqs) == {} and len(sqs.calls) == 3  # flushed once: nothing left


def test_the_outbox_names_the_records_whose_messages_were_refused_or_whose_call_failed() -> None:
    sqs = RefusingSqs(refuse="push-1", broken_queue="sms")
    outbox = Outbox()
    for record in range(3):
        outbox.add(f"r{record}", "push", f"push-{record}", 0)
    outbox.add("r2", "sms", "sms-2", 0)

    refused = outbox.flush(sqs)

    assert set(refused) == {"r1", "r2"}
    assert "InternalError: boom" in refused["r1"] and "ServiceUnavailable" in refused["r2"]


def test_a_discarded_records_messages_are_not_sent() -> None:
    sqs = RecordingSqs()
    outbox = Outbox()
    outbox.add("r0", "push", "push-0", 0)
    outbox.add("r1", "push", "push-1", 0)

    outbox.discard("r1")
    outbox.flush(sqs)

    assert [e["MessageBody"] for c in sqs.calls for e in c] == ["push-0"]


def test_an_unanswered_call_refuses_its_chunk_and_the_others_still_go() -> None:
    class TimingOutSqs(RecordingSqs):
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            if QueueUrl == "sms":
                raise EndpointConnectionError(endpoint_url="https://sqs.example")
            return super().send_message_batch(QueueUrl, Entries)

    sqs = TimingOutSqs()
    outbox = Outbox()
    outbox.add("r0", "sms", "sms-0", 0)
    outbox.add("r1", "push", "push-1", 0)

    refused = outbox.flush(sqs)

    assert set(refused) == {"r0"} and "Could not connect" in refused["r0"]
    assert [e["MessageBody"] for c in sqs.calls for e in c] == ["push-1"]
