"""Users table: profiles (with devices), role memberships for fan-out, and what the person set
through the app API (decision 016).

The profile item holds two layers. The product's directory (`UserUpserted`, herald.directory) writes
the top-level profile fields: they are the DEFAULTS. What the person sets through the API
(preferences, quiet hours, time zone, locale, contacts, SMS marketing consent) is kept in the item's
`own` map, which the directory never writes, and it WINS: `profile_from_item` lays `own` over the
directory's fields, so every reader (the router's one BatchGetItem, the senders' GetItem) sees the
person's choice with no extra read. A key present in `own` is the person's choice, `null` included
(no quiet hours, no phone, consent withdrawn); a key absent follows the directory.

The person's SMS marketing consents and withdrawals are also appended, never rewritten, to a
history item of their partition (`sk = CONSENTS`): the proof TCPA asks for (`consent_history`).
A consent covers the one number it names (`Consent.phone`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

from herald.models import Category, Channel
from herald.stores.dynamo import batch_write, from_attributes, to_attributes
from herald.stores.keys import (
    DIRECTORY_SK,
    EVERYONE_SHARDS,
    EVERYONE_SK,
    PROFILE_SK,
    everyone_role,
    everyone_shard_role,
    role_sk,
    user_pk,
)
from herald.users import MAX_DEVICES_PER_USER, Consent, Device, QuietHours, UserProfile

OWN = "own"
CONSENTS_SK = "CONSENTS"
# The profile fields a person may set through the API; anything else in `own` is not overlaid.
OWN_FIELDS = ("preferences", "quiet_hours", "time_zone", "locale", "email", "phone", "sms_marketing_consent")
MAX_CONSENT_EVENTS = 1000  # ≈300 bytes each: the history item stays far below 400 KB
MAX_EDIT_ATTEMPTS = 5


def everyone_item(user_id: str) -> dict[str, str]:
    """The person's membership of `{"all": true}` (herald.stores.keys.everyone_role)."""
    return {"pk": user_pk(user_id), "sk": EVERYONE_SK, "role": everyone_role(user_id), "user_id": user_id}


def profile_key(user_id: str) -> dict[str, str]:
    return {"pk": user_pk(user_id), "sk": PROFILE_SK}


def directory_key(user_id: str) -> dict[str, str]:
    """The directory's version item: a tombstone (`deleted_at`) once the person was deleted."""
    return {"pk": user_pk(user_id), "sk": DIRECTORY_SK}


def consents_key(user_id: str) -> dict[str, str]:
    return {"pk": user_pk(user_id), "sk": CONSENTS_SK}


class OwnPreferences(BaseModel):
    """The preference fields the person set (each one absent when they left it to the directory)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    channels: dict[Channel, bool] | None = None
    muted_categories: frozenset[Category] | None = None
    muted_types: frozenset[str] | None = None
    muted_channels: dict[Category, frozenset[Channel]] | None = None
    marketing_opt_in: bool | None = None

    @field_serializer("muted_categories", "muted_types")
    def _sorted(self, values: frozenset[str] | None) -> list[str] | None:
        return None if values is None else sorted(values)  # one canonical form: edits compare equal

    @field_serializer("muted_channels")
    def _sorted_by_category(
        self, values: dict[Category, frozenset[Channel]] | None
    ) -> dict[str, list[str]] | None:
        if values is None:
            return None
        return {category.value: sorted(c.value for c in values[category]) for category in sorted(values)}


class OwnSettings(BaseModel):
    """The `own` map: what the person set through the API. Unknown keys are ignored (rolling
    deploys); a malformed value fails like any malformed profile (the router skips and logs it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    revision: int = Field(default=0, ge=0, description="optimistic lock of the person's edits")
    updated_at: AwareDatetime | None = None
    preferences: OwnPreferences | None = None
    quiet_hours: QuietHours | None = None
    time_zone: str | None = None
    locale: str | None = None
    email: str | None = None
    phone: str | None = None
    sms_marketing_consent: Consent | None = None

    def choices(self) -> dict[str, Any]:
        """The person's choices as JSON values, only the keys they set (`None` is a choice)."""
        dumped = self.model_dump(mode="json", exclude_unset=True)
        return {name: dumped[name] for name in OWN_FIELDS if name in dumped}


def _overlay(fields: dict[str, Any], own: OwnSettings) -> dict[str, Any]:
    merged = dict(fields)
    for name, value in own.choices().items():
        if name == "preferences" and value is not None:
            base = merged.get("preferences") or {}
            preferences = {**base, **{k: v for k, v in value.items() if k != "channels"}}
            if "channels" in value:  # channel by channel: one the person did not set follows the directory
                preferences["channels"] = {**(base.get("channels") or {}), **(value["channels"] or {})}
            merged["preferences"] = preferences
        elif name != "preferences":
            merged[name] = value
    return merged


def _canonical(choices: dict[str, Any]) -> dict[str, Any]:
    return OwnSettings.model_validate(choices).choices()


def _bind_consent(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` with an SMS marketing consent that names no number bound to the phone beside it;
    with no phone beside it, the consent covers no number and is left out (decision 016)."""
    consent = fields.get("sms_marketing_consent")
    if not isinstance(consent, dict) or consent.get("phone"):
        return fields
    phone = fields.get("phone")
    return {**fields, "sms_marketing_consent": {**consent, "phone": phone} if phone else None}


def profile_from_item(item: dict[str, Any]) -> UserProfile:
    """The profile the router and the senders use: the directory's fields with the person's own
    choices laid over them. Raises pydantic's ValidationError for a malformed item.

    An SMS marketing consent covers one number. The directory's, when its event named none, covers
    the phone the same `UserUpserted` carried (the directory's, never a phone the person set
    themselves); the person's own (the API always names the number; only older items lack it)
    covers the profile's current phone."""
    fields = _bind_consent({k: v for k, v in item.items() if k not in ("pk", "sk", OWN)})
    own = item.get(OWN)
    if own is not None:
        fields = _bind_consent(_overlay(fields, OwnSettings.model_validate(own)))
    return UserProfile.model_validate(fields)


def not_erased(users_table: str, user_id: str) -> dict[str, Any]:
    """A transaction's ConditionCheck: the person has no directory tombstone (deleted by the
    directory or erased through the API, decisions 014 and 017). Put it first in the transaction, so
    its failure is `CancellationReasons[0]`."""
    return {
        "ConditionCheck": {
            "TableName": users_table,
            "Key": to_attributes({"pk": user_pk(user_id), "sk": DIRECTORY_SK}),
            "ConditionExpression": "attribute_not_exists(deleted_at)",
        }
    }


class ConsentEvent(BaseModel):
    """One entry of the person's consent history: a grant or a withdrawal, as it happened."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: Literal["sms_marketing"] = "sms_marketing"
    granted: bool = Field(description="true: consent given; false: withdrawn")
    at: AwareDatetime = Field(description="server time of the request")
    source: str = Field(min_length=1, description="how it was recorded: `api`, with the app's user agent")
    wording_version: str | None = Field(default=None, description="the consent text shown to the person")
    phone: str | None = Field(default=None, description="the E.164 number the consent covered (given, ended)")
    reason: str | None = Field(
        default=None,
        description="why a consent ended other than by the person's withdrawal: `phone changed` (the "
        "person changed their number without consenting for the new one)",
    )
    user_agent: str | None = None
    source_ip: str | None = None


@dataclass(frozen=True)
class OwnChange:
    """What an edit of the person's settings results in: their whole `own` choices afterwards (JSON
    values, a key per field they set) and the consent events to append to their history."""

    choices: dict[str, Any]
    consent_events: tuple[ConsentEvent, ...] = field(default=())


# An edit: (the person's current own choices, their current effective profile or None) -> change.
OwnEdit = Callable[[dict[str, Any], UserProfile | None], OwnChange]


class PersonErased(LookupError):
    """The person was deleted (a directory tombstone): nothing about them may be written again."""


class ConsentHistoryFull(RuntimeError):
    """The consent history item holds `max_consent_events` already."""


class UserStore:
    def __init__(self, client: Any, table: str, max_consent_events: int = MAX_CONSENT_EVENTS) -> None:
        self._client = client
        self._table = table
        self._max_consent_events = max_consent_events

    def put_profile(self, profile: UserProfile) -> None:
        """Write the profile and its memberships (see `put_profiles`)."""
        self.put_profiles([profile])

    def put_profiles(self, profiles: Iterable[UserProfile]) -> int:
        """Write whole profiles as the directory knows them, with their role memberships and their
        place in everyone (the ByRole index reads both), in batches of 25 items across people:
        seeding and bulk imports. Returns the items written."""
        items: list[dict[str, Any]] = []
        for profile in profiles:
            items.append(
                {**profile_key(profile.user_id), **profile.model_dump(mode="json", exclude_none=True)}
            )
            items.append(everyone_item(profile.user_id))
            items += [
                {
                    "pk": user_pk(profile.user_id),
                    "sk": role_sk(role),
                    "role": role,
                    "user_id": profile.user_id,
                }
                for role in sorted(profile.roles)
            ]
        return batch_write(
            self._client, self._table, [{"PutRequest": {"Item": to_attributes(i)}} for i in items]
        )

    def get_profile(self, user_id: str) -> UserProfile | None:
        item = self._get(profile_key(user_id))
        return profile_from_item(item) if item else None

    # -- what the person sets through the API (decision 016) -----------------------------------------

    def edit_own(self, user_id: str, edit: OwnEdit, now: datetime | None = None) -> UserProfile:
        """Apply `edit` to the person's own choices; returns the effective profile afterwards.

        Read, edit, write back conditioned on the revision read (a concurrent edit makes it read
        again), in one transaction with the consent events and a check that the person has not been
        erased. Creates the profile item (with `user_id`) when the directory has not synced the
        person yet; only `own` and `user_id` are written, so the directory's part is never touched
        (and the directory never writes `own`). An edit that changes nothing writes nothing.
        Raises PersonErased, ConsentHistoryFull, or pydantic's ValidationError when the result
        would not be a valid profile (then nothing is written).
        """
        at = now or datetime.now(UTC)
        for _ in range(MAX_EDIT_ATTEMPTS):
            item = self._get(profile_key(user_id)) or {}
            raw_own = item.get(OWN)
            before = OwnSettings.model_validate(raw_own) if raw_own is not None else None
            current = profile_from_item(item) if item else None
            choices = before.choices() if before else {}
            change = edit(dict(choices), current)
            if _canonical(change.choices) == choices and not change.consent_events:
                return current or profile_from_item({"user_id": user_id})
            revision = (before.revision if before else 0) + 1
            own = OwnSettings.model_validate(
                {**change.choices, "revision": revision, "updated_at": at.isoformat()}
            ).model_dump(mode="json", exclude_unset=True)
            effective = profile_from_item({**item, "user_id": item.get("user_id", user_id), OWN: own})
            writes = [self._not_erased(user_id), self._own_write(user_id, own, before)]
            if change.consent_events:
                writes.append(self._consent_append(user_id, change.consent_events))
            try:
                self._client.transact_write_items(TransactItems=writes)
                return effective
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
                if reasons[:1] == ["ConditionalCheckFailed"]:
                    raise PersonErased(f"user {user_id} was erased") from None
                if len(reasons) > 2 and reasons[2] == "ConditionalCheckFailed":
                    raise ConsentHistoryFull(f"user {user_id}: consent history is full") from None
                # the revision moved (another edit, or the item was created or deleted): read again
        raise RuntimeError(f"user {user_id}: own settings kept changing under {MAX_EDIT_ATTEMPTS} attempts")

    def consent_history(self, user_id: str) -> list[ConsentEvent]:
        """Every SMS marketing consent and withdrawal the person made through the API, oldest first:
        the retrievable proof (when, how, which wording, for which number). Empty when none."""
        item = self._get(consents_key(user_id))
        return [ConsentEvent.model_validate(event) for event in (item or {}).get("events", [])]

    def _get(self, key: dict[str, str]) -> dict[str, Any] | None:
        response = self._client.get_item(TableName=self._table, Key=to_attributes(key), ConsistentRead=True)
        item = response.get("Item")
        return from_attributes(item) if item else None

    def _not_erased(self, user_id: str) -> dict[str, Any]:
        return not_erased(self._table, user_id)

    def _own_write(self, user_id: str, own: dict[str, Any], before: OwnSettings | None) -> dict[str, Any]:
        values: dict[str, Any] = {":own": own, ":user_id": user_id}
        if before is None:
            condition = "attribute_not_exists(#own)"
        else:
            condition = "#own.revision = :revision"
            values[":revision"] = before.revision
        return {
            "Update": {
                "TableName": self._table,
                "Key": to_attributes(profile_key(user_id)),
                "UpdateExpression": "SET #own = :own, user_id = if_not_exists(user_id, :user_id)",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#own": OWN},
                "ExpressionAttributeValues": to_attributes(values),
            }
        }

    def _consent_append(self, user_id: str, events: tuple[ConsentEvent, ...]) -> dict[str, Any]:
        values = {
            ":events": [e.model_dump(mode="json", exclude_none=True) for e in events],
            ":none": [],
            ":room": self._max_consent_events - len(events),
            ":user_id": user_id,
        }
        return {
            "Update": {
                "TableName": self._table,
                "Key": to_attributes(consents_key(user_id)),
                "UpdateExpression": "SET events = list_append(if_not_exists(events, :none), :events), "
                "user_id = :user_id",
                "ConditionExpression": "attribute_not_exists(events) OR size(events) <= :room",
                "ExpressionAttributeValues": to_attributes(values),
            }
        }

    def register_device(self, user_id: str, token: str, platform: str, now: datetime | None = None) -> None:
        device = Device(platform=platform, registered_at=now or datetime.now(UTC))
        self._client.update_item(
            TableName=self._table,
            Key=to_attributes(profile_key(user_id)),
            UpdateExpression="SET devices.#token = :device",
            ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(devices.#token) "
            "OR size(devices) < :max)",
            ExpressionAttributeNames={"#token": token},
            ExpressionAttributeValues=to_attributes(
                {":device": device.model_dump(mode="json"), ":max": MAX_DEVICES_PER_USER}
            ),
        )

    def remove_device(self, user_id: str, token: str) -> None:
        """Forget a push token (unregistered at FCM, or removed by the user). Idempotent."""
        self._client.update_item(
            TableName=self._table,
            Key=to_attributes(profile_key(user_id)),
            UpdateExpression="REMOVE devices.#token",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#token": token},
        )

    def user_ids_with_role(
        self, role: str, page_size: int, cursor: dict[str, Any] | None = None
    ) -> tuple[list[str], dict[str, Any] | None]:
        """One page of the ByRole index; returns the user ids and the cursor of the next page."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "ByRole",
            "KeyConditionExpression": "#role = :role",
            "ExpressionAttributeNames": {"#role": "role"},
            "ExpressionAttributeValues": to_attributes({":role": role}),
            "Limit": page_size,
        }
        if cursor:
            params["ExclusiveStartKey"] = cursor
        response = self._client.query(**params)
        user_ids = [from_attributes(item)["user_id"] for item in response.get("Items", [])]
        return user_ids, response.get("LastEvaluatedKey")

    def everyone(
        self, page_size: int, cursor: dict[str, Any] | None = None
    ) -> tuple[list[str], dict[str, Any] | None]:
        """One page of everyone the directory knows (their `EVERYONE` items, shard by shard of the
        ByRole index); the user ids and the cursor of the next page (None after the last shard)."""
        shard = int((cursor or {}).get("shard", 0))
        user_ids, key = self.user_ids_with_role(
            everyone_shard_role(shard), page_size, (cursor or {}).get("key")
        )
        if key is not None:
            return user_ids, {"shard": shard, "key": key}
        if shard + 1 < EVERYONE_SHARDS:
            return user_ids, {"shard": shard + 1}
        return user_ids, None

    def iter_user_ids_with_role(self, role: str, page_size: int = 100) -> Iterator[str]:
        cursor: dict[str, Any] | None = None
        while True:
            user_ids, cursor = self.user_ids_with_role(role, page_size, cursor)
            yield from user_ids
            if not cursor:
                return
