"""Rate counters: one item per person and hour, added for a whole batch in one transaction."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from herald.models import Channel
from herald.stores import rate_counters
from herald.stores.rate_counters import RateCounterStore, usage_from_item

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


class FakeDynamo:
    def __init__(self, cancel: list[str] | None = None, times: int = 0, refuse_update: str = "") -> None:
        self.transactions: list[list[dict[str, Any]]] = []
        self.tokens: list[str] = []
        self.updates: list[dict[str, Any]] = []
        self.cancel, self.times, self.refuse_update = cancel or [], times, refuse_update

    def transact_write_items(
        self, TransactItems: list[dict[str, Any]], ClientRequestToken: str
    ) -> dict[str, Any]:
        self.transactions.append(TransactItems)
        self.tokens.append(ClientRequestToken)
        if self.times:
            self.times -= 1
            reasons = [{"Code": code} for code in self.cancel]
            raise ClientError(
                {"Error": {"Code": "TransactionCanceledException"}, "CancellationReasons": reasons},
                "TransactWriteItems",
            )
        return {}

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        if self.refuse_update and kwargs["Key"]["pk"]["S"].startswith(self.refuse_update):
            raise ClientError({"Error": {"Code": "TransactionConflictException"}}, "UpdateItem")
        self.updates.append(kwargs)
        return {}


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rate_counters.time, "sleep", lambda _: None)


def test_a_batch_is_counted_in_one_transaction_one_item_per_person() -> None:
    client = FakeDynamo()
    counts = {f"u{i}": Counter({Channel.PUSH: 1}) for i in range(150)}
    counts["u0"] = Counter({Channel.PUSH: 2, Channel.EMAIL: 1})

    lost = RateCounterStore(client, "counters").add_many(counts, NOW, request_token="batch-1")

    assert lost == 0
    assert [len(t) for t in client.transactions] == [100, 50]  # DynamoDB's 100 items per transaction
    assert len(set(client.tokens)) == 2 and all(
        len(t) <= 36 for t in client.tokens
    )  # DynamoDB's 100 items per transaction
    first = client.transactions[0][0]["Update"]
    assert first["Key"] == {"pk": {"S": "u0#2026120109"}}
    assert first["UpdateExpression"] == "ADD #c0 :c0, #c1 :c1 SET expires_at = :expires"
    assert first["ExpressionAttributeNames"] == {"#c0": "push", "#c1": "email"}
    assert first["ExpressionAttributeValues"][":c0"] == {"N": "2"}
    assert client.updates == []


def test_a_transaction_that_keeps_meeting_another_is_counted_person_by_person() -> None:
    client = FakeDynamo(cancel=["None", "TransactionConflict"], times=10)

    RateCounterStore(client, "counters").add_many(
        {"a": Counter({Channel.SMS: 1}), "b": Counter({Channel.SMS: 3})}, NOW
    )

    assert len(client.transactions) == rate_counters.CONFLICT_RETRIES
    assert [u["Key"]["pk"]["S"] for u in client.updates] == ["a#2026120109", "b#2026120109"]


def test_a_conflict_that_clears_is_retried_in_one_transaction_under_a_new_token() -> None:
    client = FakeDynamo(cancel=["TransactionConflict"], times=1)

    RateCounterStore(client, "counters").add_many({"a": Counter({Channel.SMS: 1})}, NOW, request_token="b")

    assert len(client.transactions) == 2 and client.updates == []
    assert client.tokens[0] != client.tokens[1]  # an idempotent repeat would not run it again


def test_the_same_batch_asks_with_the_same_token() -> None:
    first, second = FakeDynamo(), FakeDynamo()
    counts = {"a": Counter({Channel.SMS: 1})}

    RateCounterStore(first, "counters").add_many(counts, NOW, request_token="b")
    RateCounterStore(second, "counters").add_many(counts, NOW, request_token="b")

    assert first.tokens == second.tokens


def test_a_transaction_refused_for_another_reason_is_counted_person_by_person() -> None:
    client = FakeDynamo(cancel=["ValidationError"], times=1)

    lost = RateCounterStore(client, "counters").add_many({"a": Counter({Channel.SMS: 1})}, NOW)

    assert lost == 0 and len(client.transactions) == 1
    assert [u["Key"]["pk"]["S"] for u in client.updates] == ["a#2026120109"]


def test_a_person_whose_counter_cannot_be_written_is_the_only_one_lost() -> None:
    client = FakeDynamo(cancel=["TransactionConflict"], times=10, refuse_update="b#")
    counts = {user: Counter({Channel.PUSH: 1}) for user in ("a", "b", "c")}

    lost = RateCounterStore(client, "counters").add_many(counts, NOW)

    assert lost == 1
    assert [u["Key"]["pk"]["S"] for u in client.updates] == ["a#2026120109", "c#2026120109"]


def test_an_items_counts_are_read_per_channel() -> None:
    assert usage_from_item({"pk": "u#2026120109", "push": 3, "sms": 1, "expires_at": 1}) == {
        Channel.PUSH: 3,
        Channel.SMS: 1,
    }
