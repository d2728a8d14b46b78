"""DynamoDB Time to Live for the local stack: moto stores a table's TTL setting but never expires
anything, so every `interval_seconds` this deletes, from every table whose TTL is enabled, the
items whose TTL attribute (a Number, epoch seconds) is at or before now — as DynamoDB's TTL
process does. Like DynamoDB it only deletes (conditionally, so an item whose TTL was just pushed
forward survives), ignores items whose attribute is missing or not a Number, and ignores values
more than five years in the past. DynamoDB deletes within days; this within a second or so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from botocore.exceptions import ClientError

from local.periodic import PeriodicWorker

logger = logging.getLogger("local.ttl")

Clock = Callable[[], float]

# DynamoDB's TTL ignores items whose expiry is more than five years in the past.
MAX_PAST_SECONDS = 5 * 365 * 24 * 3600


def ttl_expired(value: Mapping[str, Any] | None, now: float) -> bool:
    """Whether DynamoDB's TTL would delete an item whose TTL attribute (DynamoDB JSON) is `value`."""
    if not value or "N" not in value:
        return False
    try:
        expires = Decimal(str(value["N"]))
    except InvalidOperation:
        return False
    return Decimal(str(now)) - MAX_PAST_SECONDS <= expires <= Decimal(str(now))


class TtlReaper(PeriodicWorker):
    """Deletes expired items from the TTL-enabled tables (all tables, or only `tables`)."""

    name = "ttl"

    def __init__(
        self,
        dynamodb: Any,
        *,
        clock: Clock = time.time,
        interval_seconds: float = 1.0,
        tables: Iterable[str] | None = None,
    ) -> None:
        super().__init__(interval_seconds, logger)
        self._dynamodb = dynamodb
        self._clock = clock
        self._only = set(tables) if tables is not None else None
        self._keys: dict[str, list[str]] = {}

    def start(self) -> None:
        if self.start_thread():
            logger.info("ttl: expiring DynamoDB items every %.1fs", self._interval)

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_thread(timeout)

    def work(self) -> object:
        return self.sweep()

    def _tables(self) -> list[str]:
        names: list[str] = []
        for page in self._dynamodb.get_paginator("list_tables").paginate():
            names.extend(page.get("TableNames", []))
        return [n for n in names if self._only is None or n in self._only]

    def _ttl_attribute(self, table: str) -> str | None:
        description = self._dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        if description.get("TimeToLiveStatus") != "ENABLED":
            return None
        return description.get("AttributeName")

    def _key_names(self, table: str) -> list[str]:
        if table not in self._keys:
            schema = self._dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
            self._keys[table] = [k["AttributeName"] for k in schema]
        return self._keys[table]

    def sweep(self) -> dict[str, int]:
        """One pass over every TTL-enabled table; returns table -> items deleted (non-zero only)."""
        deleted: dict[str, int] = {}
        for table in self._tables():
            try:
                attribute = self._ttl_attribute(table)
                if attribute is None:
                    continue
                count = self._sweep_table(table, attribute)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    self._keys.pop(table, None)  # deleted meanwhile
                    continue
                raise
            if count:
                deleted[table] = count
        return deleted

    def _sweep_table(self, table: str, attribute: str) -> int:
        now = self._clock()
        keys = self._key_names(table)
        names = {f"#k{i}": name for i, name in enumerate(keys)} | {"#ttl": attribute}
        now_value = {"N": str(int(now)) if float(now).is_integer() else repr(float(now))}
        expired: list[dict[str, Any]] = []
        pages = self._dynamodb.get_paginator("scan").paginate(
            TableName=table,
            ProjectionExpression=", ".join(names),
            # attribute_type first: DynamoDB skips non-Number values, moto fails comparing them.
            FilterExpression="attribute_type(#ttl, :number) AND #ttl <= :now",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":now": now_value, ":number": {"S": "N"}},
            ConsistentRead=True,
        )
        for page in pages:
            expired.extend(item for item in page.get("Items", []) if ttl_expired(item.get(attribute), now))
        count = 0
        for item in expired:
            try:
                self._dynamodb.delete_item(
                    TableName=table,
                    Key={name: item[name] for name in keys},
                    ConditionExpression="#ttl <= :now",
                    ExpressionAttributeNames={"#ttl": attribute},
                    ExpressionAttributeValues={":now": now_value},
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    continue  # its TTL moved forward since the scan
                raise
            count += 1
            logger.debug(
                "ttl: %s: deleted %s (%s=%s)", table, {k: item[k] for k in keys}, attribute, item[attribute]
            )
        if count:
            logger.info("ttl: %s: deleted %d expired item(s)", table, count)
        return count
