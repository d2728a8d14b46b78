"""The user directory, synced over the Herald bus: `UserUpserted` and `UserDeleted`, applied in the
order of the producer's `version` (decision 014).

Each person's version lives in a directory item of their Users partition (`sk = "DIRECTORY"`):
`{version, deleted_at?, expires_at?}`. An event is applied in one DynamoDB transaction that checks
the version item still holds the version read before (optimistic locking) and writes the profile,
the role memberships and the new version together. So:

- an event whose version is not greater than the stored one changes nothing (older or repeated);
- `UserDeleted` first turns the version item into a tombstone with a TTL (the version
  transaction): from then on the person's own writes through the API are refused, and an older
  `UserUpserted` arriving late cannot bring them back while the tombstone lives. Then it erases
  the person (herald.erasure, decision 017: notifications, presence, rate counters, device owners,
  their other Users items, and last the profile with its devices and the role memberships;
  suppressions kept as hashes). A failure after the tombstone fails the event; its redelivery (the
  same version as the tombstone's) runs the idempotent erasure again, so the job gets finished;
- a newer `UserUpserted` after a delete recreates the person (without devices: the apps register
  them again).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, SqsRecordModel
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, Json, model_validator

from herald.erasure import Erasure
from herald.models import AUDIENCE_NAME
from herald.stores.dynamo import from_attributes, to_attributes
from herald.stores.keys import DIRECTORY_SK, EVERYONE_SK, role_sk, user_pk
from herald.stores.users import everyone_item, profile_key
from herald.topics import directory_topic_writes
from herald.users import DirectoryProfile

USER_UPSERTED = "UserUpserted"
USER_DELETED = "UserDeleted"
# Role memberships and topics together: old + new + 3 items stay within a transaction's 100 items.
MAX_ROLES = 48
MAX_MEMBERSHIPS = 48
DEFAULT_TOMBSTONE_DAYS = 30
MAX_ATTEMPTS = 5
# `#...` partitions are Herald's own (held requests: `#held#<name>`), never a person's.
USER_ID_PATTERN = r"^[^#]"
UserId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=USER_ID_PATTERN,
        description="the person's id in the product (the JWT `sub` of their apps); not starting with `#`",
    ),
]
# Optional profile fields a newer upsert may clear (absent from the event → removed).
_CLEARABLE = ("email", "phone", "quiet_hours", "sms_marketing_consent", "webhook")


class UserUpserted(DirectoryProfile):
    """`detail` of a `UserUpserted` event: the person's whole directory entry at `version`."""

    model_config = ConfigDict(extra="forbid", frozen=True, title=f"{USER_UPSERTED} event detail")

    version: int = Field(ge=0, strict=True, description="the producer's version; higher wins")
    user_id: UserId
    roles: frozenset[Annotated[str, Field(min_length=1, max_length=64, pattern=AUDIENCE_NAME)]] = Field(
        default=frozenset(), max_length=MAX_ROLES
    )
    topics: frozenset[Annotated[str, Field(min_length=1, max_length=64, pattern=AUDIENCE_NAME)]] = Field(
        default=frozenset(),
        max_length=MAX_MEMBERSHIPS,
        description="topics the person follows by default (their own join or leave wins)",
    )

    @model_validator(mode="after")
    def _memberships_fit_one_transaction(self) -> UserUpserted:
        if len(self.roles) + len(self.topics) > MAX_MEMBERSHIPS:
            raise ValueError(f"at most {MAX_MEMBERSHIPS} roles and topics together")
        return self

    def profile(self) -> DirectoryProfile:
        return DirectoryProfile.model_validate(self.model_dump(exclude={"version"}))


@dataclass(frozen=True)
class Memberships:
    """The directory's role memberships and topics of a person, as stored or as an event sets them."""

    roles: set[str]
    topics: set[str]
    present: bool = True  # the person exists (False: a UserDeleted takes them out of everyone)

    @classmethod
    def of(cls, event: UserUpserted) -> Memberships:
        return cls(set(event.roles), set(event.topics))


class UserDeleted(BaseModel):
    """`detail` of a `UserDeleted` event."""

    model_config = ConfigDict(extra="forbid", frozen=True, title=f"{USER_DELETED} event detail")

    version: int = Field(ge=0, strict=True, description="the producer's version; higher wins")
    user_id: UserId


class _Envelope(EventBridgeModel):
    account: str | None = None  # type: ignore[assignment]  # moto omits it
    region: str | None = None  # type: ignore[assignment]
    resources: list[str] = Field(default_factory=list)


class UserUpsertedEnvelope(_Envelope):
    detail_type: Literal["UserUpserted"] = Field(alias="detail-type")
    detail: UserUpserted


class UserDeletedEnvelope(_Envelope):
    detail_type: Literal["UserDeleted"] = Field(alias="detail-type")
    detail: UserDeleted


DirectoryEnvelope = Annotated[UserUpsertedEnvelope | UserDeletedEnvelope, Field(discriminator="detail_type")]


class DirectoryRecord(SqsRecordModel):
    body: Json[DirectoryEnvelope]  # type: ignore[assignment]


def peek_event_id(raw_body: str | None) -> str | None:
    """`<detail-type>:<user_id>@<version>` (or the EventBridge id) of a body that may not validate."""
    try:
        body = json.loads(raw_body or "")
        detail = body.get("detail") or {}
        if "user_id" in detail:
            return f"{body.get('detail-type')}:{detail['user_id']}@{detail.get('version')}"
        return str(body["id"]) if body.get("id") is not None else None
    except (ValueError, AttributeError, TypeError):
        return None


class Directory:
    """Applies directory events to the Users table, in version order."""

    def __init__(
        self,
        client: Any,
        table: str,
        tombstone_days: int = DEFAULT_TOMBSTONE_DAYS,
        erasure: Erasure | None = None,
    ) -> None:
        """`erasure`: what a `UserDeleted` erases beyond the Users table's directory part (the
        function always passes it; without it only the profile and role memberships go)."""
        self._client = client
        self._table = table
        self._tombstone_seconds = tombstone_days * 86400
        self._erasure = erasure

    def apply(self, event: UserUpserted | UserDeleted, now: float | None = None) -> bool:
        """True when applied; False when the stored version is the same or newer (nothing changed;
        a repeated `UserDeleted` finishes its erasure, which changes nothing once it is done)."""
        for _ in range(MAX_ATTEMPTS):
            seen, held, deleted = self._current(event.user_id)
            at = now if now is not None else time.time()
            if seen is not None and seen >= event.version:
                if isinstance(event, UserDeleted) and deleted and seen == event.version:
                    # a redelivery: its erasure may have failed after the tombstone was written
                    self._erase(event, at)
                return False
            try:
                self._client.transact_write_items(
                    TransactItems=self._writes(event, seen, held, at, deleted=deleted)
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                continue  # another event for this person won the race (or a write conflicted): read again
            if isinstance(event, UserDeleted):
                self._erase(event, at)  # after the tombstone: nothing written meanwhile survives it
            return True
        raise RuntimeError(f"user {event.user_id}: version kept changing under {MAX_ATTEMPTS} attempts")

    def _erase(self, event: UserDeleted, at: float) -> None:
        if self._erasure is not None:
            self._erasure.erase(event.user_id, now=datetime.fromtimestamp(at, UTC), mark=False)

    def stored_version(self, user_id: str) -> int | None:
        return self._current(user_id)[0]

    def is_deleted(self, user_id: str) -> bool:
        item = self._get(self._directory_key(user_id))
        return bool(item and "deleted_at" in item)

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _directory_key(user_id: str) -> dict[str, str]:
        return {"pk": user_pk(user_id), "sk": DIRECTORY_SK}

    def _get(self, key: dict[str, str]) -> dict[str, Any] | None:
        response = self._client.get_item(TableName=self._table, Key=to_attributes(key), ConsistentRead=True)
        item = response.get("Item")
        return from_attributes(item) if item else None

    def _current(self, user_id: str) -> tuple[int | None, Memberships, bool]:
        """(stored version, the profile's roles and topics, the directory item is a tombstone)."""
        directory = self._get(self._directory_key(user_id))
        profile = self._get(profile_key(user_id)) or {}
        seen = int(directory["version"]) if directory and "version" in directory else None
        held = Memberships(set(profile.get("roles") or []), set(profile.get("topics") or []))
        return seen, held, bool(directory and "deleted_at" in directory)

    def _version_update(
        self, event: UserUpserted | UserDeleted, seen: int | None, now: float, deleted: bool
    ) -> dict:
        """Conditioned on the version AND the tombstone as read (`DELETE /v1/me` sets a tombstone
        without changing the version: an upsert read before it must not overwrite it unseen)."""
        values: dict[str, Any] = {":v": event.version, ":now": int(now)}
        if isinstance(event, UserDeleted):
            expression = "SET version = :v, updated_at = :now, deleted_at = :now, expires_at = :expires"
            values[":expires"] = int(now) + self._tombstone_seconds
        else:
            expression = "SET version = :v, updated_at = :now REMOVE deleted_at, expires_at"
        if seen is None:
            condition = "attribute_not_exists(version)"
        else:
            condition = "version = :seen"
            values[":seen"] = seen
        condition += (
            " AND attribute_exists(deleted_at)" if deleted else " AND attribute_not_exists(deleted_at)"
        )
        return {
            "Update": {
                "TableName": self._table,
                "Key": to_attributes(self._directory_key(event.user_id)),
                "UpdateExpression": expression,
                "ConditionExpression": condition,
                "ExpressionAttributeValues": to_attributes(values),
            }
        }

    def _role_writes(self, user_id: str, old: set[str], new: set[str]) -> list[dict[str, Any]]:
        writes: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_attributes(
                        {"pk": user_pk(user_id), "sk": role_sk(role), "role": role, "user_id": user_id}
                    ),
                }
            }
            for role in sorted(new - old)
        ]
        writes += [
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": to_attributes({"pk": user_pk(user_id), "sk": role_sk(role)}),
                }
            }
            for role in sorted(old - new)
        ]
        return writes

    def _membership_writes(self, user_id: str, old: Memberships, new: Memberships) -> list[dict[str, Any]]:
        """Roles and topics that changed, and the person's place in `{"all": true}` (kept while the
        directory knows them: put again by each upsert, deleted with them)."""
        key = {"pk": user_pk(user_id), "sk": EVERYONE_SK}
        everyone: dict[str, Any] = (
            {"Put": {"TableName": self._table, "Item": to_attributes(everyone_item(user_id))}}
            if new.present
            else {"Delete": {"TableName": self._table, "Key": to_attributes(key)}}
        )
        return [
            everyone,
            *self._role_writes(user_id, old.roles, new.roles),
            *directory_topic_writes(self._table, user_id, old.topics, new.topics),
        ]

    def _writes(
        self,
        event: UserUpserted | UserDeleted,
        seen: int | None,
        held: Memberships,
        now: float,
        deleted: bool = False,
    ) -> list[dict[str, Any]]:
        """`deleted`: the stored entry is a tombstone; an upsert then replaces the whole profile item
        (an erasure still under way must leave nothing of the erased person in it: `own`, devices)."""
        version = self._version_update(event, seen, now, deleted)
        if isinstance(event, UserDeleted) and self._erasure is not None:
            return [version]  # the tombstone alone: the erasure, right after, takes the rest
        if isinstance(event, UserDeleted):
            return [
                version,
                {"Delete": {"TableName": self._table, "Key": to_attributes(profile_key(event.user_id))}},
                *self._membership_writes(event.user_id, held, Memberships(set(), set(), present=False)),
            ]
        fields = event.profile().model_dump(mode="json", exclude_none=True)
        if deleted:
            item = {**profile_key(event.user_id), **fields, "devices": {}}
            replaced = {"Put": {"TableName": self._table, "Item": to_attributes(item)}}
            return [version, replaced, *self._membership_writes(event.user_id, held, Memberships.of(event))]
        names = {f"#{name}": name for name in fields}
        sets = [f"#{name} = :{name}" for name in fields]
        values: dict[str, Any] = {f":{name}": value for name, value in fields.items()}
        sets.append("devices = if_not_exists(devices, :no_devices)")  # the apps' part stays
        values[":no_devices"] = {}
        expression = "SET " + ", ".join(sets)
        cleared = [name for name in _CLEARABLE if name not in fields]
        if cleared:
            expression += " REMOVE " + ", ".join(f"#{name}" for name in cleared)
            names.update({f"#{name}": name for name in cleared})
        profile = {
            "Update": {
                "TableName": self._table,
                "Key": to_attributes(profile_key(event.user_id)),
                "UpdateExpression": expression,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": to_attributes(values),
            }
        }
        return [version, profile, *self._membership_writes(event.user_id, held, Memberships.of(event))]
