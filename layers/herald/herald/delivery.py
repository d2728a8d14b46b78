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
| `retry`         | not taken, and we know it (**); SQS redelivers later (*)   | claims again  |
| `sent`          | the provider accepted it                                   | no-op         |
| `failed`        | a permanent failure (bad address, rejected content, ...)   | no-op         |
| `suppressed`    | blocked at send time (suppression list, consent, opt-out)  | no-op         |
| `not_delivered` | nobody to deliver to now (vacant channel, no live device)  | no-op         |
| `uncertain`     | the provider may or may not have it (***)                  | no-op         |

(*) with the retry run, `failing_since` and `failures`: the outage budget (decision 010).
(**) the provider answered a transient error (throttling, 5xx, our credentials refused), or the
request provably never left: connection refused, connect timeout, DNS, TLS handshake, our
credentials unreadable.
(***) a stale claim (below), or a call that may have reached the provider with no answer back: a
read timeout, a connection reset or closed after the request was written, an unexpected exception
once the adapter passed its point of no return (decision 007, `herald.channels.transport`).

A message that finds the channel `sending` with an unexpired claim is retried later (the holder is
still working; acknowledging the duplicate could delete the only copy of the message if the holder
then crashes). The claim lasts for the rest of the invocation plus a margin, so once it expires
its holder is certainly dead.

**Possible receipt is uncertain** (decision 007). Whether the provider got the message is unknown
after a stale claim (a crash, e.g. a Lambda timeout, between claiming and recording) and after a
call that may have reached it without an answer (the adapter's `Uncertain` result, or an exception
after its point of no return):

- webhooks resend (`resend_stale=True`; an uncertain call is recorded as `retry`): the receiver
  deduplicates on `Idempotency-Key` (= notification id), so a second POST has no second effect;
- every other channel records `uncertain` (with a delivery-log entry saying why) and does not
  send again, nor through the other email provider: email, push, SMS and realtime have no
  idempotency key at the provider, and a duplicate SMS or push in someone's pocket is worse than a
  rare unknown. The adapters also switch off their SDKs' own resends after a possible receipt
  (botocore's and firebase-admin's read retries). The sender emits a `DeliveryUncertain` metric so
  operators can alarm on it. An escalation primary left uncertain keeps its task token: if the
  app never acknowledges, the state machine's timeout still sends the email.

A push goes to each device token separately: any device accepting makes it `sent` (the detail
counts the uncertain devices); none accepting but one uncertain makes it `uncertain`.

**An acknowledged notification ends its escalation** (decision 019). A message carrying a task
token (an escalation step) claims only while the record has no `acked_at`: the claim's condition
says so, and the refused claim's returned record tells the sender (`Acknowledged`), with no extra
read. The sender then sends nothing, answers the step's token with `SendTaskSuccess` and records the
channel `not_delivered` (code `acknowledged`) with `record_acknowledged`.

**An erased person is never written again** (decision 017). The erasure deletes the person's
notification records; a message queued before it (held to the end of quiet hours, a retry, an
escalation's email) finds no record. Only then (the rare path: the router writes the record before it
queues anything) the ledger reads the person's directory item in the Users table: with a tombstone
(`deleted_at`) it writes nothing and answers `RecipientErased`, and the sender ends the message as
not delivered (acknowledged: never retried nor dead-lettered).
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
from herald.stores.keys import DIRECTORY_SK, user_pk
from herald.stores.notifications import stamp

# A channel's new state and its delivery-log entry, in one write.
_SET_STATE_AND_LOG = (
    "SET #d.#ch = :state, delivery_log = list_append(if_not_exists(delivery_log, :empty), :entry)"
)


class DeliveryState(StrEnum):
    SENDING = "sending"
    RETRY = "retry"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    NOT_DELIVERED = "not_delivered"
    UNCERTAIN = "uncertain"
    # what the provider reported after accepting it (herald.feedback)
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


FINAL_STATES = frozenset(
    {
        DeliveryState.SENT,
        DeliveryState.FAILED,
        DeliveryState.SUPPRESSED,
        DeliveryState.NOT_DELIVERED,
        DeliveryState.UNCERTAIN,
        DeliveryState.DELIVERED,
        DeliveryState.BOUNCED,
        DeliveryState.COMPLAINED,
    }
)
# After the provider accepted a message, what its feedback may turn the channel's state into, from
# which states: news never goes backwards (a late `delivered` does not undo a bounce), and a
# delivery report settles an `uncertain` send.
# A report may also come while the channel is still `sending`: the provider answered the sender,
# published its report, and the report was applied before the sender recorded that answer (a batch
# records its outcomes after all of its sends). The provider has the message, so the report moves
# the state; the sender's `finish` then adds its provider ids and keeps the reported state.
FEEDBACK_TRANSITIONS: dict[DeliveryState, frozenset[DeliveryState]] = {
    DeliveryState.DELIVERED: frozenset({DeliveryState.SENDING, DeliveryState.SENT, DeliveryState.UNCERTAIN}),
    DeliveryState.FAILED: frozenset(
        {DeliveryState.SENDING, DeliveryState.SENT, DeliveryState.UNCERTAIN, DeliveryState.DELIVERED}
    ),
    DeliveryState.BOUNCED: frozenset(
        {DeliveryState.SENDING, DeliveryState.SENT, DeliveryState.UNCERTAIN, DeliveryState.DELIVERED}
    ),
    DeliveryState.COMPLAINED: frozenset(
        {
            DeliveryState.SENDING,
            DeliveryState.SENT,
            DeliveryState.UNCERTAIN,
            DeliveryState.DELIVERED,
            DeliveryState.BOUNCED,
            DeliveryState.FAILED,
        }
    ),
}
# What a provider's report sets (herald.feedback): the keys of FEEDBACK_TRANSITIONS.
_REPORTED = frozenset(state.value for state in FEEDBACK_TRANSITIONS)
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
    # The notification record as it was just before the claim (the claim's UpdateItem returns it:
    # no extra read). A reference message takes its data from it. None when the claim created it.
    record: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    # The retry run the channel was in when claimed (None: no provider failure yet, or a fresh run).
    run: RetryRun | None = None

    def run_after_failure(self, now: datetime) -> RetryRun:
        """The run once this attempt is recorded as `retry` (the outage budget, decision 010)."""
        if self.run is None:
            return RetryRun(failing_since=now, failures=1)
        return RetryRun(failing_since=self.run.failing_since, failures=self.run.failures + 1)


@dataclass(frozen=True)
class RetryRun:
    """Consecutive `retry` outcomes of one channel: when the first failed and how many did.

    Kept on `deliveries.<channel>` (`failing_since`, `failures`) while the state is `retry`; a
    message dead-lettered past the outage tolerance ends its run (`end_retry_run`), so a redriven
    copy starts a fresh one."""

    failing_since: datetime
    failures: int

    def fields(self) -> dict[str, Any]:
        return {"failing_since": self.failing_since.isoformat(), "failures": self.failures}

    @classmethod
    def of(cls, delivery: Mapping[str, Any]) -> RetryRun | None:
        """The run recorded on a `deliveries.<channel>` map in state `retry` (None otherwise)."""
        if delivery.get("state") != DeliveryState.RETRY.value or not delivery.get("failing_since"):
            return None
        try:
            since = datetime.fromisoformat(str(delivery["failing_since"]))
            failures = int(delivery.get("failures") or 1)
        except (TypeError, ValueError):
            return None
        return cls(since if since.tzinfo else since.replace(tzinfo=UTC), max(1, failures))


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


@dataclass(frozen=True)
class RecipientErased:
    """The record does not exist and the person has a directory tombstone: nothing was written,
    nothing may be sent (the message ends as not delivered)."""

    reason: str = "the recipient was erased (directory tombstone): not delivered, nothing recorded"


@dataclass(frozen=True)
class Acknowledged:
    """An escalation step for a notification the person already acknowledged: nothing was claimed
    or written (the step's token neither). `delivery`: the channel's state on the record ({} when
    it has none): a final one means the step went out before the acknowledgement."""

    acked_at: str
    delivery: Mapping[str, Any] = field(default_factory=dict)


ClaimResult = Claim | AlreadyFinal | InFlight | RecipientErased | Acknowledged


class FeedbackWrite(StrEnum):
    """What `DeliveryLedger.record_feedback` wrote."""

    MOVED = "moved"  # the channel's state moved, and the log entry
    LOGGED = "logged"  # the log entry only (the news was not newer than the state)
    DUPLICATE = "duplicate"  # nothing: this event was applied before (a replay)
    MISSING = "missing"  # nothing: no such notification (erased, expired, not Herald's)


# The delivery log's outcome for a channel the router handed to its sender (its first entry); the
# channel has no state on `deliveries` until a sender claims it.
QUEUED = "queued"
ACKNOWLEDGED_CODE = "acknowledged"  # `deliveries.<channel>.code` of a step skipped after the ack

_MISSING = object()  # the record has no `deliveries` map yet
_ABSENT = object()  # there is no record at all (an erased person's, or another producer's message)
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
    event_id: str | None = None  # the provider's id of a feedback event (a replay is recognised by it)

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
            "event_id": self.event_id,
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
        users_table: str | None = None,
    ) -> None:
        """`users_table`: where a missing record's person is looked up for a tombstone before the
        ledger creates the record (the senders always pass it; without it, no lookup)."""
        self._client = client
        self._table = table
        self._users_table = users_table
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

        Stores `message.task_token` on the record in the same write; such a message (an escalation
        step) is not claimed once the notification is acknowledged (`Acknowledged`). With
        `resend_stale`, an expired `sending` claim is taken over; otherwise it is recorded as
        `uncertain`.
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
            if outcome is _ABSENT and self._erased(message.user_id):
                return RecipientErased()
            if outcome is _MISSING or outcome is _ABSENT:
                created = self._create_with_claim(message, claim, now)
                if created is not None:
                    return created
            elif outcome is not _AGAIN:
                return outcome  # type: ignore[return-value]
        raise RuntimeError(
            f"could not claim {message.channel} on {message.notification_id}: it keeps changing"
        )

    def _erased(self, user_id: str) -> bool:
        """The person's directory item is a tombstone (one read, only when the record is missing)."""
        if self._users_table is None:
            return False
        item = self._client.get_item(
            TableName=self._users_table,
            Key=to_attributes({"pk": user_pk(user_id), "sk": DIRECTORY_SK}),
            ProjectionExpression="deleted_at",
            ConsistentRead=True,
        ).get("Item")
        return bool(item and "deleted_at" in item)

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
        """`_ABSENT` when the record does not exist, `_MISSING` when it has no `deliveries` map yet;
        `_AGAIN` when the channel's state changed between our write and our read."""
        condition = "attribute_not_exists(#d.#ch) OR #d.#ch.#st = :retry"
        values: dict[str, Any] = {":claim": self._claim_map(claim, now), ":retry": DeliveryState.RETRY.value}
        if resend_stale:
            condition += " OR (#d.#ch.#st = :sending AND #d.#ch.claim_expires_at < :now)"
            values |= {":sending": DeliveryState.SENDING.value, ":now": int(now.timestamp())}
        update = "SET #d.#ch = :claim"
        guard = "attribute_exists(#d)"
        if message.task_token:
            update += ", task_token = :task_token"
            values[":task_token"] = message.task_token
        if message.stops_when_acknowledged:
            guard += " AND attribute_not_exists(acked_at)"  # an acknowledged escalation sends no step
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key=self._key(message.user_id, message.notification_id),
                UpdateExpression=update,
                ConditionExpression=f"{guard} AND ({condition})",
                ExpressionAttributeNames={"#d": "deliveries", "#ch": message.channel.value, "#st": "state"},
                ExpressionAttributeValues=to_attributes(values),
                ReturnValues="ALL_OLD",  # the whole record: a reference message reads its data here
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
            return self._refused(message, claim, from_attributes(item) if item else None, now, resend_stale)
        old = from_attributes(response.get("Attributes") or {})
        previous = (old.get("deliveries") or {}).get(message.channel.value) or {}
        took_over = previous.get("state") == DeliveryState.SENDING.value
        return replace(claim, took_over_stale=took_over, record=old, run=RetryRun.of(previous))

    def _refused(
        self,
        message: ChannelMessage,
        claim: Claim,
        record: dict[str, Any] | None,
        now: datetime,
        resend_stale: bool,
    ) -> ClaimResult | object:
        if record is None:
            return _ABSENT
        if not isinstance(record.get("deliveries"), dict):
            return _MISSING
        current = record["deliveries"].get(message.channel.value) or {}
        state = current.get("state")
        if state == DeliveryState.SENDING.value and current.get("claim_id") == claim.claim_id:
            # our own write: it was applied but its answer was lost, and botocore's retry of it (or
            # our next try) found the claim we had just taken. The previous state is gone with it.
            return replace(claim, record=record)
        if (
            message.stops_when_acknowledged
            and record.get("acked_at")
            and state != DeliveryState.SENDING.value
        ):
            # acknowledged: this step ends the escalation (a claim held elsewhere is waited out first)
            return Acknowledged(acked_at=str(record["acked_at"]), delivery=current)
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
            ":sending": DeliveryState.SENDING.value,
            ":entry": [entry.item(now)],
            ":empty": [],
        }
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(message.user_id, message.notification_id),
                UpdateExpression=_SET_STATE_AND_LOG,
                # still sending: a provider's report may have moved it on, keeping the claim (039)
                ConditionExpression="#d.#ch.claim_id = :claim_id AND #d.#ch.#st = :sending",
                ExpressionAttributeNames={"#d": "deliveries", "#ch": message.channel.value, "#st": "state"},
                ExpressionAttributeValues=to_attributes(values),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _create_with_claim(self, message: ChannelMessage, claim: Claim, now: datetime) -> Claim | None:
        """The record has no `deliveries` map (or does not exist): write it with our claim.

        The router writes the record before it queues anything; this covers messages from other
        producers (and keeps the inbox item complete when it does not exist). A reference message
        carries no data: `data` is then not written at all (never an empty map standing in for the
        real one), and the sender records the reference as unresolved. Returns the claim with the
        record as it was before (None if it did not exist), or None when someone created it meanwhile."""
        identity = {
            "event_id": message.event_id,
            "type": message.type,
            "category": message.category.value,
            "urgency": message.urgency.value,
            "locale": message.locale,
            "data": message.data,  # None for a reference: left out below
            "created_at": stamp(now),  # fixed width, as the router's (decision 015)
            "status": "created_by_sender",
            "expires_at": int((now + self._retention).timestamp()),
        }
        identity = {name: value for name, value in identity.items() if value is not None}
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
            response = self._client.update_item(
                TableName=self._table,
                Key=self._key(message.user_id, message.notification_id),
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_not_exists(#d)"
                + (" AND attribute_not_exists(acked_at)" if message.stops_when_acknowledged else ""),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_attributes(values),
                ReturnValues="ALL_OLD",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None  # someone created it meanwhile: claim again normally
            raise
        old = response.get("Attributes")
        return replace(claim, record=from_attributes(old) if old else None)

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
        run: RetryRun | None = None,
        provider_attempt: bool = True,
    ) -> DeliveryState | None:
        """Record the outcome of our claim and append `entry` to the delivery log; returns the
        channel's state as recorded (`state`, or a provider's report that came first), None when
        the claim was no longer ours.

        A `retry` carries the retry run on (`run`, else `claim.run_after_failure`); a retry that was
        no provider attempt (`provider_attempt=False`: a crash before any answer) keeps the run as
        it was, so it spends none of the outage budget.
        When the claim was no longer ours (it went stale and was taken over) the log entry is
        appended anyway, since the attempt did happen. When the provider's own report came first
        (FEEDBACK_TRANSITIONS from `sending`), the reported state stays: only the provider's ids and
        `set_attributes` are added, with `entry`, and the reported state is returned."""
        now = self._clock()
        delivery = {
            "state": state.value,
            "provider": entry.provider,
            "provider_message_id": provider_message_id,
            "reason": reason,
            "code": code,
            "updated_at": now.isoformat(),
        }
        if state is DeliveryState.RETRY:
            carried = run or (claim.run_after_failure(now) if provider_attempt else claim.run)
            if carried is not None:
                delivery |= carried.fields()
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
        values[":sending"] = DeliveryState.SENDING.value
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(claim.user_id, claim.notification_id),
                UpdateExpression=update,
                ConditionExpression="#d.#ch.claim_id = :claim_id AND #d.#ch.#st = :sending",
                ExpressionAttributeNames=names | {"#st": "state"},
                ExpressionAttributeValues=to_attributes(values),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = from_attributes(error.response.get("Item") or {})
            current = (old.get("deliveries") or {}).get(claim.channel.value) or {}
            if current.get("claim_id") == claim.claim_id and current.get("state") in _REPORTED:
                reported = DeliveryState(current["state"])
                if self._finish_after_report(
                    claim, delivery, entry, now, set_attributes or {}, remove_task_token
                ):
                    return reported
                return None
            self.append_log(claim.user_id, claim.notification_id, entry)
            return None
        return state

    def _finish_after_report(
        self,
        claim: Claim,
        delivery: Mapping[str, Any],
        entry: LogEntry,
        now: datetime,
        set_attributes: Mapping[str, Any],
        remove_task_token: bool,
    ) -> bool:
        """`finish` after the provider's report moved the channel on: the report's state stays."""
        names = {"#d": "deliveries", "#ch": claim.channel.value}
        values: dict[str, Any] = {":entry": [entry.item(now)], ":empty": [], ":claim_id": claim.claim_id}
        sets = ["delivery_log = list_append(if_not_exists(delivery_log, :empty), :entry)"]
        for field_name in ("provider", "provider_message_id"):
            if delivery.get(field_name) is not None:
                names[f"#{field_name}"] = field_name
                values[f":{field_name}"] = delivery[field_name]
                sets.append(f"#d.#ch.#{field_name} = :{field_name}")
        for i, (name, value) in enumerate(set_attributes.items()):
            names[f"#a{i}"] = name
            values[f":a{i}"] = value
            sets.append(f"#a{i} = :a{i}")
        update = "SET " + ", ".join(sets) + (" REMOVE task_token" if remove_task_token else "")
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

    def end_retry_run(self, message: ChannelMessage, run: RetryRun, entry: LogEntry) -> bool:
        """The message was dead-lettered past the outage tolerance: forget its run (a redriven copy
        gets a fresh budget) and log why. Leaves the state `retry`, so the copy may claim. False
        when the channel moved on meanwhile (another copy claimed, sent or started a new run)."""
        now = self._clock()
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(message.user_id, message.notification_id),
                UpdateExpression="SET #d.#ch.dead_lettered_at = :now, delivery_log = list_append("
                "if_not_exists(delivery_log, :empty), :entry) REMOVE #d.#ch.failing_since, #d.#ch.failures",
                ConditionExpression="#d.#ch.#st = :retry AND #d.#ch.failing_since = :since",
                ExpressionAttributeNames={"#d": "deliveries", "#ch": message.channel.value, "#st": "state"},
                ExpressionAttributeValues=to_attributes(
                    {
                        ":now": now.isoformat(),
                        ":entry": [entry.item(now)],
                        ":empty": [],
                        ":retry": DeliveryState.RETRY.value,
                        ":since": run.failing_since.isoformat(),
                    }
                ),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def append_log(
        self, user_id: str, notification_id: str, entry: LogEntry, at: datetime | None = None
    ) -> None:
        self._client.update_item(
            TableName=self._table,
            Key=self._key(user_id, notification_id),
            UpdateExpression="SET delivery_log = list_append(if_not_exists(delivery_log, :empty), :entry)",
            ConditionExpression="attribute_exists(notification_id)",
            ExpressionAttributeValues=to_attributes(
                {":entry": [entry.item(at or self._clock())], ":empty": []}
            ),
        )

    def record_feedback(
        self,
        user_id: str,
        notification_id: str,
        entry: LogEntry,
        state: DeliveryState | None = None,
        at: datetime | None = None,
    ) -> FeedbackWrite:
        """A provider's report on a message it accepted: `entry` on the delivery log and, with
        `state`, the channel's new state when the current one may move there (FEEDBACK_TRANSITIONS).
        An entry with an `event_id` already applied to this notification (a replayed webhook)
        writes nothing: the ids applied are kept in the record's `feedback_events` set, in the same
        write. `at`: when the provider says it happened (the log entry's time; default now)."""
        now = at or self._clock()
        log = "delivery_log = list_append(if_not_exists(delivery_log, :empty), :entry)"
        values: dict[str, Any] = {":entry": [entry.item(now)], ":empty": []}
        add, fresh = "", ""
        if entry.event_id:
            add, fresh = " ADD feedback_events :event_ids", " AND NOT contains(feedback_events, :event_id)"
            values |= {":event_id": entry.event_id}
        raw_values = {":event_ids": {"SS": [entry.event_id]}} if entry.event_id else {}
        if state is not None:
            allowed = sorted(s.value for s in FEEDBACK_TRANSITIONS[state])
            names = {f":from{i}": value for i, value in enumerate(allowed)}
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=self._key(user_id, notification_id),
                    UpdateExpression=f"SET #d.#ch.#st = :state, #d.#ch.updated_at = :at, {log}{add}",
                    ConditionExpression=f"#d.#ch.#st IN ({', '.join(names)}){fresh}",
                    ExpressionAttributeNames={"#d": "deliveries", "#ch": entry.channel.value, "#st": "state"},
                    ExpressionAttributeValues=to_attributes(
                        {**values, **names, ":state": state.value, ":at": now.isoformat()}
                    )
                    | raw_values,
                )
                return FeedbackWrite.MOVED
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(user_id, notification_id),
                UpdateExpression=f"SET {log}{add}",
                ConditionExpression=f"attribute_exists(notification_id){fresh}",
                ExpressionAttributeValues=to_attributes(values) | raw_values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return FeedbackWrite.DUPLICATE if error.response.get("Item") else FeedbackWrite.MISSING
        return FeedbackWrite.LOGGED

    def record_acknowledged(self, message: ChannelMessage, reason: str) -> bool:
        """An escalation step skipped because the notification was acknowledged (no claim was
        taken): the channel becomes `not_delivered` with code `acknowledged`, and the delivery log
        says why. False when the channel got a state meanwhile (then that state stands)."""
        now = self._clock()
        entry = LogEntry(
            channel=message.channel,
            outcome=DeliveryState.NOT_DELIVERED.value,
            detail=reason,
            code=ACKNOWLEDGED_CODE,
        )
        state = {
            "state": DeliveryState.NOT_DELIVERED.value,
            "reason": reason,
            "code": ACKNOWLEDGED_CODE,
            "updated_at": now.isoformat(),
        }
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(message.user_id, message.notification_id),
                UpdateExpression=_SET_STATE_AND_LOG,
                ConditionExpression="attribute_exists(#d) "
                "AND (attribute_not_exists(#d.#ch) OR #d.#ch.#st = :retry)",
                ExpressionAttributeNames={"#d": "deliveries", "#ch": message.channel.value, "#st": "state"},
                ExpressionAttributeValues=to_attributes(
                    {
                        ":state": state,
                        ":entry": [entry.item(now)],
                        ":empty": [],
                        ":retry": DeliveryState.RETRY.value,
                    }
                ),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

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
