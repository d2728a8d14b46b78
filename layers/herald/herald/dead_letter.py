"""Herald's own message attributes on SQS messages, and moving a message to a dead-letter queue.

Herald puts a message in a DLQ itself in two cases, each with the reason as message attributes so
an operator sees why without digging through logs (decisions 003 and 010):

- a record that can never succeed (`herald_rejection_reason`, `herald.batch.RejectingBatchProcessor`);
- a provider that kept failing for longer than `ProviderOutageToleranceSeconds`
  (`herald_dead_letter_reason`, with the retry run: `herald_failing_since`, `herald_failures`).

Records that crash the handler reach the DLQ through the queue's RedrivePolicy instead, without
attributes. `herald redrive <queue>` moves a DLQ's messages back to their queue; it drops the
attributes listed in `DEAD_LETTER_ATTRIBUTES` and `RENEWAL_ATTRIBUTES` (bookkeeping of the message's
previous life) and keeps every other attribute.

No AWS SDK import here: the operator CLI uses these names too.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

REJECTION_ATTRIBUTE = "herald_rejection_reason"
DEAD_LETTER_REASON_ATTRIBUTE = "herald_dead_letter_reason"
EVENT_ID_ATTRIBUTE = "herald_event_id"
MESSAGE_ID_ATTRIBUTE = "herald_message_id"
NOTIFICATION_ID_ATTRIBUTE = "herald_notification_id"
FAILING_SINCE_ATTRIBUTE = "herald_failing_since"
FAILURES_ATTRIBUTE = "herald_failures"

# Set by a channel sender on a copy of a message it re-enqueued (decision 010): do not attempt
# before this epoch second; the copy's number in its chain of renewals.
RETRY_AT_ATTRIBUTE = "herald_retry_at"
RENEWALS_ATTRIBUTE = "herald_renewals"

DEAD_LETTER_ATTRIBUTES = frozenset(
    {
        REJECTION_ATTRIBUTE,
        DEAD_LETTER_REASON_ATTRIBUTE,
        EVENT_ID_ATTRIBUTE,
        MESSAGE_ID_ATTRIBUTE,
        NOTIFICATION_ID_ATTRIBUTE,
        FAILING_SINCE_ATTRIBUTE,
        FAILURES_ATTRIBUTE,
    }
)
RENEWAL_ATTRIBUTES = frozenset({RETRY_AT_ATTRIBUTE, RENEWALS_ATTRIBUTE})
BOOKKEEPING_ATTRIBUTES = DEAD_LETTER_ATTRIBUTES | RENEWAL_ATTRIBUTES

SQS_MAX_MESSAGE_ATTRIBUTES = 10
_MAX_ATTRIBUTE_TEXT = 4000


def string_attribute(value: object) -> dict[str, str]:
    return {"DataType": "String", "StringValue": str(value)[:_MAX_ATTRIBUTE_TEXT] or "-"}


def number_attribute(value: int | float) -> dict[str, str]:
    return {"DataType": "Number", "StringValue": str(value)}


def from_lambda_event(attributes: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The `messageAttributes` of a Lambda SQS record (camelCase, binary base64) as SendMessage
    wants them (PascalCase, bytes). Accepts dicts or pydantic models (powertools' SqsRecordModel)."""
    converted: dict[str, dict[str, Any]] = {}
    for name, raw in (attributes or {}).items():
        value = raw.model_dump() if hasattr(raw, "model_dump") else dict(raw)
        data_type = str(value.get("dataType") or value.get("DataType") or "String")
        attribute: dict[str, Any] = {"DataType": data_type}
        if data_type.startswith("Binary"):
            binary = value.get("binaryValue") or value.get("BinaryValue") or ""
            attribute["BinaryValue"] = base64.b64decode(binary) if isinstance(binary, str) else binary
        else:
            attribute["StringValue"] = value.get("stringValue") or value.get("StringValue") or ""
        converted[name] = attribute
    return converted


def without_bookkeeping(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """`attributes` (SendMessage / ReceiveMessage shape) without Herald's bookkeeping attributes."""
    return {name: value for name, value in (attributes or {}).items() if name not in BOOKKEEPING_ATTRIBUTES}


def with_attributes(carried: Mapping[str, Any], added: Mapping[str, Any]) -> dict[str, Any]:
    """`added` on top of `carried`, within SQS's 10 attributes per message (ours win)."""
    room = max(0, SQS_MAX_MESSAGE_ATTRIBUTES - len(added))
    kept = {name: value for name, value in carried.items() if name not in added}
    return dict(list(kept.items())[:room]) | dict(added)
