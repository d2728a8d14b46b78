"""At most one effect per (notification, channel): claims and outcomes on the notification record.

SQS delivers at least once, so a channel sender may see the same message twice (a redelivery after
a visibility timeout, or two concurrent receives). Before calling a provider the sender *claims*
the channel on the notification record with one conditional UpdateItem:

    deliveries.<channel> = {state: "sending", claim_id, claim_expires_at, ...}
    only if the record has no state for the channel yet, or its state is "retry"

and after the call it records the outcome, conditioned on still holding that claim_id, together
with an entry appended to `delivery_log` (list_append): time, channel, provider, outcome, detail.

States of `deliveries.<channel>`:

| state           | meaning                                                    | next message  |
|-----------------|------------------------------------------------------------|---------------|
| `sending`       | claimed; a provider call is (or was) in flight             | see below     |
| `retry`         | a transient failure was recorded; SQS redelivers later     | claims again  |
| `sent`          | the provider accepted it                                   | no-op         |
| `failed`        | a permanent failure (bad address, rejected content, ...)   | no-op         |
| `suppressed`    | blocked at send time (suppression list, consent, opt-out)  | no-op         |
| `not_delivered` | nobody to deliver to now (vacant channel, no live device)  | no-op         |
| `uncertain`     | a claim went stale: the provider may or may not have it    | no-op         |

A message that finds the channel `sending` with an unexpired claim is retried later (the holder is
still working; acknowledging the duplicate could delete the only copy of the message if the holder
then crashes). The claim lasts for the rest of the invocation plus a margin, so once it expires
its holder is certainly dead.

**Stale claims** (a crash, e.g. a Lambda timeout, between claiming and recording). Whether the
provider got the message is unknown:

- webhooks resend (`resend_stale=True`): the receiver deduplicates on `Idempotency-Key`
  (= notification id), so a second POST has no second effect;
- every other channel records `uncertain` (with a delivery-log entry) and does not send again:
  email, push, SMS and realtime have no idempotency key at the provider, and a duplicate SMS or
  push in someone's pocket is worse than a rare unknown. The sender emits a `DeliveryUncertain`
  metric so operators can alarm on it. An escalation primary left uncertain keeps its task
  token: if the app never acknowledges, the state machine's timeout still sends the email.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from herald.messages import ChannelMessage
from herald.models import Channel
from herald.stores.dynamo import from_attributes, to_attributes


class DeliveryState(StrEnum):
    SENDING = "sending"
    RETRY = "retry"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    NOT_DELIVERED = "not_delivered"
    UNCERTAIN = "uncertain"


FINAL_STATES = frozenset(
    {
        DeliveryState.SENT,
        DeliveryState.FAILED,
        DeliveryState.SUPPRESSED,
        DeliveryState.NOT_DELIVERED,
        DeliveryState.UNCERTAIN,
    }
)
# Final states in which the channel did not reach the user (an escalation moves on at once).
UNDELIVERED_STATES = frozenset({DeliveryState.FAILED, DeliveryState.SUPPRESSED, DeliveryState.NOT_DELIVERED})


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Claim:
    """This invocation holds the channel: it may call the provider, then must `finish`."""

    user_id: str
    notification_id: str
    channel: Channel
    claim_id: str
    expires_at: int
    took_over_stale: bool = False


@dataclass(frozen=True)
class AlreadyFinal:
    """The channel already reached a final state: the message is a duplicate (no-op)."""

    state: DeliveryState
    delivery: Mapping[str, Any] = field(default_factory=dict)
    just_marked_uncertain: bool = False


@dataclass(frozen=True)
class InFlight:
    """Another invocation holds an unexpired claim: come back after it expires."""

    expires_at: int
    seconds_left: int


ClaimResult = Claim | AlreadyFinal | InFlight

_MISSING = object()  # the record has no `deliveries` map yet
_AGAIN = object()  # the channel's state changed while we looked: claim again


@dataclass(frozen=True)
class LogEntry:
    """One attempt on `delivery_log`."""

    channel: Channel
    outcome: str
    provider: str | None = None
    detail: str | None = None
    code: str | None = None
    provider_message_id: str | None = None
    attempt: int | None = None

    def item(self, at: datetime) -> dict[str, Any]:
        entry = {
            "at": at.isoformat(),
            "channel": self.channel.value,
            "outcome": self.outcome,
            "provider": self.provider,
            "detail": self.detail,
            "code": self.code,
            "provider_message_id": self.provider_message_id,
            "attempt": self.attempt,
        }
        return {k: v for k, v in entry.items() if v is not None}


class DeliveryLedger:
    """Claims and outcomes of channel deliveries on the notifications table."""

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        clock: Callable[[], datetime] = utc_now,
        retention_days: int = 90,
    ) -> None:
        self._client = client
        self._table = table
        self._clock = clock
        self._retention = timedelta(days=retention_days)

    @staticmethod
    def _key(user_id: str, notification_id: str) -> dict[str, Any]:
        return to_attributes({"user_id": user_id, "notification_id": notification_id})

    # -- claim -------------------------------------------------------------------------------

    def claim(
        self,
        message: ChannelMessage,
        *,
        lease_seconds: int,
        resend_stale: bool = False,
        attempt: int | None = None,
    ) -> ClaimResult:
        """Claim `message.channel` on the record (creating a minimal record if none exists).

        Stores `message.task_token` on the record in the same write. With `resend_stale`, an
        expired `sending` claim is taken over; otherwise it is recorded as `uncertain`.
        """
        now = self._clock()
        claim = Claim(
            user_id=message.user_id,
            notification_id=message.notification_id,
            channel=message.channel,
            claim_id=uuid.uuid4().hex,
            expires_at=int(now.timestamp()) + max(1, lease_seconds),
        )
        for _ in range(3):
            outcome = self._try_claim(message, claim, now, resend_stale)
            if outcome is _MISSING:
                if self._create_with_claim(message, claim, now):
                    return claim
            elif outcome is not _AGAIN:
                return outcome  # type: ignore[return-value]
        raise RuntimeError(
            f"could not claim {message.channel} on {message.notification_id}: it keeps changing"
        )

    def _claim_map(self, claim: Claim, now: datetime) -> dict[str, Any]:
        return {
            "state": DeliveryState.SENDING.value,
            "claim_id": claim.claim_id,
            "claim_expires_at": claim.expires_at,
            "updated_at": now.isoformat(),
        }

    def _try_claim(
        self, message: ChannelMessage, claim: Claim, now: datetime, resend_stale: bool
    ) -> ClaimResult | object:
        """`_MISSING` when the record (or its `deliveries` map) does not exist yet; `_AGAIN` when
        the channel's state changed between our write and our read."""
        condition = "attribute_not_exists(#d.#ch) OR #d.#ch.#st = :retry"
        values: dict[str, Any] = {":claim": self._claim_map(claim, now), ":retry": DeliveryState.RETRY.value}
        if resend_stale:
            condition += " OR (#d.#ch.#st = :sending AND #d.#ch.claim_expires_at < :now)"
            values |= {":sending": DeliveryState.SENDING.value, ":now": int(now.timestamp())}
        update = "SET #d.#ch = :claim"
        if message.task_token:
            update += ", task_token = :task_token"
            values[":task_token"] = message.task_token
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key=self._key(message.user_id, message.notification_id),
                UpdateExpression=update,
                ConditionExpression=f"attribute_exists(#d) AND ({condition})",
                ExpressionAttributeNames={"#d": "deliveries", "#ch": message.channel.value, "#st": "state"},
                ExpressionAttributeValues=to_attributes(values),
                ReturnValues="UPDATED_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            item = error.response.get("Item")
            if item is None:
                item = self._client.get_item(
                    TableName=self._table,
                    Key=self._key(message.user_id, message.notification_id),
                    ConsistentRead=True,
                ).get("Item")
            return self._refused(message, from_attributes(item) if item else None, now, resend_stale)
        old = from_attributes(response.get("Attributes") or {})
        previous = (old.get("deliveries") or {}).get(message.channel.value) or {}
        took_over = previous.get("state") == DeliveryState.SENDING.value
        return replace(claim, took_over_stale=took_over)

    def _refused(
        self, message: ChannelMessage, record: dict[str, Any] | None, now: datetime, resend_stale: bool
    ) -> ClaimResult | object:
        if record is None or not isinstance(record.get("deliveries"), dict):
            return _MISSING
        current = record["deliveries"].get(message.channel.value) or {}
        state = current.get("state")
        if state == DeliveryState.SENDING.value:
            expires_at = int(current.get("claim_expires_at") or 0)
            left = expires_at - int(now.timestamp())
            if left >= 0 or resend_stale:
                # unexpired; or expired between our condition check and now (resend: try again)
                return InFlight(expires_at=expires_at, seconds_left=max(left, 1))
            if self._mark_uncertain(message, current, now):
                return AlreadyFinal(DeliveryState.UNCERTAIN, current, just_marked_uncertain=True)
            return _AGAIN  # the stale claim changed under us: look again
        try:
            final = DeliveryState(state)
        except ValueError:
            final = DeliveryState.FAILED
        if final is DeliveryState.RETRY:
            return _AGAIN  # changed between the write and the read: look again
        return AlreadyFinal(final, current)

    def _mark_uncertain(self, message: ChannelMessage, stale: Mapping[str, Any], now: datetime) -> bool:
        entry = LogEntry(
            channel=message.channel,
            outcome=DeliveryState.UNCERTAIN.value,
            detail="a previous attempt claimed this channel and never recorded its outcome; "
            "not sending again to avoid a duplicate",
        )
        values = {
            ":state": {
                "state": DeliveryState.UNCERTAIN.value,
                "reason": "stale claim (the sending invocation ended without recording an outcome)",
                "updated_at": now.isoformat(),
            },
            ":claim_id": stale.get("claim_id", ""),
            ":entry": [entry.item(now)],
            ":empty": [],
        }
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(message.user_id, message.notification_id),
                UpdateExpression="SET #d.#ch = :state, delivery_log = list_append("
                "if_not_exists(delivery_log, :empty), :entry)",
                ConditionExpression="#d.#ch.claim_id = :claim_id",
                ExpressionAttributeNames={"#d": "deliveries", "#ch": message.channel.value},
                ExpressionAttributeValues=to_attributes(values),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _create_with_claim(self, message: ChannelMessage, claim: Claim, now: datetime) -> bool:
        """The record has no `deliveries` map (or does not exist): write it with our claim.

        The router writes the record before it queues anything; this covers messages from other
        producers (and keeps the inbox item complete when it does not exist)."""
        identity = {
            "event_id": message.event_id,
            "type": message.type,
            "category": message.category.value,
            "urgency": message.urgency.value,
            "locale": message.locale,
            "data": message.data,
            "created_at": now.isoformat(),
            "status": "created_by_sender",
            "expires_at": int((now + self._retention).timestamp()),
        }
        names = {"#d": "deliveries"}
        values: dict[str, Any] = {":deliveries": {message.channel.value: self._claim_map(claim, now)}}
        sets = ["#d = :deliveries"]
        for i, (name, value) in enumerate(identity.items()):
            names[f"#f{i}"] = name
            values[f":v{i}"] = value
            sets.append(f"#f{i} = if_not_exists(#f{i}, :v{i})")
        if message.task_token:
            sets.append("task_token = :task_token")
            values[":task_token"] = message.task_token
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(message.user_id, message.notification_id),
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_not_exists(#d)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_attributes(values),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False  # someone created it meanwhile: claim again normally
            raise
        return True

    # -- outcome -----------------------------------------------------------------------------

    def finish(
        self,
        claim: Claim,
        state: DeliveryState,
        entry: LogEntry,
        *,
        provider_message_id: str | None = None,
        reason: str | None = None,
        code: str | None = None,
        set_attributes: Mapping[str, Any] | None = None,
        remove_task_token: bool = False,
    ) -> bool:
        """Record the outcome of our claim and append `entry` to the delivery log.

        Returns False when the claim was no longer ours (it went stale and was taken over); the
        log entry is appended anyway, since the attempt did happen."""
        now = self._clock()
        delivery = {
            "state": state.value,
            "provider": entry.provider,
            "provider_message_id": provider_message_id,
            "reason": reason,
            "code": code,
            "updated_at": now.isoformat(),
        }
        values: dict[str, Any] = {
            ":state": {k: v for k, v in delivery.items() if v is not None},
            ":entry": [entry.item(now)],
            ":empty": [],
            ":claim_id": claim.claim_id,
        }
        names = {"#d": "deliveries", "#ch": claim.channel.value}
        sets = ["#d.#ch = :state", "delivery_log = list_append(if_not_exists(delivery_log, :empty), :entry)"]
        for i, (name, value) in enumerate((set_attributes or {}).items()):
            names[f"#a{i}"] = name
            values[f":a{i}"] = value
            sets.append(f"#a{i} = :a{i}")
        update = "SET " + ", ".join(sets)
        if remove_task_token:
            update += " REMOVE task_token"
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(claim.user_id, claim.notification_id),
                UpdateExpression=update,
                ConditionExpression="#d.#ch.claim_id = :claim_id",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_attributes(values),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            self.append_log(claim.user_id, claim.notification_id, entry)
            return False
        return True

    def append_log(self, user_id: str, notification_id: str, entry: LogEntry) -> None:
        self._client.update_item(
            TableName=self._table,
            Key=self._key(user_id, notification_id),
            UpdateExpression="SET delivery_log = list_append(if_not_exists(delivery_log, :empty), :entry)",
            ConditionExpression="attribute_exists(notification_id)",
            ExpressionAttributeValues=to_attributes({":entry": [entry.item(self._clock())], ":empty": []}),
        )

    def store_task_token(self, message: ChannelMessage) -> None:
        """Keep the escalation's task token for the ack endpoint (a duplicate of a sent primary)."""
        if not message.task_token:
            return
        self._client.update_item(
            TableName=self._table,
            Key=self._key(message.user_id, message.notification_id),
            UpdateExpression="SET task_token = :task_token",
            ConditionExpression="attribute_exists(notification_id)",
            ExpressionAttributeValues=to_attributes({":task_token": message.task_token}),
        )

    def clear_task_token(self, message: ChannelMessage) -> None:
        """Forget the task token once the escalation was told the primary failed (if it is ours)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(message.user_id, message.notification_id),
                UpdateExpression="REMOVE task_token",
                ConditionExpression="task_token = :task_token",
                ExpressionAttributeValues=to_attributes({":task_token": message.task_token or ""}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
