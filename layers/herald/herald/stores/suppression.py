"""Suppression table: addresses Herald must never use again (bounces, complaints, STOP, dead tokens,
an erased person's opt-outs).

Keys are hashes (`herald.stores.keys.email_address` / `sms_address` / `push_address`, decision 017);
the plain address is kept beside it as `contact`, for support, until the person is erased.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from herald.stores.dynamo import batch_get, from_attributes, scan_page, to_attributes

# A lifted entry leaves a record of who lifted it and why under its own key (never a suppression
# key, so no reader mistakes it for one), kept this long.
LIFT_PREFIX = "lifted#"
LIFT_RECORD_DAYS = 400
OPTED_OUT = "opted_out"  # the person's own opt-out (an SMS STOP; kept anonymously after an erasure)


def suppression_key(address: str) -> dict[str, str]:
    return {"address": address}


@dataclass(frozen=True)
class Lifted:
    """The entry that was lifted, and the lift's own record (`address` = its key)."""

    entry: dict[str, Any]
    record: dict[str, Any]


def _note(entry: dict[str, Any]) -> str:
    reason = str(entry.get("reason") or "suppressed")
    latest = entry.get("last_reason")
    if latest and latest != reason:
        reason += f", then {latest}"
    about = [str(entry["source"])] if entry.get("source") else []
    if entry.get("created_at"):
        about.append(f"since {str(entry['created_at'])[:10]}")
    # not the notification that caused it: on a shared address it may be another person's, and the
    # trace is part of this person's export (`herald suppression list` shows it to operators)
    return f"{reason} ({', '.join(about)})" if about else reason


class SuppressionChanged(Exception):
    """The entry changed between reading and lifting it (a new report came in): read it again."""


class ConsentRequired(Exception):
    """The entry is the person's own opt-out: only they lift it (an operator must force it)."""


class SuppressionStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def notes(self, addresses: Iterable[str]) -> dict[str, str]:
        """The suppressed ones among these addresses, each with why, for a decision trace: `bounced
        (ses, since 2026-11-30)`. One batched read."""
        keys = [suppression_key(a) for a in set(addresses)]
        if not keys:
            return {}
        found = batch_get(self._client, {self._table: keys})[self._table]
        return {str(item["address"]): _note(item) for item in found}

    def suppressed_now(self, addresses: Iterable[str]) -> frozenset[str]:
        """Which of these addresses are suppressed, read as `is_suppressed` reads one (strongly
        consistent: an entry written a moment ago counts) in one batched read (100 keys a call)."""
        keys = [suppression_key(a) for a in set(addresses)]
        if not keys:
            return frozenset()
        found = batch_get(self._client, {self._table: keys}, consistent=True)[self._table]
        return frozenset(str(item["address"]) for item in found)

    def is_suppressed(self, address: str) -> bool:
        response = self._client.get_item(
            TableName=self._table, Key=to_attributes(suppression_key(address)), ConsistentRead=True
        )
        return "Item" in response

    def suppress(
        self,
        address: str,
        reason: str,
        source: str,
        now: datetime | None = None,
        contact: str | None = None,
        notification_id: str | None = None,
    ) -> None:
        """Suppress an address (a key from herald.stores.keys); the first reason recorded wins (later
        ones are kept as `last_reason`). `contact`: the plain address, kept for support;
        `notification_id`: the notification whose feedback caused it (the first one is kept)."""
        at = (now or datetime.now(UTC)).isoformat()
        expression = (
            "SET #reason = if_not_exists(#reason, :reason), #source = if_not_exists(#source, :source), "
            "created_at = if_not_exists(created_at, :at), last_reason = :reason, updated_at = :at"
        )
        values: dict[str, Any] = {":reason": reason, ":source": source, ":at": at, ":one": 1}
        if contact is not None:
            expression += ", contact = :contact"
            values[":contact"] = contact
        if notification_id is not None:
            expression += ", notification_id = if_not_exists(notification_id, :notification_id)"
            values[":notification_id"] = notification_id
        expression += " ADD revision :one"  # every report counts: a lift checks it read the latest
        self._client.update_item(
            TableName=self._table,
            Key=to_attributes(suppression_key(address)),
            UpdateExpression=expression,
            ExpressionAttributeNames={"#reason": "reason", "#source": "source"},
            ExpressionAttributeValues=to_attributes(values),
        )

    def keep_anonymously(
        self, address: str, *, opted_out: bool, source: str = "erasure", now: datetime | None = None
    ) -> bool:
        """For an erased person: drop the entry's plain `contact` and the notification that caused
        it (whose record the erasure deletes), keep the hashed entry. With `opted_out`, record an
        `opted_out` entry if there is none (their channel opt-out outlives them). True when an
        entry exists afterwards."""
        key = to_attributes(suppression_key(address))
        if opted_out:
            at = (now or datetime.now(UTC)).isoformat()
            self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET #reason = if_not_exists(#reason, :reason), #source = if_not_exists("
                "#source, :source), created_at = if_not_exists(created_at, :at), updated_at = :at "
                "REMOVE contact, notification_id ADD revision :one",
                ExpressionAttributeNames={"#reason": "reason", "#source": "source"},
                ExpressionAttributeValues=to_attributes(
                    {":reason": OPTED_OUT, ":source": source, ":at": at, ":one": 1}
                ),
            )
            return True
        try:
            self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="REMOVE contact, notification_id",
                ConditionExpression="attribute_exists(address)",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False  # never suppressed: nothing to keep
        return True

    def entries(self, prefix: str = "", *, lifted: bool = False) -> Iterator[dict[str, Any]]:
        """Every entry whose key starts with `prefix` (`email#`, `sms#`, `push#`); with `lifted`, the
        lift records instead. A paged Scan: an operator's listing, never on a delivery path."""
        start = (LIFT_PREFIX if lifted else "") + prefix
        params: dict[str, Any] = {"TableName": self._table}
        if start:
            params |= {
                "FilterExpression": "begins_with(address, :p)",
                "ExpressionAttributeValues": to_attributes({":p": start}),
            }
        while True:
            response = self._client.scan(**params)
            for item in response.get("Items", []):
                entry = from_attributes(item)
                if lifted or not str(entry["address"]).startswith(LIFT_PREFIX):
                    yield entry
            if not response.get("LastEvaluatedKey"):
                return
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def page(
        self, prefix: str = "", *, limit: int, after: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Up to `limit` entries whose key starts with `prefix` (lift records never), in the table's
        order, and the key to go on `after` (None at the end): the console's listing, a page at a
        time (a paged Scan, never on a delivery path)."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "begins_with(address, :p) AND NOT begins_with(address, :lifted)",
            "ExpressionAttributeValues": to_attributes({":p": prefix, ":lifted": LIFT_PREFIX}),
        }
        if not prefix:
            params["FilterExpression"] = "NOT begins_with(address, :lifted)"
            params["ExpressionAttributeValues"] = to_attributes({":lifted": LIFT_PREFIX})
        items, last = scan_page(self._client, params, limit, suppression_key(after) if after else None)
        return items, (str(last["address"]) if last else None)

    def entry(self, address: str) -> dict[str, Any] | None:
        """The entry under `address`, read consistently (None: not suppressed)."""
        found = self._client.get_item(
            TableName=self._table, Key=to_attributes(suppression_key(address)), ConsistentRead=True
        ).get("Item")
        return from_attributes(found) if found else None

    def lift(
        self,
        address: str,
        *,
        by: str,
        why: str,
        force: bool = False,
        reset: Sequence[tuple[str, Mapping[str, Any]]] = (),
        now: datetime | None = None,
    ) -> Lifted | None:
        """An operator lifts an entry: it is deleted and, in the same transaction, a lift record
        keeps what it was (reason, source, since when), who lifted it and why; `reset` names other
        items deleted with it ((table, key): the address's soft-bounce count, so one more soft bounce
        does not suppress it again at once). The lift record holds no plain contact and no
        notification (it outlives an erasure). None when the address was not suppressed.

        The person's own opt-out (an SMS STOP, reason `opted_out`) is theirs to lift (START): an
        operator must say `force` (`ConsentRequired` otherwise). The delete is conditioned on the
        entry's `revision`: a report that came in after it was read is not lifted unseen
        (`SuppressionChanged`)."""
        at = now or datetime.now(UTC)
        entry = self.entry(address)
        if entry is None:
            return None
        if OPTED_OUT in (entry.get("reason"), entry.get("last_reason")) and not force:
            raise ConsentRequired(address)
        kept = {k: entry[k] for k in ("reason", "last_reason", "source", "created_at") if k in entry}
        record = {
            "address": f"{LIFT_PREFIX}{address}#{at.astimezone(UTC).isoformat()}",
            "lifted_address": address,
            **kept,
            "lifted_at": at.isoformat(),
            "lifted_by": by,
            "lift_reason": why,
            "expires_at": int((at + timedelta(days=LIFT_RECORD_DAYS)).timestamp()),
        }
        delete: dict[str, Any] = {
            "TableName": self._table,
            "Key": to_attributes(suppression_key(address)),
            "ConditionExpression": "attribute_exists(address) AND attribute_not_exists(revision)",
        }
        if "revision" in entry:
            delete["ConditionExpression"] = "revision = :seen"
            delete["ExpressionAttributeValues"] = to_attributes({":seen": entry["revision"]})
        items: list[dict[str, Any]] = [
            {"Delete": delete},
            {"Put": {"TableName": self._table, "Item": to_attributes(record)}},
        ]
        items += [{"Delete": {"TableName": table, "Key": to_attributes(key)}} for table, key in reset]
        try:
            self._client.transact_write_items(TransactItems=items)
        except ClientError as error:
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons") or []]
            if reasons[:1] == ["ConditionalCheckFailed"]:
                raise SuppressionChanged(address) from error
            raise
        return Lifted(entry=entry, record=record)

    def release(self, address: str) -> None:
        """Lift a suppression (e.g. an SMS START reply)."""
        self._client.delete_item(TableName=self._table, Key=to_attributes(suppression_key(address)))

    def release_opt_out(self, address: str) -> bool:
        """Lift an entry only if it is nothing but an opt-out (an SMS START reply): its reason and
        its latest reason are `opted_out`. A bounce, a complaint or an unreachable number — even
        one reported after the opt-out — stays. False when nothing was lifted."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=to_attributes(suppression_key(address)),
                ConditionExpression="#reason = :opted_out AND "
                "(attribute_not_exists(last_reason) OR last_reason = :opted_out)",
                ExpressionAttributeNames={"#reason": "reason"},
                ExpressionAttributeValues=to_attributes({":opted_out": OPTED_OUT}),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True
