"""Suppression table: addresses Herald must never use again (bounces, complaints, STOP, dead tokens)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from herald.stores.dynamo import batch_get, to_attributes


def suppression_key(address: str) -> dict[str, str]:
    return {"address": address}


class SuppressionStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def suppressed_among(self, addresses: Iterable[str]) -> frozenset[str]:
        """Which of these addresses are suppressed: one batched read."""
        keys = [suppression_key(a) for a in set(addresses)]
        if not keys:
            return frozenset()
        found = batch_get(self._client, {self._table: keys})[self._table]
        return frozenset(item["address"] for item in found)

    def is_suppressed(self, address: str) -> bool:
        response = self._client.get_item(
            TableName=self._table, Key=to_attributes(suppression_key(address)), ConsistentRead=True
        )
        return "Item" in response

    def suppress(self, address: str, reason: str, source: str, now: datetime | None = None) -> None:
        """Suppress an address; the first reason recorded wins (later ones are kept as `last_reason`)."""
        at = (now or datetime.now(UTC)).isoformat()
        self._client.update_item(
            TableName=self._table,
            Key=to_attributes(suppression_key(address)),
            UpdateExpression="SET #reason = if_not_exists(#reason, :reason), #source = if_not_exists("
            "#source, :source), created_at = if_not_exists(created_at, :at), last_reason = :reason, "
            "updated_at = :at",
            ExpressionAttributeNames={"#reason": "reason", "#source": "source"},
            ExpressionAttributeValues=to_attributes({":reason": reason, ":source": source, ":at": at}),
        )

    def release(self, address: str) -> None:
        """Lift a suppression (e.g. an SMS START reply)."""
        self._client.delete_item(TableName=self._table, Key=to_attributes(suppression_key(address)))
