"""Presence table: who has an occupied `private-user-<id>` channel right now.

One item per person (`user_id`): `occupied`, the `time_ms` of the Pusher webhook that set it and
`expires_at` (the table's TTL). Written only by `PresenceStore.apply`, in `time_ms` order
(decision 018); read by the router (`Presence.online_at`) and the realtime sender.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, ValidationError

from herald.stores.dynamo import scan_page, to_attributes

logger = Logger(child=True)


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

    def online_page(
        self, now: datetime, max_age_seconds: int, *, limit: int, after: str | None = None
    ) -> tuple[list[Presence], str | None]:
        """Up to `limit` people online at `now` (`Presence.online_at`, as routing decides), in the
        table's order, and the user id to go on `after` (None at the end): the console's listing (a
        paged Scan of the occupied items, never on a delivery path). An item that does not parse
        is left out and logged, as routing counts that person offline."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "occupied = :true",
            "ExpressionAttributeValues": to_attributes({":true": True}),
        }
        items, last = scan_page(self._client, params, limit, presence_key(after) if after else None)
        online: list[Presence] = []
        for item in items:
            try:
                presence = presence_from_item(item)
            except ValidationError:
                logger.warning("unreadable presence item: left out", extra={"user_id": item.get("user_id")})
                continue
            if presence.online_at(now, max_age_seconds):
                online.append(presence)
        return online, (str(last["user_id"]) if last else None)
