"""`herald trace` / `herald user` read a notification record the way support needs it: each
channel's outcome (a sender's state wins over `queued`; a refused channel shows the router's reason;
an escalation's later step is waiting, or not needed once acknowledged) and the delivery log in
time order with offsets from the notification's creation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click
import pytest

from herald.models import Category, Channel, Urgency
from herald.routing.decision import Decision, EscalationPlan, EscalationStep, PlannedDelivery
from herald.routing.service import queued_log
from herald.stores.notifications import NotificationRecord
from herald_cli.suppression import address_of
from herald_cli.timeline import channel_outcomes, render_trace, render_user

pytestmark = pytest.mark.unit

CREATED = "2026-11-30T20:00:00.000000Z"


def a_record(**fields: Any) -> NotificationRecord:
    base: dict[str, Any] = {
        "user_id": "42",
        "notification_id": "ntf-1",
        "event_id": "evt-1",
        "type": "payment_receipt",
        "category": "transactional",
        "urgency": "high",
        "locale": "en",
        "created_at": CREATED,
        "status": "dispatched",
    }
    return NotificationRecord.model_validate(base | fields)


ESCALATION_PLAN = [
    {
        "escalation": {
            "steps": [
                {"delivery": {"channel": "push", "device_tokens": ["t"]}, "wait_seconds": 300},
                {"delivery": {"channel": "email", "to": "ada@example.com"}},
            ],
            "deliver_at": CREATED,
        }
    }
]


def states(record: NotificationRecord) -> dict[str, tuple[str, str]]:
    return {o.channel: (o.state, o.reason) for o in channel_outcomes(record)}


def test_a_senders_state_replaces_queued_and_carries_its_code_and_provider() -> None:
    record = a_record(
        plan=[{"channel": "email", "to": "ada@example.com"}],
        deliveries={
            "email": {"state": "bounced", "provider": "ses", "code": "5.1.1", "reason": "user unknown"}
        },
    )
    [outcome] = channel_outcomes(record)
    assert (outcome.channel, outcome.state, outcome.reason, outcome.provider) == (
        "email",
        "bounced",
        "5.1.1 user unknown",
        "ses",
    )


def test_an_escalations_later_step_waits_and_is_not_needed_once_acknowledged() -> None:
    waiting = a_record(plan=ESCALATION_PLAN)
    acked = a_record(
        plan=ESCALATION_PLAN, acked_at="2026-11-30T20:01:00Z", deliveries={"push": {"state": "sent"}}
    )
    assert states(waiting) == {
        "push": ("queued", ""),
        "email": ("waiting", "escalation step 2: not sent yet"),
    }
    assert states(acked) == {
        "push": ("sent", ""),
        "email": ("not_needed", "escalation step 2: acknowledged first"),
    }


def test_a_step_that_waits_until_delivered_is_not_needed_once_the_step_before_was() -> None:
    plan = [
        {
            "escalation": {
                "steps": [
                    {
                        "delivery": {"channel": "sms", "to": "+14155550100"},
                        "wait_seconds": 60,
                        "until": "delivered",
                    },
                    {"delivery": {"channel": "push", "device_tokens": ["t"]}},
                ],
                "deliver_at": CREATED,
            }
        }
    ]
    delivered = a_record(plan=plan, deliveries={"sms": {"state": "delivered"}})
    failed = a_record(plan=plan, deliveries={"sms": {"state": "failed"}})
    assert states(delivered)["push"] == ("not_needed", "escalation step 2: step 1 (sms) was delivered")
    assert states(failed)["push"] == ("waiting", "escalation step 2: not sent yet")


def test_the_routers_refusals_read_as_suppressed_or_skipped_with_its_reason() -> None:
    record = a_record(
        decision=[
            {
                "rule": "suppression",
                "verdict": "block",
                "reason": "email address suppressed: bounced",
                "channel": "email",
            },
            {"rule": "rate_limit", "verdict": "block", "reason": "5/5 this hour", "channel": "sms"},
            {"rule": "suppression", "verdict": "block", "reason": "no registered device", "channel": "push"},
            {"rule": "preferences", "verdict": "pass", "reason": "allowed"},
        ]
    )
    assert states(record) == {
        "email": ("suppressed", "suppression: email address suppressed: bounced"),
        "sms": ("skipped", "rate_limit: 5/5 this hour"),
        "push": ("skipped", "suppression: no registered device"),
    }
    # as records routed before the trace named the entry's reason put it
    stop = "phone number opted out of SMS (STOP)"
    legacy = a_record(
        decision=[{"rule": "suppression", "verdict": "block", "reason": stop, "channel": "sms"}]
    )
    assert states(legacy) == {"sms": ("suppressed", f"suppression: {stop}")}


def test_the_delivery_log_is_a_timeline_with_offsets_and_the_providers_ids() -> None:
    record = a_record(
        plan=[{"channel": "email", "to": "ada@example.com"}],
        delivery_log=[
            {"at": "2026-11-30T20:00:00+00:00", "channel": "email", "outcome": "queued"},
            {
                "at": "2026-11-30T20:00:01.500000+00:00",
                "channel": "email",
                "outcome": "sent",
                "provider": "ses",
                "provider_message_id": "0100-abc",
            },
            {"at": "2026-11-30T20:00:09+00:00", "channel": "email", "outcome": "bounced", "code": "5.1.1"},
        ],
    )
    log = render_trace(record)[-3:]
    assert [line.split()[2:5] for line in log] == [
        ["+0.0s", "email", "queued"],
        ["+1.5s", "email", "sent"],
        ["+9.0s", "email", "bounced"],
    ]
    assert "ses" in log[1] and "id=0100-abc" in log[1] and "code=5.1.1" in log[2]


def test_user_rows_name_each_notification_with_its_channels() -> None:
    rows = render_user("42", [a_record(plan=ESCALATION_PLAN, read_at="2026-11-30T20:02:00Z")])
    assert rows[0].startswith("user 42: 1 most recent")
    assert "ntf-1" in rows[1] and "push queued, email waiting" in rows[1] and rows[1].endswith("read")


@pytest.mark.parametrize(
    ("contact", "channel_prefix", "plain"),
    [
        ("Ada@Example.com", "email#sha256:", "Ada@Example.com"),
        ("+14155550100", "sms#sha256:", "+14155550100"),
        ("fcm-token:abc123", "push#sha256:", None),  # a token is never kept in plain
        ("sms#sha256:" + "0" * 64, "sms#sha256:", None),  # an erased person's entry, by its key
    ],
)
def test_a_contact_names_its_entry_by_the_key_the_senders_use(
    contact: str, channel_prefix: str, plain: str | None
) -> None:
    address, kept = address_of(contact)
    assert address.startswith(channel_prefix) and kept == plain
    assert address_of("ada@example.com")[0] == address_of("ADA@example.com ")[0]


@pytest.mark.parametrize("contact", ["555-123-4567", "+1 415 555 0100", "not a contact", "ab"])
def test_a_contact_that_is_not_clearly_one_kind_is_refused_not_guessed(contact: str) -> None:
    with pytest.raises(click.BadParameter):
        address_of(contact)


def test_the_routers_first_log_entries_say_what_was_queued_and_what_may_follow() -> None:
    now = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
    later = now + timedelta(hours=7)
    decision = Decision(
        notification_id="ntf-1",
        user_id="42",
        urgency=Urgency.HIGH,
        category=Category.TRANSACTIONAL,
        locale="en",
        trace=(),
        deliveries=(
            PlannedDelivery(channel=Channel.REALTIME),
            PlannedDelivery(channel=Channel.EMAIL, not_before=later),
        ),
        escalation=EscalationPlan(
            steps=(
                EscalationStep(delivery=PlannedDelivery(channel=Channel.PUSH), wait_seconds=5),
                EscalationStep(delivery=PlannedDelivery(channel=Channel.SMS)),
            ),
            deliver_at=now,
        ),
    )
    entries = queued_log(decision, now)
    assert [(e["channel"], e["outcome"], e.get("detail")) for e in entries] == [
        ("realtime", "queued", None),
        ("email", "queued", f"not before {later.isoformat()}"),
        ("push", "queued", "escalation step 1 of 2; then sms if not acknowledged within 5 s"),
    ]
    assert {e["at"] for e in entries} == {now.isoformat()}
