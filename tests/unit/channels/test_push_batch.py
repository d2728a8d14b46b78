"""The push deliverer takes a batch of records together (issue 12 item 4): one suppression read for
every token of every record, one concurrent send, and an answer per record that no other record's
failure decides. In-memory fakes for the ports; the sender's side is in
tests/integration/channels/test_push_batch.py."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from herald.catalog import load_catalog
from herald.channels.context import Crashed, DeliveryContext, Skip
from herald.channels.ports import PushBatchItem
from herald.channels.push_delivery import PushDeliverer
from herald.channels.result import DEAD_TOKEN, Accepted, Effects, PermanentFailure, SendResult
from herald.channels.transport import provider_may_have_it, request_may_leave, send_attempt
from herald.delivery import DeliveryState
from herald.messages import ChannelMessage
from herald.models import Channel
from herald.rendering import TemplateRenderer, TemplateRenderError
from herald.stores.keys import push_address

pytestmark = pytest.mark.unit

CATALOG = load_catalog()


class FakeFcm:
    """Records each `send_batch` call; tokens starting with `dead` are unregistered."""

    name = "fcm"

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[list[PushBatchItem]] = []
        self._error = error

    def send(self, push: Any, tokens: Sequence[str]) -> list[SendResult]:
        return self.send_batch([(push, tokens)])[0]

    def send_batch(self, pushes: Sequence[PushBatchItem]) -> list[list[SendResult]]:
        self.calls.append([(push, list(tokens)) for push, tokens in pushes])
        if self._error is not None:
            request_may_leave(self.name)
            raise self._error
        return [[self._one(t) for t in tokens] for _, tokens in pushes]

    @staticmethod
    def _one(token: str) -> SendResult:
        if token.startswith("dead"):
            dead = Effects(dead_tokens=(token,))
            return PermanentFailure("fcm", "UNREGISTERED", code=DEAD_TOKEN, effects=dead)
        return Accepted("fcm", f"projects/p/messages/{token}")


class FakeSuppression:
    def __init__(self, suppressed: Iterable[str] = (), error: Exception | None = None) -> None:
        self.suppressed = {push_address(t) for t in suppressed}
        self.reads: list[set[str]] = []
        self._error = error

    def suppressed_now(self, addresses: Iterable[str]) -> frozenset[str]:
        asked = set(addresses)
        self.reads.append(asked)
        if self._error is not None:
            raise self._error
        return frozenset(asked & self.suppressed)

    def is_suppressed(self, address: str) -> bool:  # pragma: no cover - must not be used
        raise AssertionError("a per-token read")


def context(n: int, tokens: list[str], load_profile: Any = None, **overrides: Any) -> DeliveryContext:
    entry = CATALOG.entry("payment_receipt")
    fields: dict[str, Any] = {
        "notification_id": f"n-{n}",
        "event_id": f"e-{n}",
        "user_id": f"u{n}",
        "type": "payment_receipt",
        "channel": Channel.PUSH,
        "urgency": entry.urgency,
        "category": entry.category,
        "locale": "en",
        "data": entry.sample_data,
        "device_tokens": tokens,
    }
    fields.update(overrides)
    return DeliveryContext(
        ChannelMessage(**fields), entry, datetime.now(UTC), load_profile=load_profile or (lambda _: None)
    )


def test_the_batch_reads_suppression_once_and_sends_once() -> None:
    fcm, suppression = FakeFcm(), FakeSuppression(suppressed=["t1b"])
    deliverer = PushDeliverer(fcm, TemplateRenderer(), suppression)  # type: ignore[arg-type]
    contexts = [context(1, ["t1a", "t1b"]), context(2, ["t2a"]), context(3, ["t3a", "t3b", "t3c"])]

    answers = deliverer.deliver_batch(contexts)

    every_token = {"t1a", "t1b", "t2a", "t3a", "t3b", "t3c"}
    assert suppression.reads == [{push_address(t) for t in every_token}]  # one batched read
    ((first, second, third),) = fcm.calls  # one send for the three records
    assert [first[1], second[1], third[1]] == [["t1a"], ["t2a"], ["t3a", "t3b", "t3c"]]  # t1b suppressed
    assert [first[0].data["notification_id"], third[0].data["notification_id"]] == ["n-1", "n-3"]
    assert all(isinstance(a, Accepted) for a in answers)
    assert "3 of 3 device(s) accepted" in (answers[2].detail or "")  # type: ignore[union-attr]


def test_each_record_gets_its_own_answer() -> None:
    fcm = FakeFcm()
    deliverer = PushDeliverer(fcm, TemplateRenderer(), FakeSuppression(suppressed=["gone"]))  # type: ignore[arg-type]
    contexts = [
        context(1, ["ok-1", "dead-1"]),  # one device dead, one accepts
        context(2, ["dead-2a", "dead-2b"]),  # every device dead
        context(3, ["gone"]),  # every token already suppressed
        context(4, []),  # no device at all
        context(5, ["ok-5"], data={}),  # its template cannot render: this record only
    ]

    one, two, three, four, five = deliverer.deliver_batch(contexts)

    assert isinstance(one, Accepted) and one.effects.dead_tokens == ("dead-1",)
    assert isinstance(two, PermanentFailure) and two.code == DEAD_TOKEN
    assert set(two.effects.dead_tokens) == {"dead-2a", "dead-2b"}
    assert isinstance(three, Skip) and (three.state, three.code) == (
        DeliveryState.NOT_DELIVERED,
        "no_live_tokens",
    )
    assert four == Skip(DeliveryState.NOT_DELIVERED, "no device token", "no_device")
    assert isinstance(five, Crashed) and isinstance(five.error, TemplateRenderError)
    assert five.provider is None  # nothing of it was sent
    ((sent_one, sent_two),) = fcm.calls
    assert (sent_one[1], sent_two[1]) == (["ok-1", "dead-1"], ["dead-2a", "dead-2b"])


def test_a_failed_suppression_read_sends_nothing_and_marks_no_request() -> None:
    fcm = FakeFcm()
    broken = FakeSuppression(error=RuntimeError("DynamoDB is down"))
    deliverer = PushDeliverer(fcm, TemplateRenderer(), broken)  # type: ignore[arg-type]

    answers = deliverer.deliver_batch([context(1, ["a"]), context(2, ["b"]), context(3, [])])

    assert fcm.calls == []
    assert [type(a) for a in answers] == [Crashed, Crashed, Skip]
    assert all(a.provider is None for a in answers[:2])  # type: ignore[union-attr]


def test_an_error_once_requests_may_have_left_is_each_sent_records_as_uncertain() -> None:
    fcm = FakeFcm(error=RuntimeError("pool broke"))
    deliverer = PushDeliverer(fcm, TemplateRenderer(), FakeSuppression())  # type: ignore[arg-type]

    answers = deliverer.deliver_batch([context(1, ["a"]), context(2, ["b"]), context(3, [])])

    assert [type(a) for a in answers] == [Crashed, Crashed, Skip]
    assert all(a.provider == "fcm" for a in answers[:2])  # type: ignore[union-attr]


def test_a_profile_that_cannot_be_read_fails_its_own_record_only() -> None:
    def unreadable(user_id: str) -> Any:
        raise RuntimeError("throttled")

    fcm = FakeFcm()
    deliverer = PushDeliverer(fcm, TemplateRenderer(), FakeSuppression())  # type: ignore[arg-type]
    escalation = context(1, ["a"], task_token="tt-1", load_profile=unreadable)

    failed, sent = deliverer.deliver_batch([escalation, context(2, ["b"])])

    assert isinstance(failed, Crashed) and failed.provider is None
    assert isinstance(sent, Accepted)
    ((only,),) = fcm.calls
    assert only[1] == ["b"]


def test_delivering_one_raises_with_the_point_of_no_return_marked() -> None:
    deliverer = PushDeliverer(FakeFcm(error=RuntimeError("boom")), TemplateRenderer(), FakeSuppression())  # type: ignore[arg-type]

    with send_attempt(), pytest.raises(RuntimeError, match="boom"):
        try:
            deliverer.deliver(context(1, ["a"]))
        finally:
            assert provider_may_have_it() == "fcm"
