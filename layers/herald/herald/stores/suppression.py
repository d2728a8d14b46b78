"""Suppression table: addresses Herald must never use again (bounces, complaints, STOP, dead tokens,
an erased person's opt-outs).

Keys are hashes (`herald.stores.keys.email_address` / `sms_address` / `push_address`, decision 017);
the plain address is kept beside it as `contact`, for support, until the person is erased.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

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

    def suppress(
        self,
        address: str,
        reason: str,
        source: str,
        now: datetime | None = None,
        contact: str | None = None,
        notification_id: str | None = None,
    ) -> None:
        """Suppress an address (a key from herald.stores.keys); the first reason recorded wins (later
        ones are kept as `last_reason`). `contact`: the plain address, kept for support;
        `notification_id`: the notification whose feedback caused it (the first one is kept)."""
        at = (now or datetime.now(UTC)).isoformat()
        expression = (
            "SET #reason = if_not_exists(#reason, :reason), #source = if_not_exists(#source, :source), "
            "created_at = if_not_exists(created_at, :at), last_reason = :reason, updated_at = :at"
        )
        values: dict[str, Any] = {":reason": reason, ":source": source, ":at": at}
        if contact is not None:
            expression += ", contact = :contact"
            values[":contact"] = contact
        if notification_id is not None:
            expression += ", notification_id = if_not_exists(notification_id, :notification_id)"
            values[":notification_id"] = notification_id
        self._client.update_item(
            TableName=self._table,
            Key=to_attributes(suppression_key(address)),
            UpdateExpression=expression,
            ExpressionAttributeNames={"#reason": "reason", "#source": "source"},
            ExpressionAttributeValues=to_attributes(values),
        )

    def keep_anonymously(
        self, address: str, *, opted_out: bool, source: str = "erasure", now: datetime | None = None
    ) -> bool:
        """For an erased person: drop the entry's plain `contact` and the notification that caused
        it (whose record the erasure deletes), keep the hashed entry. With `opted_out`, record an
        `opted_out` entry if there is none (their channel opt-out outlives them). True when an
        entry exists afterwards."""
        key = to_attributes(suppression_key(address))
        if opted_out:
            at = (now or datetime.now(UTC)).isoformat()
            self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET #reason = if_not_exists(#reason, :reason), #source = if_not_exists("
                "#source, :source), created_at = if_not_exists(created_at, :at), updated_at = :at "
                "REMOVE contact, notification_id",
                ExpressionAttributeNames={"#reason": "reason", "#source": "source"},
                ExpressionAttributeValues=to_attributes(
                    {":reason": "opted_out", ":source": source, ":at": at}
                ),
            )
            return True
        try:
            self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="REMOVE contact, notification_id",
                ConditionExpression="attribute_exists(address)",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False  # never suppressed: nothing to keep
        return True

    def release(self, address: str) -> None:
        """Lift a suppression (e.g. an SMS START reply)."""
        self._client.delete_item(TableName=self._table, Key=to_attributes(suppression_key(address)))

    def release_opt_out(self, address: str) -> bool:
        """Lift an entry only if it is nothing but an opt-out (an SMS START reply): its reason and
        its latest reason are `opted_out`. A bounce, a complaint or an unreachable number — even
        one reported after the opt-out — stays. False when nothing was lifted."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=to_attributes(suppression_key(address)),
                ConditionExpression="#reason = :opted_out AND "
                "(attribute_not_exists(last_reason) OR last_reason = :opted_out)",
                ExpressionAttributeNames={"#reason": "reason"},
                ExpressionAttributeValues=to_attributes({":opted_out": "opted_out"}),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True
