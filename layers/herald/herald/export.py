"""Everything Herald holds about one person, for `GET /v1/me/export` (the right of access).

Read from the person's own partitions only (never a scan): their Users partition (profile with
devices, their own settings, role memberships, directory version, inbox watermark, consent history,
released devices), their Notifications partition (every record with its decision trace and delivery
log), their presence item, and the suppression entries of their current contacts and device tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from herald.stores.dynamo import batch_get, from_attributes, to_attributes
from herald.stores.keys import PROFILE_SK, TOPIC_SK_PREFIX, email_address, push_address, sms_address, user_pk
from herald.stores.users import CONSENTS_SK, OWN, ConsentEvent, profile_from_item

# Internal handles that are not information about the person (and would let a holder act on
# Herald's behalf): never exported.
_INTERNAL = frozenset({"task_token"})


class Suppression(BaseModel):
    channel: str = Field(description="email, sms or push")
    contact: str = Field(description="the address, number or device token it applies to")
    reason: str | None = None
    source: str | None = None
    created_at: str | None = None


class PersonalData(BaseModel):
    user_id: str
    exported_at: datetime
    profile: dict[str, Any] | None = Field(description="the profile in effect: contacts, locale, devices ...")
    directory_profile: dict[str, Any] | None = Field(
        description="the profile as stored: the directory's values (defaults under the person's own settings)"
    )
    own_settings: dict[str, Any] | None = Field(
        description="what the person set themselves (over the defaults)"
    )
    roles: list[str]
    topics: list[dict[str, Any]] = Field(
        description="each topic item: the directory's listing and the person's own join or leave"
    )
    consents: list[ConsentEvent] = Field(description="every consent given or withdrawn, oldest first")
    directory: dict[str, Any] | None = Field(description="the product directory's last applied version")
    inbox: dict[str, Any] | None = Field(description="inbox state kept per person (the read-all mark)")
    other_records: list[dict[str, Any]] = Field(description="any other record kept in the person's partition")
    notifications: list[dict[str, Any]] = Field(
        description="each notification with its decision and delivery log"
    )
    presence: dict[str, Any] | None
    suppressions: list[Suppression] = Field(description="suppression entries of the person's contacts")


class Exporter:
    def __init__(
        self, client: Any, *, users: str, notifications: str, presence: str, suppression: str
    ) -> None:
        self._client = client
        self._users = users
        self._notifications = notifications
        self._presence = presence
        self._suppression = suppression

    def _query(self, table: str, condition: str, values: dict[str, Any]) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": to_attributes(values),
            "ConsistentRead": True,
        }
        while True:
            response = self._client.query(**params)
            for item in response.get("Items", []):
                yield from_attributes(item)
            if not response.get("LastEvaluatedKey"):
                return
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def export(self, user_id: str, now: datetime | None = None) -> PersonalData:
        profile_item: dict[str, Any] | None = None
        roles: list[str] = []
        topics: list[dict[str, Any]] = []
        consents: list[ConsentEvent] = []
        directory = inbox = None
        other: list[dict[str, Any]] = []
        for item in self._query(self._users, "pk = :pk", {":pk": user_pk(user_id)}):
            sk = str(item.pop("sk"))
            item.pop("pk", None)
            if sk == PROFILE_SK:
                profile_item = item
            elif sk.startswith("ROLE#"):
                roles.append(str(item.get("role")))
            elif sk.startswith(TOPIC_SK_PREFIX):
                topics.append(item)
            elif sk == CONSENTS_SK:
                consents = [ConsentEvent.model_validate(e) for e in item.get("events", [])]
            elif sk == "DIRECTORY":
                directory = item
            elif sk == "INBOX":
                inbox = item
            else:
                other.append({"record": sk, **item})
        profile = profile_from_item(profile_item) if profile_item else None
        notifications = [
            {k: v for k, v in item.items() if k not in _INTERNAL}
            for item in self._query(self._notifications, "user_id = :u", {":u": user_id})
        ]
        presence_item = self._client.get_item(
            TableName=self._presence, Key=to_attributes({"user_id": user_id}), ConsistentRead=True
        ).get("Item")
        return PersonalData(
            user_id=user_id,
            exported_at=now or datetime.now(UTC),
            profile=profile.model_dump(mode="json") if profile else None,
            directory_profile={k: v for k, v in profile_item.items() if k != OWN} if profile_item else None,
            own_settings=(profile_item or {}).get(OWN),
            roles=sorted(roles),
            topics=sorted(topics, key=lambda t: str(t.get("topic"))),
            consents=consents,
            directory=directory,
            inbox=inbox,
            other_records=other,
            notifications=sorted(notifications, key=lambda n: str(n.get("created_at", ""))),
            presence=from_attributes(presence_item) if presence_item else None,
            suppressions=self._suppressions(_contacts(profile_item)),
        )

    def _suppressions(self, contacts: list[tuple[str, str]]) -> list[Suppression]:
        keys = {"email": email_address, "sms": sms_address, "push": push_address}
        wanted = {keys[channel](contact): (channel, contact) for channel, contact in contacts}
        if not wanted:
            return []
        found = batch_get(self._client, {self._suppression: [{"address": a} for a in wanted]})[
            self._suppression
        ]
        entries = []
        for item in found:
            channel, contact = wanted[item["address"]]
            entries.append(
                Suppression(
                    channel=channel,
                    contact=contact,
                    reason=item.get("reason"),
                    source=item.get("source"),
                    created_at=item.get("created_at"),
                )
            )
        return sorted(entries, key=lambda s: (s.channel, s.contact))


def _contacts(profile_item: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Every address Herald holds for the person: the directory's and their own, and their tokens."""
    if not profile_item:
        return []
    own = profile_item.get(OWN) or {}
    found: list[tuple[str, str]] = []
    for source in (profile_item, own):
        if source.get("email"):
            found.append(("email", str(source["email"])))
        if source.get("phone"):
            found.append(("sms", str(source["phone"])))
    found += [("push", str(token)) for token in profile_item.get("devices") or {}]
    return list(dict.fromkeys(found))
