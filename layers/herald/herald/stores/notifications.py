"""Notifications table: the inbox, each notification's decision trace and its delivery log.

Record layout (one item per user and notification):
- identity: `user_id`, `notification_id`, `event_id`, `type`, `category`, `urgency`, `locale`, `data`
- `created_at` (ISO UTC, the ByCreated index), `expires_at` (TTL)
- `decision`: the routing trace, `plan`: the planned deliveries, `escalation`: bool
- `deliveries`: map channel → latest state (`sending` / `sent` / `failed` / `retry` ...), written by senders
- `delivery_log`: the router's `queued` entries, then every attempt and provider report, appended
- `digest_day` + `digest_due_at`: only while an unread medium notification awaits its digest (sparse index)
- inbox state (decision 015): `inbox` (shown in the person's inbox), `unread_at` (= `created_at`,
  only while unread and not archived: the sparse Unread index), `seen_at`, `read_at`, `archived_at`
- `acked_at`, `task_token`

Every timestamp is written in one fixed-width form (`stamp()`: microseconds, `Z`), so string order
is time order in the indexes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

from herald.models import Category, Urgency
from herald.stores.dynamo import from_attributes, to_attributes


def stamp(at: datetime) -> str:
    """`2026-11-30T20:01:02.000000Z`: fixed width, so comparing strings compares times."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NotificationRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user_id: str
    notification_id: str
    event_id: str
    type: str
    category: Category
    urgency: Urgency
    locale: str
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: AwareDatetime
    status: str
    decision: list[dict[str, Any]] = Field(default_factory=list)
    plan: list[dict[str, Any]] = Field(default_factory=list)
    escalation: bool = False
    deliveries: dict[str, dict[str, Any]] = Field(default_factory=dict)
    delivery_log: list[dict[str, Any]] = Field(default_factory=list)
    digest_day: str | None = None
    digest_due_at: str | None = None
    inbox: bool = False
    in_app: dict[str, Any] | None = None  # the realtime sender's render (title, body, locale)
    unread_at: str | None = None
    seen_at: AwareDatetime | None = None
    read_at: AwareDatetime | None = None
    archived_at: AwareDatetime | None = None
    acked_at: AwareDatetime | None = None
    expires_at: int | None = None

    @field_serializer("created_at", "seen_at", "read_at", "archived_at", "acked_at", when_used="json")
    def _stamp(self, at: datetime | None) -> str | None:
        return None if at is None else stamp(at)

    @staticmethod
    def digest_fields(due_at: datetime) -> dict[str, str]:
        return {"digest_day": due_at.strftime("%Y-%m-%d"), "digest_due_at": due_at.isoformat()}


class NotificationStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    @staticmethod
    def key(user_id: str, notification_id: str) -> dict[str, Any]:
        return to_attributes({"user_id": user_id, "notification_id": notification_id})

    def create(self, record: NotificationRecord) -> bool:
        """Write a new record; False when it already exists (a retried routing keeps the first)."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=to_attributes(record.model_dump(mode="json", exclude_none=True)),
                ConditionExpression="attribute_not_exists(notification_id)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def create_or_existing(self, record: NotificationRecord) -> NotificationRecord | None:
        """Write a new record (None), or return the one already there, read by the same conditional
        `PutItem` (`ReturnValuesOnConditionCheckFailure`): the record is its own idempotency check."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=to_attributes(record.model_dump(mode="json", exclude_none=True)),
                ConditionExpression="attribute_not_exists(notification_id)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            item = error.response.get("Item")
            if not item:  # DynamoDB returns it with the failure; should it ever not, read it
                return self.get(record.user_id, record.notification_id) or record
            return NotificationRecord.model_validate(from_attributes(item))
        return None

    def find(self, notification_id: str) -> NotificationRecord | None:
        """A notification by its id alone (the `ByNotification` index names its person; operators'
        lookups, never a hot path)."""
        response = self._client.query(
            TableName=self._table,
            IndexName="ByNotification",
            KeyConditionExpression="notification_id = :n",
            ExpressionAttributeValues=to_attributes({":n": notification_id}),
            Limit=1,
        )
        items = response.get("Items") or []
        if not items:
            return None
        return self.get(str(from_attributes(items[0])["user_id"]), notification_id)

    def recent(self, user_id: str, limit: int) -> list[NotificationRecord]:
        """The person's latest notifications, newest first (inbox or not: every routed one); as many
        pages as it takes (a page stops at 1 MB)."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "ByCreated",
            "KeyConditionExpression": "user_id = :u",
            "ExpressionAttributeValues": to_attributes({":u": user_id}),
            "ScanIndexForward": False,
        }
        records: list[NotificationRecord] = []
        while len(records) < limit:
            response = self._client.query(**params, Limit=limit - len(records))
            items = response.get("Items", [])
            records += [NotificationRecord.model_validate(from_attributes(i)) for i in items]
            if not response.get("LastEvaluatedKey"):
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return records

    def get(self, user_id: str, notification_id: str) -> NotificationRecord | None:
        response = self._client.get_item(
            TableName=self._table, Key=self.key(user_id, notification_id), ConsistentRead=True
        )
        item = response.get("Item")
        return NotificationRecord.model_validate(from_attributes(item)) if item else None
