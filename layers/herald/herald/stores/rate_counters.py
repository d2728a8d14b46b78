"""Rate counters: per user, per channel, per clock hour (fixed window), expiring by TTL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from herald.models import Channel
from herald.stores.dynamo import to_attributes
from herald.stores.keys import rate_counter_key

WINDOW = timedelta(hours=1)


class RateCounterStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def add(self, user_id: str, channel: Channel, now: datetime) -> None:
        """Count one send in the current hour.

        The router decides on counts read once per batch (plus the batch's own sends), then adds:
        concurrent batches may overshoot a limit by at most their own sends. Rate limits protect
        users from floods; they are not a billing control, so one extra call per send to make the
        check atomic is not worth it.
        """
        self._client.update_item(
            TableName=self._table,
            Key=to_attributes({"pk": rate_counter_key(user_id, channel, now)}),
            UpdateExpression="ADD #count :one SET expires_at = :expires",
            ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues=to_attributes(
                {":one": 1, ":expires": int((now + 2 * WINDOW).timestamp())}
            ),
        )
