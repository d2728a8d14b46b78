"""Rate counters: per person and clock hour (a fixed window), one count per channel, expiring by TTL.

The router reads a batch's counters with its other batched reads (`usage_from_item`) and decides on
them plus the batch's own sends; when the batch ends it adds what it sent, for every person of the
batch at once (`add_many`: one `TransactWriteItems` of up to 100 people). Concurrent batches may
overshoot a limit by at most their own sends: rate limits protect people from floods, they are not
a billing control, so making each check atomic (a conditional write per send) is not worth its
calls.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from herald.models import Channel
from herald.stores.dynamo import to_attributes
from herald.stores.keys import rate_counter_key

logger = Logger(child=True)

WINDOW = timedelta(hours=1)
MAX_TRANSACTION_ITEMS = 100  # DynamoDB's limit per TransactWriteItems
CONFLICT_RETRIES = 3


def usage_from_item(item: Mapping[str, Any]) -> dict[Channel, int]:
    """The counts an item holds (the attributes named after channels)."""
    return {channel: int(item[channel.value]) for channel in Channel if channel.value in item}


class RateCounterStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def key(self, user_id: str, at: datetime) -> dict[str, str]:
        return {"pk": rate_counter_key(user_id, at)}

    def add(self, user_id: str, channel: Channel, now: datetime, count: int = 1) -> None:
        """Count `count` sends on `channel` in the current hour (one UpdateItem)."""
        self._client.update_item(TableName=self._table, **self._update(user_id, {channel: count}, now))

    def add_many(
        self, counts: Mapping[str, Mapping[Channel, int]], now: datetime, request_token: str = ""
    ) -> int:
        """Count each person's sends in the current hour: one `TransactWriteItems` per 100 people.
        Returns how many people's counts could not be written (each logged).

        A transaction cancelled because another one was writing the same counter (two routers
        counting one person at once) is retried; one that still fails is counted one person at a
        time. `request_token` (the batch's identity) makes each attempt's transaction idempotent
        (`ClientRequestToken`), so that an SDK retry after an unanswered call does not count twice."""
        updates = [self._update(user, channels, now) for user, channels in counts.items() if channels]
        lost = 0
        for start in range(0, len(updates), MAX_TRANSACTION_ITEMS):
            chunk = updates[start : start + MAX_TRANSACTION_ITEMS]
            if self._transact(chunk, f"{request_token}#{start}"):
                continue
            for update in chunk:
                try:
                    self._client.update_item(TableName=self._table, **update)
                except (ClientError, BotoCoreError) as error:
                    lost += 1
                    logger.warning("a rate counter was not updated", extra={"error": str(error)[:300]})
        return lost

    def _transact(self, updates: list[dict[str, Any]], token: str) -> bool:
        """False when the transaction could not be written (after retrying conflicts)."""
        actions = [{"Update": {"TableName": self._table, **update}} for update in updates]
        for attempt in range(CONFLICT_RETRIES):
            if attempt:
                time.sleep(0.02 * 2**attempt)
            try:
                self._client.transact_write_items(
                    TransactItems=actions, ClientRequestToken=_token(f"{token}#{attempt}", actions)
                )
                return True
            except ClientError as error:
                if not _conflict(error):
                    logger.warning("rate counter transaction failed", extra={"error": str(error)[:300]})
                    return False
            except BotoCoreError as error:
                logger.warning("rate counter transaction unanswered", extra={"error": str(error)[:300]})
                return False
        return False

    @staticmethod
    def _update(user_id: str, channels: Mapping[Channel, int], now: datetime) -> dict[str, Any]:
        names = {f"#c{i}": channel.value for i, channel in enumerate(channels)}
        values: dict[str, Any] = {f":c{i}": count for i, count in enumerate(channels.values())}
        values[":expires"] = int((now + 2 * WINDOW).timestamp())
        adds = ", ".join(f"#c{i} :c{i}" for i in range(len(channels)))
        return {
            "Key": to_attributes({"pk": rate_counter_key(user_id, now)}),
            "UpdateExpression": f"ADD {adds} SET expires_at = :expires",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": to_attributes(values),
        }


def _token(seed: str, actions: list[dict[str, Any]]) -> str:
    """A ClientRequestToken (at most 36 characters) for one attempt of one transaction."""
    digest = hashlib.sha256(seed.encode() + json.dumps(actions, sort_keys=True).encode())
    return digest.hexdigest()[:36]


def _conflict(error: ClientError) -> bool:
    """A transaction cancelled by another transaction's write on one of its items (or throttled)."""
    code = error.response["Error"]["Code"]
    if code == "TransactionConflictException":
        return True
    if code != "TransactionCanceledException":
        return False
    reasons = error.response.get("CancellationReasons") or []
    return any(r.get("Code") in {"TransactionConflict", "ThrottlingError"} for r in reasons) and all(
        r.get("Code") in {"None", "TransactionConflict", "ThrottlingError", None} for r in reasons
    )
