"""Erasure of a person: everything Herald holds about them goes, except what keeps them from being
mailed or texted again (decision 017). `DELETE /v1/me` and the bus's `UserDeleted` both come here.

Erased, by key (queries of the person's own partitions, never a scan):
- Users table, partition `USER#<id>`: the profile item (with its devices map), role memberships,
  the `INBOX` watermark, released-device marks and anything else there, EXCEPT the directory's
  version/tombstone item (`DIRECTORY`, decision 014: it keeps an older `UserUpserted` from bringing
  the person back). The profile goes last, so an erasure cut short is finished by a repeat; it
  goes with the role memberships in a transaction that checks the tombstone still stands, so a
  newer `UserUpserted` that re-created the person meanwhile keeps its profile and roles.
- Users table: the owner items of their device tokens (only where they still name the person).
- Notifications table: the partition `user_id=<id>` (records, delivery logs, inbox state).
- Presence table: their item. Rate counters: their item of each of the last
  `RATE_COUNTER_HOURS` hours, and the per-channel items of the shape before decision 030 (counters
  live two hours, but DynamoDB's TTL deletes expired items only eventually, and until then they
  can be read).

Kept: suppression entries of their contacts (email, phone, device tokens), keyed by a hash of the
contact (herald.stores.keys), with the plain `contact` attribute removed; and, for a channel the
person had turned off (`preferences.channels`: email or sms false), an `opted_out` entry, so a
person re-created with the same address stays opted out.

The person's contacts are those of the directory's part of the profile, of their own settings
(`own`, decision 016: an address they set through the API) and the numbers in their SMS consent
history: all of them lose `contact`. A channel counts as turned off as the router sees it (their own
choice over the directory's default).

The tombstone comes first, through both doors: `DELETE /v1/me` marks the directory item deleted
here (`deleted_at`, `expires_at`, its `version` kept); the bus's `UserDeleted` writes it in the
directory's version transaction and then calls `erase(..., mark=False)`. From then on writes racing
the erasure (a device registration, a contacts or preferences edit) are refused (they check
`attribute_not_exists(deleted_at)`), and only a NEWER `UserUpserted` brings the person back. A
failure part way is finished by a repeat (every step is idempotent; the directory re-runs the
erasure for a redelivered `UserDeleted` of the tombstone's version).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from herald.models import Channel
from herald.settings import Tables
from herald.stores.dynamo import batch_write, from_attributes, to_attributes
from herald.stores.keys import (
    DIRECTORY_SK,
    EVERYONE_SK,
    PROFILE_SK,
    TOPIC_SK_PREFIX,
    device_owner_key,
    email_address,
    push_address,
    rate_counter_key,
    sms_address,
    user_pk,
)
from herald.stores.presence import presence_key
from herald.stores.suppression import SuppressionStore
from herald.stores.users import CONSENTS_SK, OWN

logger = Logger(child=True)

ROLE_SK_PREFIX = "ROLE#"
RATE_COUNTER_HOURS = 48
DEFAULT_TOMBSTONE_DAYS = 30  # as the directory's (DIRECTORY_TOMBSTONE_DAYS)
TRANSACTION_LIMIT = 100  # items in one TransactWriteItems
TRANSACTION_ATTEMPTS = 5


@dataclass(frozen=True)
class Erased:
    """What one erasure removed or kept (counts only: this is logged)."""

    notifications: int = 0
    user_items: int = 0
    device_owners: int = 0
    suppressions_kept: int = 0
    # False when a newer UserUpserted re-created the person during the erasure: their new profile
    # and role memberships were left alone
    directory_entry_erased: bool = True


def batch_delete(client: Any, table: str, keys: list[dict[str, Any]]) -> int:
    """Delete keys in `BatchWriteItem`s of 25, retrying unprocessed ones with backoff."""
    return batch_write(client, table, [{"DeleteRequest": {"Key": to_attributes(k)}} for k in keys])


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def contact_addresses(item: dict[str, Any], consent_phones: Iterable[str] = ()) -> list[tuple[str, bool]]:
    """(suppression key, the person turned that channel off) for each contact of a profile item:
    the directory's and the person's own addresses, their device tokens, and `consent_phones`.

    Read from the raw item, not the model: a profile that no longer validates is erased all the same.
    """
    own = _map(item.get(OWN))
    channels = {
        **_map(_map(item.get("preferences")).get("channels")),
        **_map(_map(own.get("preferences")).get("channels")),
    }
    email_off = channels.get(Channel.EMAIL.value) is False
    sms_off = channels.get(Channel.SMS.value) is False
    found: dict[str, bool] = {}
    for email in (_text(item.get("email")), _text(own.get("email"))):
        if email:
            found[email_address(email)] = email_off
    for phone in (_text(item.get("phone")), _text(own.get("phone"))):
        if phone:
            found[sms_address(phone)] = sms_off
    for phone in consent_phones:  # numbers they consented with before (no opt-out implied)
        if _text(phone):
            found.setdefault(sms_address(phone), False)
    # A device token goes to the next person who registers it: its opt-out is not the person's.
    for token in _tokens(item):
        found[push_address(token)] = False
    return sorted(found.items())


def _tokens(item: dict[str, Any]) -> list[str]:
    devices = item.get("devices")
    return sorted(devices) if isinstance(devices, dict) else []


class Erasure:
    def __init__(
        self,
        client: Any,
        *,
        users: str,
        notifications: str,
        presence: str,
        rate_counters: str,
        suppression: str,
        tombstone_days: int = DEFAULT_TOMBSTONE_DAYS,
    ) -> None:
        self._client = client
        self._tombstone_days = tombstone_days
        self._users = users
        self._notifications = notifications
        self._presence = presence
        self._rate_counters = rate_counters
        self._suppression = SuppressionStore(client, suppression)

    @classmethod
    def for_tables(cls, client: Any, tables: Tables, tombstone_days: int = DEFAULT_TOMBSTONE_DAYS) -> Erasure:
        return cls(
            client,
            tombstone_days=tombstone_days,
            users=tables.users,
            notifications=tables.notifications,
            presence=tables.presence,
            rate_counters=tables.rate_counters,
            suppression=tables.suppression,
        )

    def erase(self, user_id: str, *, now: datetime | None = None, mark: bool = True) -> Erased:
        """Erase the person; idempotent. `mark`: write the directory's tombstone first (`DELETE
        /v1/me`); False when the caller wrote it already (the directory's `UserDeleted`, whose
        version transaction did: marking again could tombstone a person a newer upsert re-created)."""
        at = now or datetime.now(UTC)
        if mark:
            self._mark_erased(user_id, at)
        profile = self._profile(user_id)
        consents = self._get({"pk": user_pk(user_id), "sk": CONSENTS_SK}) or {}
        phones = [
            str(e["phone"]) for e in consents.get("events") or [] if isinstance(e, dict) and e.get("phone")
        ]
        kept = self._keep_suppressions(profile or {}, phones, at)
        owners = self._release_device_owners(user_id, profile) if profile else 0
        notifications = self._erase_notifications(user_id)
        self._client.delete_item(TableName=self._presence, Key=to_attributes(presence_key(user_id)))
        batch_delete(self._client, self._rate_counters, self._rate_counter_keys(user_id, at))
        user_items, directory_entry_erased = self._erase_user_partition(
            user_id, had_profile=profile is not None
        )
        erased = Erased(
            notifications=notifications,
            user_items=user_items,
            device_owners=owners,
            suppressions_kept=kept,
            directory_entry_erased=directory_entry_erased,
        )
        if directory_entry_erased:
            logger.info("person erased", extra={"user_id": user_id, "erased": asdict(erased)})
        else:
            logger.warning(
                "person erased, but re-created by a newer UserUpserted meanwhile: their profile and "
                "roles were kept",
                extra={"user_id": user_id, "erased": asdict(erased)},
            )
        return erased

    # -- steps ----------------------------------------------------------------------------------

    def _get(self, key: dict[str, str]) -> dict[str, Any] | None:
        item = self._client.get_item(TableName=self._users, Key=to_attributes(key), ConsistentRead=True).get(
            "Item"
        )
        return from_attributes(item) if item else None

    def _profile(self, user_id: str) -> dict[str, Any] | None:
        return self._get({"pk": user_pk(user_id), "sk": PROFILE_SK})

    def _mark_erased(self, user_id: str, at: datetime) -> None:
        """The directory's tombstone, its version (if any) kept: see the module's docstring."""
        now = int(at.timestamp())
        self._client.update_item(
            TableName=self._users,
            Key=to_attributes({"pk": user_pk(user_id), "sk": DIRECTORY_SK}),
            # a repeat changes nothing (the first erasure's tombstone and its expiry stand)
            UpdateExpression="SET deleted_at = if_not_exists(deleted_at, :now), "
            "expires_at = if_not_exists(expires_at, :expires)",
            ExpressionAttributeValues=to_attributes(
                {":now": now, ":expires": now + self._tombstone_days * 86400}
            ),
        )

    def _keep_suppressions(self, profile: dict[str, Any], phones: list[str], at: datetime) -> int:
        kept = 0
        for address, opted_out in contact_addresses(profile, phones):
            if self._suppression.keep_anonymously(address, opted_out=opted_out, now=at):
                kept += 1
        return kept

    def _release_device_owners(self, user_id: str, profile: dict[str, Any]) -> int:
        """Delete the owner items of the person's tokens, where they still name the person."""
        released = 0
        for token in _tokens(profile):
            try:
                self._client.delete_item(
                    TableName=self._users,
                    Key=to_attributes(device_owner_key(token)),
                    ConditionExpression="user_id = :me",
                    ExpressionAttributeValues=to_attributes({":me": user_id}),
                )
                released += 1
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise  # otherwise: no owner item, or the token is someone else's now
        return released

    def _pages(self, **params: Any) -> Iterator[list[dict[str, Any]]]:
        while True:
            response = self._client.query(**params)
            yield [from_attributes(item) for item in response.get("Items", [])]
            if not response.get("LastEvaluatedKey"):
                return
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _erase_notifications(self, user_id: str) -> int:
        erased = 0
        for page in self._pages(
            TableName=self._notifications,
            KeyConditionExpression="user_id = :u",
            ProjectionExpression="user_id, notification_id",
            ExpressionAttributeValues=to_attributes({":u": user_id}),
            ConsistentRead=True,
        ):
            keys = [{"user_id": i["user_id"], "notification_id": i["notification_id"]} for i in page]
            erased += batch_delete(self._client, self._notifications, keys)
        return erased

    def _rate_counter_keys(self, user_id: str, at: datetime) -> list[dict[str, str]]:
        hours = [at.astimezone(UTC) - timedelta(hours=h) for h in range(RATE_COUNTER_HOURS)]
        keys = [{"pk": rate_counter_key(user_id, hour)} for hour in hours]
        # and the shape counters had before decision 030 (one item per channel), which a stack
        # upgraded within RATE_COUNTER_HOURS may still hold
        legacy = [
            {"pk": f"{user_id}#{channel.value}#{hour.strftime('%Y%m%d%H')}"}
            for hour in hours
            for channel in Channel
        ]
        return keys + legacy

    def _erase_user_partition(self, user_id: str, *, had_profile: bool) -> tuple[int, bool]:
        """Every item of the partition but `DIRECTORY`; the directory's part (profile, roles, topics,
        the `EVERYONE` membership) last,
        and only while the tombstone stands. Returns (items erased, directory part erased)."""
        keys: list[dict[str, str]] = []
        roles: list[dict[str, str]] = []
        for page in self._pages(
            TableName=self._users,
            KeyConditionExpression="pk = :pk",
            ProjectionExpression="pk, sk",
            ExpressionAttributeValues=to_attributes({":pk": user_pk(user_id)}),
            ConsistentRead=True,
        ):
            for item in page:
                sk = str(item["sk"])
                if sk in (DIRECTORY_SK, PROFILE_SK):
                    continue
                directorys = sk.startswith((ROLE_SK_PREFIX, TOPIC_SK_PREFIX)) or sk == EVERYONE_SK
                (roles if directorys else keys).append({"pk": item["pk"], "sk": sk})
        erased = batch_delete(self._client, self._users, keys)
        # last: while the profile exists, a repeated erasure still finds the contacts and devices
        profile = {"pk": user_pk(user_id), "sk": PROFILE_SK}
        room = TRANSACTION_LIMIT - 1  # one item is the tombstone's check
        chunks = [roles[start : start + room] for start in range(0, len(roles), room)]
        if not chunks or len(chunks[-1]) == room:
            chunks.append([])
        chunks[-1].append(profile)
        for chunk in chunks:
            if not self._delete_while_erased(user_id, chunk):
                return erased, False
            erased += len(chunk)
        return erased - (0 if had_profile else 1), True

    def _delete_while_erased(self, user_id: str, keys: list[dict[str, str]]) -> bool:
        """Delete `keys` in one transaction that checks the directory's tombstone still stands;
        False when it does not (a newer UserUpserted re-created the person: nothing deleted)."""
        check = {
            "ConditionCheck": {
                "TableName": self._users,
                "Key": to_attributes({"pk": user_pk(user_id), "sk": DIRECTORY_SK}),
                "ConditionExpression": "attribute_exists(deleted_at)",
            }
        }
        deletes = [{"Delete": {"TableName": self._users, "Key": to_attributes(key)}} for key in keys]
        for attempt in range(TRANSACTION_ATTEMPTS):
            try:
                self._client.transact_write_items(TransactItems=[check, *deletes])
                return True
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
                if reasons[:1] == ["ConditionalCheckFailed"]:
                    return False
                time.sleep(min(0.05 * 2**attempt, 1.0))  # a conflicting write: try again
        raise RuntimeError(f"erasure of user {user_id}: the directory part kept conflicting")
