"""Rate counters: per user, per channel, per clock hour (fixed window), expiring by TTL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from herald.models import Channel
from herald.stores.dynamo import to_attributes
from herald.stores.keys import rate_counter_key

WINDOW = timedelta(hours=1)


class RateCounterStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def take(self, user_id: str, channel: Channel, limit: int, now: datetime) -> bool:
        """Count one send if the window has room; False when the limit is reached (atomic)."""
        expires_at = int((now + 2 * WINDOW).timestamp())
        try:
            self._client.update_item(
                TableName=self._table,
                Key=to_attributes({"pk": rate_counter_key(user_id, channel, now)}),
                UpdateExpression="ADD #count :one SET expires_at = :expires",
                ConditionExpression="attribute_not_exists(#count) OR #count < :limit",
                ExpressionAttributeNames={"#count": "count"},
                ExpressionAttributeValues=to_attributes({":one": 1, ":limit": limit, ":expires": expires_at}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True
