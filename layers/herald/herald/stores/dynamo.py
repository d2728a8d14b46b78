"""Low-level DynamoDB helpers shared by the stores: (de)serialisation and batched reads."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

BATCH_GET_LIMIT = 100
BATCH_GET_MAX_ROUNDS = 8

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

Key = dict[str, Any]
Item = dict[str, Any]


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_plain(v) for v in value]
    return value


def to_attributes(item: Mapping[str, Any]) -> dict[str, Any]:
    """Python values (JSON-mode dumps) → DynamoDB attribute values; floats become Decimals."""

    def convert(value: Any) -> Any:
        if isinstance(value, float):
            return Decimal(str(value))
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    return {k: _serializer.serialize(convert(v)) for k, v in item.items() if v is not None}


def from_attributes(attributes: Mapping[str, Any]) -> Item:
    return {k: _plain(_deserializer.deserialize(v)) for k, v in attributes.items()}


def batch_get(
    client: Any, keys_by_table: Mapping[str, Iterable[Key]], *, consistent: bool = False
) -> dict[str, list[Item]]:
    """One logical BatchGetItem across tables: chunks of 100 keys, unprocessed keys retried with backoff.
    `consistent`: strongly consistent reads (twice the read units).

    Keys are plain Python values; items come back plain (numbers as int/float).
    """
    pending: list[tuple[str, dict[str, Any]]] = []
    seen: set[tuple[str, tuple[tuple[str, Any], ...]]] = set()
    for table, keys in keys_by_table.items():
        for key in keys:
            marker = (table, tuple(sorted(key.items())))
            if marker not in seen:
                seen.add(marker)
                pending.append((table, to_attributes(key)))

    found: dict[str, list[Item]] = {table: [] for table in keys_by_table}
    while pending:
        chunk, pending = pending[:BATCH_GET_LIMIT], pending[BATCH_GET_LIMIT:]
        request: dict[str, dict[str, Any]] = {}
        for table, key in chunk:
            entry = request.setdefault(table, {"Keys": []})
            entry["Keys"].append(key)
            if consistent:
                entry["ConsistentRead"] = True
        for round_number in range(BATCH_GET_MAX_ROUNDS):
            response = client.batch_get_item(RequestItems=request)
            for table, items in response.get("Responses", {}).items():
                found.setdefault(table, []).extend(from_attributes(i) for i in items)
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(min(0.05 * 2**round_number, 1.0))
        else:
            raise RuntimeError(f"DynamoDB left keys unprocessed after {BATCH_GET_MAX_ROUNDS} rounds")
    return found


BATCH_WRITE_LIMIT = 25
BATCH_WRITE_MAX_ROUNDS = 8


def batch_write(client: Any, table: str, requests: list[dict[str, Any]]) -> int:
    """`BatchWriteItem` requests (`{"PutRequest": ...}` / `{"DeleteRequest": ...}`, in attribute
    form) 25 at a time, unprocessed ones retried with backoff; returns how many were written."""
    for start in range(0, len(requests), BATCH_WRITE_LIMIT):
        pending: dict[str, Any] = {table: requests[start : start + BATCH_WRITE_LIMIT]}
        for round_number in range(BATCH_WRITE_MAX_ROUNDS):
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not pending:
                break
            time.sleep(min(0.05 * 2**round_number, 1.0))
        else:
            raise RuntimeError(f"DynamoDB left writes unprocessed after {BATCH_WRITE_MAX_ROUNDS} rounds")
    return len(requests)


def scan_page(
    client: Any, params: Mapping[str, Any], limit: int, start: Key | None = None
) -> tuple[list[Item], Key | None]:
    """Up to `limit` items of a Scan (its `FilterExpression` applied), starting after `start`, and
    the key to start the next page after (None at the end). Never reads past `limit` items: each
    request asks for what is still missing. An operator's listing, never a delivery path."""
    request = dict(params)
    if start:
        request["ExclusiveStartKey"] = to_attributes(start)
    items: list[Item] = []
    while len(items) < limit:
        response = client.scan(**request, Limit=limit - len(items))
        items += [from_attributes(item) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        if not last:
            return items, None
        request["ExclusiveStartKey"] = last
    return items, from_attributes(request["ExclusiveStartKey"])
