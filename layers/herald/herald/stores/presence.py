"""Presence table: who has an occupied `private-user-<id>` channel right now.

One item per person (`user_id`): `occupied`, the `time_ms` of the Pusher webhook that set it and
`expires_at` (the table's TTL). Written only by `PresenceStore.apply`, in `time_ms` order
(decision 018); read by the router (`Presence.online_at`) and the realtime sender.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from herald.stores.dynamo import from_attributes, to_attributes


class Presence(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    occupied: bool = False
    time_ms: int = 0
    expires_at: int | None = None

    def online_at(self, now: datetime, max_age_seconds: int) -> bool:
        """Occupied, not expired, and confirmed by a webhook no older than `max_age_seconds`.

        Lost webhooks would otherwise leave a user "online" forever and starve them of pushes.
        """
        now_s = now.timestamp()
        if not self.occupied:
            return False
        if self.expires_at is not None and self.expires_at <= now_s:
            return False
        return now_s - self.time_ms / 1000 <= max_age_seconds


def presence_key(user_id: str) -> dict[str, str]:
    return {"user_id": user_id}


def presence_from_item(item: dict[str, Any]) -> Presence:
    return Presence.model_validate(item)


class PresenceStore:
    """Conditional writes of a person's channel occupancy, newest `time_ms` wins.

    Conditional writes cannot be batched (BatchWriteItem has no conditions; a transaction would
    fail whole on one stale event), so each change is one UpdateItem.
    """

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def apply(self, user_id: str, *, occupied: bool, time_ms: int, max_age_seconds: int) -> bool:
        """Record `occupied` as of `time_ms`; False (nothing written) when the item already holds
        a newer state, or this very state (a repeat).

        Equal `time_ms` (two webhooks of the same millisecond): vacated wins, so the final state
        does not depend on the order they arrive in. `expires_at` bounds the item's life, occupied
        or not (a vacated item is kept that long only to refuse a late older "occupied").
        """
        condition = "attribute_not_exists(time_ms) OR time_ms < :t"
        values: dict[str, Any] = {
            ":t": time_ms,
            ":o": occupied,
            ":e": time_ms // 1000 + max_age_seconds,
        }
        if not occupied:
            condition += " OR (time_ms = :t AND occupied = :true)"
            values[":true"] = True
        try:
            self._client.update_item(
                TableName=self._table,
                Key=to_attributes(presence_key(user_id)),
                UpdateExpression="SET occupied = :o, time_ms = :t, expires_at = :e",
                ConditionExpression=condition,
                ExpressionAttributeValues=to_attributes(values),
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def online(self, now: datetime, max_age_seconds: int) -> list[Presence]:
        """Everyone online at `now` (`Presence.online_at`), longest online first. A paged Scan of
        the occupied items: an operator's listing (the console), never on a delivery path."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "occupied = :true",
            "ExpressionAttributeValues": to_attributes({":true": True}),
        }
        found: list[Presence] = []
        while True:
            response = self._client.scan(**params)
            found += [presence_from_item(from_attributes(item)) for item in response.get("Items", [])]
            if not response.get("LastEvaluatedKey"):
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        online = [p for p in found if p.online_at(now, max_age_seconds)]
        return sorted(online, key=lambda p: (p.time_ms, p.user_id))
