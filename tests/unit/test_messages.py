"""Internal messages: tolerant of unknown fields, versioned, and references to the notification
record (its data, address and tokens are read back from the record, never carried)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from herald.ingest import IngestEnvelope
from herald.messages import (
    MESSAGE_VERSION,
    ChannelMessage,
    EscalationInput,
    UnresolvedReference,
    parse_channel_body,
)
from herald.models import Channel
from herald.routing.decision import EscalationPlan

pytestmark = pytest.mark.unit

REFERENCE = {
    "v": 1,
    "notification_id": "ntf-1",
    "event_id": "evt-1",
    "user_id": "42",
    "type": "payment_receipt",
    "channel": "email",
    "urgency": "high",
    "category": "transactional",
    "locale": "en",
}
DATA = {"amount": "49.90", "currency": "EUR", "merchant": "Shop", "card_last4": "4242", "receipt_url": "u"}
RECORD = {
    "user_id": "42",
    "notification_id": "ntf-1",
    "data": DATA,
    "plan": [
        {"channel": "realtime"},
        {
            "escalation": {
                "primary": {"channel": "push", "device_tokens": ["tok-a", "tok-b"]},
                "fallback": {"channel": "email", "to": "user42@example.com"},
                "deliver_at": "2026-01-01T00:00:00Z",
            }
        },
    ],
}


def test_a_body_with_fields_this_release_does_not_know_is_read() -> None:
    body = json.dumps({**REFERENCE, "priority_hint": "gold", "trace": {"hops": 3}})

    message = parse_channel_body(body)

    assert (message.notification_id, message.channel) == ("ntf-1", Channel.EMAIL)
    assert not hasattr(message, "priority_hint")


def test_a_body_without_a_version_is_version_one_and_every_body_written_carries_one() -> None:
    unversioned = {k: v for k, v in REFERENCE.items() if k != "v"}

    message = parse_channel_body(json.dumps(unversioned))

    assert message.v == 1
    assert json.loads(message.queue_body())["v"] == MESSAGE_VERSION


def test_a_newer_version_is_processed_with_what_this_release_knows_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = json.dumps({**REFERENCE, "v": MESSAGE_VERSION + 1, "new_semantics": {"x": 1}})

    with caplog.at_level(logging.WARNING):
        message = parse_channel_body(body)

    assert message.newer_than_known and message.notification_id == "ntf-1"
    assert any("newer message version" in r.getMessage() for r in caplog.records)


def test_the_escalation_task_envelope_with_unknown_fields_is_read() -> None:
    body = json.dumps({"message": {**REFERENCE, "extra": 1}, "task_token": "tok", "attempt": 2})

    message = parse_channel_body(body)

    assert message.task_token == "tok"


def test_the_escalation_input_and_the_ingest_control_block_tolerate_unknown_fields() -> None:
    execution = EscalationInput.model_validate(
        {
            "notification_id": "ntf-1",
            "user_id": "42",
            "first": {
                "queue_url": "q",
                "message": {**REFERENCE, "channel": "push", "escalation": True},
                "wait_seconds": 300,
                "added_later": 1,
            },
            "last": {"queue_url": "e", "message": REFERENCE},
            "added_later": True,
        }
    )
    envelope = IngestEnvelope.model_validate(
        {
            "version": "0",
            "id": "e",
            "detail-type": "NotificationRequested",
            "source": "s",
            "time": "2026-01-01T00:00:00Z",
            "detail": {"event_id": "e-1", "type": "order_shipped", "user_id": "42"},
            "herald": {"phase": "release", "added_later": 1},
        }
    )

    assert json.loads(execution.execution_input())["v"] == MESSAGE_VERSION
    assert envelope.herald is not None and envelope.herald.phase == "release"


def test_an_email_reference_takes_its_data_and_address_from_the_record() -> None:
    message = ChannelMessage.model_validate(REFERENCE)

    hydrated = message.hydrated(RECORD)

    assert message.is_reference and not hydrated.is_reference
    assert hydrated.data == DATA
    assert hydrated.to == "user42@example.com"  # the escalation's fallback step


def test_an_escalation_primary_takes_its_planned_device_tokens() -> None:
    message = ChannelMessage.model_validate({**REFERENCE, "channel": "push", "escalation": True})

    hydrated = message.hydrated(RECORD)

    assert hydrated.device_tokens == ["tok-a", "tok-b"]
    assert hydrated.data == DATA


def test_a_direct_delivery_is_preferred_to_an_escalation_step_for_a_plain_message() -> None:
    record = {**RECORD, "plan": [{"channel": "email", "to": "direct@example.com"}, *RECORD["plan"]]}

    hydrated = ChannelMessage.model_validate(REFERENCE).hydrated(record)

    assert hydrated.to == "direct@example.com"


@pytest.mark.parametrize(
    "record",
    [None, {"user_id": "42", "notification_id": "ntf-1", "plan": []}, {**RECORD, "data": None}],
    ids=["no record", "record without data", "null data"],
)
def test_a_reference_without_its_record_or_data_is_never_sent_empty(record: dict[str, Any] | None) -> None:
    with pytest.raises(UnresolvedReference, match="ntf-1"):
        ChannelMessage.model_validate(REFERENCE).hydrated(record)


def test_a_message_that_carries_its_data_is_used_as_it_is() -> None:
    full = ChannelMessage.model_validate({**REFERENCE, "data": {"amount": "1"}, "to": "a@example.com"})

    assert full.hydrated(None) is full
    assert full.hydrated(RECORD).data == {"amount": "1"}


def test_an_empty_data_map_is_data_not_a_reference() -> None:
    message = ChannelMessage.model_validate({**REFERENCE, "type": "weekly_digest", "data": {}})

    assert not message.is_reference


def test_each_step_of_a_chain_takes_its_planned_address_from_the_record() -> None:
    record = {
        **RECORD,
        "plan": [
            {
                "escalation": {
                    "steps": [
                        {"delivery": {"channel": "push", "device_tokens": ["tok-a"]}, "wait_seconds": 5},
                        {"delivery": {"channel": "sms", "to": "+14155550100"}},
                    ],
                    "deliver_at": "2026-01-01T00:00:00Z",
                }
            }
        ],
    }

    push = ChannelMessage.model_validate({**REFERENCE, "channel": "push", "escalation": True}).hydrated(
        record
    )
    sms = ChannelMessage.model_validate({**REFERENCE, "channel": "sms"}).hydrated(record)

    assert push.device_tokens == ["tok-a"]
    assert sms.to == "+14155550100"


def test_a_stored_primary_and_fallback_plan_replays_as_a_two_step_chain() -> None:
    plan = EscalationPlan.model_validate(RECORD["plan"][1]["escalation"])

    assert plan.channels == (Channel.PUSH, Channel.EMAIL)
    assert plan.steps[0].delivery.device_tokens == ("tok-a", "tok-b")
