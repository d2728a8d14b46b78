"""The person's inbox: their notifications newest first, unread / unseen counts, read, seen, archive,
acknowledge and read-all (decisions 015, 019).

State lives on each notification record (`seen_at`, `read_at`, `archived_at`, and `unread_at`
while unread and not archived) plus one watermark per person, `read_all_at` on the `INBOX` item
of their Users partition: read-all is one write however many notifications it covers, and a
notification created at or before the watermark counts as read (and seen) at the watermark.
Acknowledging (`acked_at`, set once: reading a notification acknowledges it too) is per record only:
read-all acknowledges nothing (decision 019); `herald.acknowledgement` ends the escalation.

Counts are never stored, so they cannot drift: they are one query of the caller's part of the
sparse `Unread` index (`unread_at` above the watermark; `seen_at` projected). Listing reads the
caller's partition only: the `ByCreated` local index (consistent reads), or the `Unread` index
for `unread=true` (then the page's records are read consistently by key). No scans.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from herald.stores.dynamo import batch_get, from_attributes, to_attributes
from herald.stores.keys import user_pk
from herald.stores.notifications import NotificationRecord, stamp
from herald.stores.users import PersonErased, not_erased

INBOX_SK = "INBOX"
NOTIFICATION_ID = re.compile(r"^ntf-[0-9a-f]{32}$")
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
MAX_LIMIT = 100
# A filtered listing reads at most this many pages per request, then hands back a cursor.
MAX_QUERY_PAGES = 10


class Archived(StrEnum):
    EXCLUDE = "exclude"
    INCLUDE = "include"
    ONLY = "only"


class Mark(StrEnum):
    READ = "read"  # read, seen and acknowledged
    SEEN = "seen"
    ARCHIVE = "archive"
    ACK = "ack"  # acknowledged and seen (the person answered it), not read


# Each mark keeps the first time it was made (if_not_exists). Read, archived or acknowledged, a
# notification also leaves the sparse DigestPending index: no digest will list it (decision 020).
_LEAVE_DIGEST = "digest_day, digest_due_at"
_MARK_EXPRESSIONS = {
    Mark.READ: "SET read_at = if_not_exists(read_at, :at), seen_at = if_not_exists(seen_at, :at), "
    f"acked_at = if_not_exists(acked_at, :at) REMOVE unread_at, {_LEAVE_DIGEST}",
    Mark.SEEN: "SET seen_at = if_not_exists(seen_at, :at)",
    Mark.ARCHIVE: f"SET archived_at = if_not_exists(archived_at, :at) REMOVE unread_at, {_LEAVE_DIGEST}",
    Mark.ACK: "SET acked_at = if_not_exists(acked_at, :at), seen_at = if_not_exists(seen_at, :at) "
    f"REMOVE {_LEAVE_DIGEST}",
}


class BadCursor(ValueError):
    """A cursor this API did not hand out (or for another listing)."""


@dataclass(frozen=True)
class InboxEntry:
    """A record with its state as the person sees it (read-all applied)."""

    record: NotificationRecord
    seen_at: datetime | None
    read_at: datetime | None


@dataclass(frozen=True)
class Marked:
    """A mark's result: the entry as the person now sees it, and the task token of the escalation
    step waiting for an acknowledgement on the record (None when none waits)."""

    entry: InboxEntry
    task_token: str | None


@dataclass(frozen=True)
class Counts:
    unread: int
    unseen: int


def _effective(record: NotificationRecord, watermark: str | None) -> InboxEntry:
    read_at, seen_at = record.read_at, record.seen_at
    if watermark is not None and stamp(record.created_at) <= watermark:
        marked = datetime.fromisoformat(watermark)
        read_at = min(read_at, marked) if read_at else marked
        seen_at = min(seen_at, marked) if seen_at else marked
    return InboxEntry(record=record, seen_at=seen_at, read_at=read_at)


def _encode(kind: str, sort: str, notification_id: str) -> str:
    raw = json.dumps([kind, sort, notification_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(kind: str, cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found_kind, sort, notification_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise BadCursor("the cursor is not one this listing handed out") from None
    if found_kind != kind or not isinstance(sort, str) or not isinstance(notification_id, str):
        raise BadCursor("the cursor belongs to another listing")
    if not NOTIFICATION_ID.match(notification_id) or not STAMP.match(sort):
        raise BadCursor("the cursor is not one this listing handed out")
    return sort, notification_id


class Inbox:
    def __init__(self, client: Any, notifications_table: str, users_table: str) -> None:
        self._client = client
        self._notifications = notifications_table
        self._users = users_table

    # -- the watermark -----------------------------------------------------------------------

    def _inbox_key(self, user_id: str) -> dict[str, Any]:
        return to_attributes({"pk": user_pk(user_id), "sk": INBOX_SK})

    def watermark(self, user_id: str) -> str | None:
        item = self._client.get_item(
            TableName=self._users, Key=self._inbox_key(user_id), ConsistentRead=True
        ).get("Item")
        return str(from_attributes(item)["read_all_at"]) if item and "read_all_at" in item else None

    def read_all(self, user_id: str, now: datetime | None = None) -> str:
        """Mark everything created up to now read (one write); the watermark never moves back.
        Raises PersonErased for an erased person (nothing is written for them)."""
        at = stamp(now or datetime.now(UTC))
        try:
            self._client.transact_write_items(
                TransactItems=[
                    not_erased(self._users, user_id),
                    {
                        "Update": {
                            "TableName": self._users,
                            "Key": self._inbox_key(user_id),
                            "UpdateExpression": "SET read_all_at = :at",
                            "ConditionExpression": "attribute_not_exists(read_all_at) OR read_all_at < :at",
                            "ExpressionAttributeValues": to_attributes({":at": at}),
                        }
                    },
                ]
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise PersonErased(f"user {user_id} is erased") from None
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                return self.watermark(user_id) or at  # a later read-all won
            raise
        return at

    # -- counts -------------------------------------------------------------------------------

    def counts(self, user_id: str) -> Counts:
        watermark = self.watermark(user_id)
        condition = "user_id = :u"
        values: dict[str, Any] = {":u": user_id}
        if watermark is not None:
            condition += " AND unread_at > :w"
            values[":w"] = watermark
        unread = unseen = 0
        params: dict[str, Any] = {
            "TableName": self._notifications,
            "IndexName": "Unread",
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": to_attributes(values),
            "ProjectionExpression": "seen_at, expires_at",
        }
        now = int(time.time())
        while True:
            response = self._client.query(**params)
            for item in response.get("Items", []):
                if "expires_at" in item and int(item["expires_at"]["N"]) <= now:
                    continue  # expired: DynamoDB deletes it within days, the person no longer sees it
                unread += 1
                unseen += "seen_at" not in item
            if not response.get("LastEvaluatedKey"):
                return Counts(unread=unread, unseen=unseen)
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # -- listing ------------------------------------------------------------------------------

    def page(
        self,
        user_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        unread: bool = False,
        archived: Archived = Archived.EXCLUDE,
    ) -> tuple[list[InboxEntry], str | None]:
        """One page, newest first, and the cursor of the next (None at the end)."""
        limit = max(1, min(limit, MAX_LIMIT))
        watermark = self.watermark(user_id)
        if unread and archived is Archived.EXCLUDE:
            return self._unread_page(user_id, limit, cursor, watermark)
        return self._filtered_page(user_id, limit, cursor, watermark, unread, archived)

    def _unread_page(
        self, user_id: str, limit: int, cursor: str | None, watermark: str | None
    ) -> tuple[list[InboxEntry], str | None]:
        condition = "user_id = :u"
        values: dict[str, Any] = {":u": user_id}
        if watermark is not None:
            condition += " AND unread_at > :w"
            values[":w"] = watermark
        params: dict[str, Any] = {
            "TableName": self._notifications,
            "IndexName": "Unread",
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": to_attributes(values),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            sort, notification_id = _decode("unread", cursor)
            if watermark is not None and sort <= watermark:
                return [], None  # read-all since that page: everything after it is read
            params["ExclusiveStartKey"] = to_attributes(
                {"user_id": user_id, "notification_id": notification_id, "unread_at": sort}
            )
        response = self._client.query(**params)
        ids = [from_attributes(item)["notification_id"] for item in response.get("Items", [])]
        records = self._records(user_id, ids)
        # The index is eventually consistent: drop what was read or archived a moment ago.
        now = int(time.time())
        entries = [
            _effective(r, watermark)
            for r in records
            if r.unread_at is not None
            and r.read_at is None
            and r.archived_at is None
            and (r.expires_at is None or r.expires_at > now)
        ]
        last = response.get("LastEvaluatedKey")
        next_cursor = None
        if last:
            plain = from_attributes(last)
            next_cursor = _encode("unread", plain["unread_at"], plain["notification_id"])
        return entries, next_cursor

    def _records(self, user_id: str, ids: list[str]) -> list[NotificationRecord]:
        if not ids:
            return []
        keys = [{"user_id": user_id, "notification_id": nid} for nid in ids]
        found = batch_get(self._client, {self._notifications: keys}, consistent=True)[self._notifications]
        by_id = {item["notification_id"]: NotificationRecord.model_validate(item) for item in found}
        return [by_id[nid] for nid in ids if nid in by_id]

    def _filtered_page(
        self,
        user_id: str,
        limit: int,
        cursor: str | None,
        watermark: str | None,
        unread: bool,
        archived: Archived,
    ) -> tuple[list[InboxEntry], str | None]:
        condition = "user_id = :u"
        values: dict[str, Any] = {":u": user_id, ":true": True, ":now": int(time.time())}
        filters = ["inbox = :true", "(attribute_not_exists(expires_at) OR expires_at > :now)"]
        if unread:
            filters.append("attribute_not_exists(read_at)")
            if watermark is not None:
                condition += " AND created_at > :w"
                values[":w"] = watermark
        if archived is Archived.EXCLUDE:
            filters.append("attribute_not_exists(archived_at)")
        elif archived is Archived.ONLY:
            filters.append("attribute_exists(archived_at)")
        params: dict[str, Any] = {
            "TableName": self._notifications,
            "IndexName": "ByCreated",
            "KeyConditionExpression": condition,
            "FilterExpression": " AND ".join(filters),
            "ExpressionAttributeValues": to_attributes(values),
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        kind = f"all:{int(unread)}:{archived.value}"
        if cursor:
            sort, notification_id = _decode(kind, cursor)
            if unread and watermark is not None and sort <= watermark:
                return [], None  # read-all since that page: everything after it is read
            params["ExclusiveStartKey"] = to_attributes(
                {"user_id": user_id, "notification_id": notification_id, "created_at": sort}
            )
        entries: list[InboxEntry] = []
        for _ in range(MAX_QUERY_PAGES):
            params["Limit"] = min(MAX_LIMIT * 2, 2 * (limit - len(entries)) + 1)
            response = self._client.query(**params)
            for item in response.get("Items", []):
                record = NotificationRecord.model_validate(from_attributes(item))
                entries.append(_effective(record, watermark))
                if len(entries) == limit:
                    last = entries[-1].record
                    return entries, _encode(kind, stamp(last.created_at), last.notification_id)
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return entries, None
            params["ExclusiveStartKey"] = last_key
        plain = from_attributes(params["ExclusiveStartKey"])  # read enough for one request
        return entries, _encode(kind, plain["created_at"], plain["notification_id"])

    # -- one notification ---------------------------------------------------------------------

    def get(self, user_id: str, notification_id: str) -> InboxEntry | None:
        """The caller's own inbox notification, else None (unknown, another person's, not inbox)."""
        if not NOTIFICATION_ID.match(notification_id):
            return None
        item = self._client.get_item(
            TableName=self._notifications,
            Key=to_attributes({"user_id": user_id, "notification_id": notification_id}),
            ConsistentRead=True,
        ).get("Item")
        if not item:
            return None
        record = NotificationRecord.model_validate(from_attributes(item))
        return _effective(record, self.watermark(user_id)) if record.inbox else None

    def mark(
        self, user_id: str, notification_id: str, mark: Mark, now: datetime | None = None
    ) -> Marked | None:
        """Idempotent: the first time is kept. None when the caller has no such inbox notification."""
        if not NOTIFICATION_ID.match(notification_id):
            return None
        at = stamp(now or datetime.now(UTC))
        try:
            response = self._client.update_item(
                TableName=self._notifications,
                Key=to_attributes({"user_id": user_id, "notification_id": notification_id}),
                UpdateExpression=_MARK_EXPRESSIONS[mark],
                ConditionExpression="inbox = :true",  # also false when the item does not exist
                ExpressionAttributeValues=to_attributes({":at": at, ":true": True}),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        attributes = from_attributes(response["Attributes"])
        record = NotificationRecord.model_validate(attributes)
        token = attributes.get("task_token")
        return Marked(_effective(record, self.watermark(user_id)), str(token) if token else None)
