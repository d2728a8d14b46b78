"""A person's push devices: register (`PUT /v1/me/devices/{token}`) and remove (`DELETE`).

Devices stay on the profile item's `devices` map (decision 002: the router and the push sender read
them there, in the one profile read). A token belongs to one person at a time (decision 017): the
Users table holds an owner item per token (`pk=DEVICE#<sha256(token)>`, `sk=OWNER`, `user_id`).
A registration is ONE `TransactWriteItems`:

- the owner item, conditioned on the owner read before (a lost race is read again and retried);
- the token taken out of the previous owner's map (a shared tablet: it moves, it is never in two
  maps, so never delivered to both);
- the token set in the caller's map, conditioned on the map read before; at the cap
  (`MAX_DEVICES_PER_USER`) the least recently registered token is evicted in the same write
  (with its owner item), rather than the registration refused.

The profile item may not exist yet (the app signed in before the directory synced the person): the
registration creates it with `user_id` and `devices`; the directory's later `UserUpserted` updates
the item and keeps `devices`.

A removal answers False (→ 404) for a token the caller does not hold, and never touches another
owner. It leaves a short-lived `RELEASED_DEVICE#<hash>` item in the caller's partition, so that a
repeated removal answers as the first did. The push sender drops a dead token (`drop_dead`) from the
holder's map and their name from its owner item in one transaction, so the owner item of a token the
person no longer has never outlives their erasure with their id on it.

An owner item may still be stale (it names someone whose map no longer holds the token: an older
release's dead-token removal, `UserStore.remove_device`, or a registration racing an erasure). It is
a hint: a registration that moves a token conditions the recorded owner's map too (it takes the
token out of it, or checks that it is not there), so whatever interleaves, the token ends in one
map only (never delivered to both).

Every transaction first checks that the caller has no directory tombstone (deleted by the bus or
erased through `DELETE /v1/me`): nothing is written for an erased person (PersonErased).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from herald.stores.dynamo import from_attributes, to_attributes
from herald.stores.keys import device_owner_key, released_device_key
from herald.stores.users import PersonErased, not_erased, profile_key
from herald.users import MAX_DEVICES_PER_USER, Device

MAX_TOKEN_LENGTH = 4096  # FCM tokens are ~160-200 characters, APNs 64; a bound, not a format
# Printable ASCII without space, `/` (a path segment) or `%` (no second round of decoding).
TOKEN_PATTERN = re.compile(r"^[\x21-\x24\x26-\x2e\x30-\x7e]+$")
RELEASED_DAYS = 30
MAX_ATTEMPTS = 8


class InvalidToken(ValueError):
    """Not a push token this API accepts."""


class Contended(RuntimeError):
    """The token or the caller's devices kept changing under every attempt."""


def check_token(token: str) -> str:
    if not 1 <= len(token) <= MAX_TOKEN_LENGTH:
        raise InvalidToken(f"a device token has 1 to {MAX_TOKEN_LENGTH} characters")
    if not TOKEN_PATTERN.match(token):
        raise InvalidToken("a device token is printable ASCII without spaces, '/' or '%'")
    return token


def _cancelled(error: ClientError) -> bool:
    """A lost race (read again and retry); raises PersonErased when the first check failed."""
    if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
    if reasons[:1] == ["ConditionalCheckFailed"]:
        raise PersonErased("the person was erased") from None
    return True


class Devices:
    def __init__(self, client: Any, users_table: str, max_devices: int = MAX_DEVICES_PER_USER) -> None:
        self._client = client
        self._table = users_table
        self._max = max_devices

    # -- reads ----------------------------------------------------------------------------------

    def _get(
        self, key: dict[str, str], projection: str | None = None, names: dict[str, str] | None = None
    ) -> dict[str, Any] | None:
        params: dict[str, Any] = {"TableName": self._table, "Key": to_attributes(key), "ConsistentRead": True}
        if projection:
            params["ProjectionExpression"] = projection
        if names:
            params["ExpressionAttributeNames"] = names
        item = self._client.get_item(**params).get("Item")
        return from_attributes(item) if item else None

    def owner(self, token: str) -> str | None:
        """Who the owner item names (a hint: the token is theirs if it is also in their map)."""
        item = self._get(device_owner_key(token))
        return str(item["user_id"]) if item and "user_id" in item else None

    def _devices_of(self, user_id: str) -> dict[str, dict[str, Any]] | None:
        """The caller's devices map; None when there is no profile item or no map on it."""
        item = self._get(profile_key(user_id), "pk, devices")
        if item is None or not isinstance(item.get("devices"), dict):
            return None
        return item["devices"]

    def _holds(self, user_id: str, token: str) -> bool:
        item = self._get(profile_key(user_id), "devices.#t", {"#t": token})
        return bool(item and token in (item.get("devices") or {}))

    def _not_erased(self, user_id: str) -> dict[str, Any]:
        """First in every transaction: the person has no directory tombstone (deleted or erased)."""
        return not_erased(self._table, user_id)

    # -- register -------------------------------------------------------------------------------

    def register(
        self,
        user_id: str,
        token: str,
        platform: str,
        *,
        app_version: str | None = None,
        locale: str | None = None,
        now: datetime | None = None,
    ) -> Device:
        """Register (or refresh) the caller's device; the token moves to them if someone else held it.
        Raises PersonErased, InvalidToken, or Contended when it loses every race."""
        check_token(token)
        device = Device(
            platform=platform,
            registered_at=now or datetime.now(UTC),
            app_version=app_version,
            locale=locale,
        )
        for _ in range(MAX_ATTEMPTS):
            try:
                self._client.transact_write_items(TransactItems=self._register_writes(user_id, token, device))
                return device
            except ClientError as error:
                if not _cancelled(error):
                    raise
                # another registration or removal of this token or of the caller's devices won
        raise Contended(f"device registration for user {user_id}: contended under {MAX_ATTEMPTS} attempts")

    def _register_writes(self, user_id: str, token: str, device: Device) -> list[dict[str, Any]]:
        owner = self.owner(token)
        devices = self._devices_of(user_id)
        writes: list[dict[str, Any]] = [self._not_erased(user_id)]
        # 1. the previous owner's map loses the token; if it does not hold it (a stale owner item,
        #    which must not create a profile item for someone erased), it still must not hold it
        #    when we write: they may register it again between our read and our write
        if owner is not None and owner != user_id:
            if self._holds(owner, token):
                writes.append(
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": to_attributes(profile_key(owner)),
                            "UpdateExpression": "REMOVE devices.#t",
                            "ConditionExpression": "attribute_exists(devices.#t)",
                            "ExpressionAttributeNames": {"#t": token},
                        }
                    }
                )
            else:
                writes.append(
                    {
                        "ConditionCheck": {
                            "TableName": self._table,
                            "Key": to_attributes(profile_key(owner)),
                            "ConditionExpression": "attribute_not_exists(devices.#t)",
                            "ExpressionAttributeNames": {"#t": token},
                        }
                    }
                )
        # 2. the owner item names the caller, if it still names whom we read
        owner_put: dict[str, Any] = {
            "TableName": self._table,
            "Item": to_attributes(
                {
                    **device_owner_key(token),
                    "user_id": user_id,
                    "registered_at": device.registered_at.isoformat(),
                }
            ),
        }
        if owner is None:
            owner_put["ConditionExpression"] = "attribute_not_exists(pk) OR attribute_not_exists(user_id)"
        else:
            owner_put["ConditionExpression"] = "user_id = :seen"
            owner_put["ExpressionAttributeValues"] = to_attributes({":seen": owner})
        writes.append({"Put": owner_put})
        # 3. the caller's map gains the token (evicting the least recently registered at the cap)
        stored = device.model_dump(mode="json", exclude_none=True)
        if devices is None:
            writes.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": to_attributes(profile_key(user_id)),
                        "UpdateExpression": "SET devices = :devices, user_id = if_not_exists(user_id, :uid)",
                        "ConditionExpression": "attribute_not_exists(devices)",
                        "ExpressionAttributeValues": to_attributes(
                            {":devices": {token: stored}, ":uid": user_id}
                        ),
                    }
                }
            )
            return writes
        evicted = self._evictions(devices, token)
        names = {"#t": token}
        values: dict[str, Any] = {":device": stored, ":n": len(devices)}
        conditions = ["size(devices) = :n"]
        conditions.append(
            "attribute_exists(devices.#t)" if token in devices else "attribute_not_exists(devices.#t)"
        )
        expression = "SET devices.#t = :device"
        if evicted:
            for index, old in enumerate(evicted):
                names[f"#e{index}"] = old
                conditions.append(f"attribute_exists(devices.#e{index})")
            expression += " REMOVE " + ", ".join(f"devices.#e{i}" for i in range(len(evicted)))
        writes.append(
            {
                "Update": {
                    "TableName": self._table,
                    "Key": to_attributes(profile_key(user_id)),
                    "UpdateExpression": expression,
                    "ConditionExpression": " AND ".join(conditions),
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": to_attributes(values),
                }
            }
        )
        for old in evicted:  # their owner items go too (unless the token is someone else's by now)
            writes.append(
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": to_attributes(device_owner_key(old)),
                        "ConditionExpression": "attribute_not_exists(pk) OR user_id = :me",
                        "ExpressionAttributeValues": to_attributes({":me": user_id}),
                    }
                }
            )
        return writes

    def _evictions(self, devices: dict[str, dict[str, Any]], token: str) -> list[str]:
        """The least recently registered tokens to drop so the caller's map stays within the cap."""
        if token in devices:
            return []
        excess = len(devices) + 1 - self._max
        if excess <= 0:
            return []
        oldest = sorted(devices, key=lambda t: (str(devices[t].get("registered_at", "")), t))
        return oldest[:excess]

    # -- a dead token (the push sender) ---------------------------------------------------------

    def drop_dead(self, user_id: str, token: str) -> None:
        """The push provider says `token` is dead: out of `user_id`'s map, and the owner item no
        longer names them, in one transaction (so the owner item never names nobody while the map
        still holds the token). Idempotent; writes no item that is not there, and nothing of anyone
        else's: where only one of the two holds (the token moved on, or an older stale owner item),
        that one is done alone."""
        removal = {
            "TableName": self._table,
            "Key": to_attributes(profile_key(user_id)),
            "UpdateExpression": "REMOVE devices.#t",
            "ConditionExpression": "attribute_exists(devices.#t)",
            "ExpressionAttributeNames": {"#t": token},
        }
        release = {
            "TableName": self._table,
            "Key": to_attributes(device_owner_key(token)),
            "UpdateExpression": "REMOVE user_id, registered_at",
            "ConditionExpression": "user_id = :me",
            "ExpressionAttributeValues": to_attributes({":me": user_id}),
        }
        for _ in range(MAX_ATTEMPTS):
            try:
                self._client.transact_write_items(TransactItems=[{"Update": removal}, {"Update": release}])
                return
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" not in reasons:
                continue  # a conflicting write: try again
            # one of the two does not hold (the other may): each alone, as far as it holds
            for update in (release, removal):
                try:
                    self._client.update_item(**update)
                except ClientError as error:
                    if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                        raise
            return
        raise Contended(f"dead token of user {user_id}: contended under {MAX_ATTEMPTS} attempts")

    # -- remove ---------------------------------------------------------------------------------

    def remove(self, user_id: str, token: str, now: datetime | None = None) -> bool:
        """Remove the caller's device. False when the token is not the caller's (and was not removed
        by them recently): the caller answers 404, and nobody else's device is touched. Raises
        PersonErased (also a 404 for the caller)."""
        check_token(token)
        at = now or datetime.now(UTC)
        for _ in range(MAX_ATTEMPTS):
            owner = self.owner(token)
            held = self._holds(user_id, token)
            if not held and owner != user_id:
                return self._get(released_device_key(user_id, token)) is not None
            writes: list[dict[str, Any]] = [self._not_erased(user_id)]
            if held:
                writes.append(
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": to_attributes(profile_key(user_id)),
                            "UpdateExpression": "REMOVE devices.#t",
                            "ConditionExpression": "attribute_exists(devices.#t)",
                            "ExpressionAttributeNames": {"#t": token},
                        }
                    }
                )
            if owner == user_id:
                writes.append(
                    {
                        "Delete": {
                            "TableName": self._table,
                            "Key": to_attributes(device_owner_key(token)),
                            "ConditionExpression": "user_id = :me",
                            "ExpressionAttributeValues": to_attributes({":me": user_id}),
                        }
                    }
                )
            expires = int((at + timedelta(days=RELEASED_DAYS)).timestamp())
            writes.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": to_attributes(
                            {
                                **released_device_key(user_id, token),
                                "released_at": at.isoformat(),
                                "expires_at": expires,
                            }
                        ),
                    }
                }
            )
            try:
                self._client.transact_write_items(TransactItems=writes)
                return True
            except ClientError as error:
                if not _cancelled(error):
                    raise
        raise Contended(f"device removal for user {user_id}: contended under {MAX_ATTEMPTS} attempts")
