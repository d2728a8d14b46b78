"""Users table: profiles (with devices) and role memberships for fan-out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from herald.stores.dynamo import from_attributes, to_attributes
from herald.stores.keys import PROFILE_SK, role_sk, user_pk
from herald.users import MAX_DEVICES_PER_USER, Device, UserProfile


def profile_key(user_id: str) -> dict[str, str]:
    return {"pk": user_pk(user_id), "sk": PROFILE_SK}


def profile_from_item(item: dict[str, Any]) -> UserProfile:
    fields = {k: v for k, v in item.items() if k not in ("pk", "sk")}
    return UserProfile.model_validate(fields)


class UserStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def put_profile(self, profile: UserProfile) -> None:
        """Write the profile and its role memberships (the ByRole index reads the latter)."""
        item = {**profile_key(profile.user_id), **profile.model_dump(mode="json", exclude_none=True)}
        writes = [{"PutRequest": {"Item": to_attributes(item)}}]
        writes += [
            {
                "PutRequest": {
                    "Item": to_attributes(
                        {
                            "pk": user_pk(profile.user_id),
                            "sk": role_sk(role),
                            "role": role,
                            "user_id": profile.user_id,
                        }
                    )
                }
            }
            for role in sorted(profile.roles)
        ]
        for start in range(0, len(writes), 25):
            self._client.batch_write_item(RequestItems={self._table: writes[start : start + 25]})

    def get_profile(self, user_id: str) -> UserProfile | None:
        response = self._client.get_item(
            TableName=self._table, Key=to_attributes(profile_key(user_id)), ConsistentRead=True
        )
        item = response.get("Item")
        return profile_from_item(from_attributes(item)) if item else None

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

    def iter_user_ids_with_role(self, role: str, page_size: int = 100) -> Iterator[str]:
        cursor: dict[str, Any] | None = None
        while True:
            user_ids, cursor = self.user_ids_with_role(role, page_size, cursor)
            yield from user_ids
            if not cursor:
                return
