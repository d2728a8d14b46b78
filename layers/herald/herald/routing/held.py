"""Requests held until their `send_at`: the request stays in DynamoDB, the schedule names it.

A `send_at` more than 15 minutes away is an EventBridge Scheduler schedule on the ingest queue.
Its input must not hold the request's data (decision 008), so the released envelope is written to
the notifications table under its own partition (`user_id = "#held#<schedule name>"`,
`notification_id` the same; no `created_at` or `digest_day`, so those indexes do not see it, and
the `ByNotification` index has one key per held request, never one shared hot key) and the
schedule's input is the envelope without `data`, marked `herald.held = <schedule name>`. When the
schedule fires the router reads the held envelope back (consistently) and routes it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from herald.ingest import IngestEnvelope
from herald.stores.dynamo import from_attributes, to_attributes

HELD_PARTITION_PREFIX = "#held#"
# Before decision 025 every held request's sort key was this one; a schedule created then still
# finds its request (read as a fallback until they have all fired: at most the retention period).
LEGACY_SORT_KEY = "request"


class HeldRequests:
    def __init__(self, client: Any, table: str, retention: timedelta) -> None:
        self._client = client
        self._table = table
        self._retention = retention

    @staticmethod
    def key(name: str) -> dict[str, Any]:
        held = HELD_PARTITION_PREFIX + name
        return to_attributes({"user_id": held, "notification_id": held})

    def hold(self, name: str, released: IngestEnvelope, until: datetime) -> None:
        """Write (or rewrite, identically, on a retry) the envelope to route at `until`."""
        self._client.put_item(
            TableName=self._table,
            Item={
                **self.key(name),
                **to_attributes(
                    {
                        "held_request": released.body(),
                        "release_at": until.isoformat(),
                        "expires_at": int((until + self._retention).timestamp()),
                    }
                ),
            },
        )

    def get(self, name: str) -> IngestEnvelope | None:
        response = self._client.get_item(TableName=self._table, Key=self.key(name), ConsistentRead=True)
        item = response.get("Item")
        if not item:
            legacy = {"user_id": HELD_PARTITION_PREFIX + name, "notification_id": LEGACY_SORT_KEY}
            legacy = to_attributes(legacy)
            item = self._client.get_item(TableName=self._table, Key=legacy, ConsistentRead=True).get("Item")
        if not item:
            return None
        return IngestEnvelope.model_validate_json(from_attributes(item)["held_request"])
