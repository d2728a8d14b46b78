"""Provider feedback applied to the delivery log and the suppression list (herald.feedback), on moto
with the template's tables: whatever the provider, the same rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.delivery import Claim, DeliveryLedger, DeliveryState, LogEntry
from herald.feedback import Feedback, FeedbackRecorder, ProviderEvent
from herald.messages import ChannelMessage
from herald.models import Category, Channel, Urgency
from herald.stores.dynamo import from_attributes
from herald.stores.keys import email_address, sms_address
from herald.stores.notifications import NotificationRecord, NotificationStore
from herald.stores.suppression import SuppressionStore
from herald.stores.users import UserStore
from herald.users import UserProfile
from tests.support.stack import MotoStack

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ADDRESS = "ana@example.com"


@pytest.fixture
def recorder(stack: MotoStack) -> FeedbackRecorder:
    dynamodb = stack.client("dynamodb")
    return FeedbackRecorder(
        DeliveryLedger(dynamodb, stack.tables["NotificationsTable"]),
        SuppressionStore(dynamodb, stack.tables["SuppressionTable"]),
        UserStore(dynamodb, stack.tables["UsersTable"]),
    )


def a_notification(
    stack: MotoStack, state: str = "sent", channel: str = "email", delivery: dict[str, Any] | None = None
) -> None:
    """ntf-1 for user 42, its `channel` in `state` (as the sender left it, or `delivery`)."""
    dynamodb = stack.client("dynamodb")
    UserStore(dynamodb, stack.tables["UsersTable"]).put_profile(
        UserProfile(user_id="42", email=ADDRESS, preferences={"marketing_opt_in": True})
    )
    NotificationStore(dynamodb, stack.tables["NotificationsTable"]).create(
        NotificationRecord(
            user_id="42",
            notification_id="ntf-1",
            event_id="e-1",
            type="marketing_promo",
            category=Category.MARKETING,
            urgency=Urgency.LOW,
            locale="en",
            data={},
            created_at=T0,
            status="dispatched",
            deliveries={
                channel: delivery or {"state": state, "provider": "ses", "provider_message_id": "m-1"}
            },
        )
    )


def event(feedback: Feedback, *, minutes: int = 1, herald: bool = True, **fields: Any) -> ProviderEvent:
    return ProviderEvent(
        channel=fields.pop("channel", Channel.EMAIL),
        feedback=feedback,
        provider="ses",
        at=T0 + timedelta(minutes=minutes),
        contact=fields.pop("contact", ADDRESS),
        provider_message_id="m-1",
        **({"user_id": "42", "notification_id": "ntf-1"} if herald else {}),
        **fields,
    )


def record(stack: MotoStack) -> dict[str, Any]:
    item = stack.client("dynamodb").get_item(
        TableName=stack.tables["NotificationsTable"],
        Key={"user_id": {"S": "42"}, "notification_id": {"S": "ntf-1"}},
        ConsistentRead=True,
    )["Item"]
    return from_attributes(item)


def suppression(stack: MotoStack, address: str) -> dict[str, Any] | None:
    item = (
        stack.client("dynamodb")
        .get_item(TableName=stack.tables["SuppressionTable"], Key={"address": {"S": address}})
        .get("Item")
    )
    return from_attributes(item) if item else None


def test_a_permanent_bounce_marks_the_channel_and_suppresses_the_address_with_its_cause(
    stack: MotoStack, recorder: FeedbackRecorder
) -> None:
    a_notification(stack)

    report = recorder.apply([event(Feedback.BOUNCED, code="5.1.1", detail="user unknown")])

    assert (report.moved, report.suppressed) == (1, 1)
    saved = record(stack)
    assert saved["deliveries"]["email"]["state"] == "bounced"
    assert saved["delivery_log"][-1] | {"at": None} == {
        "at": None,
        "channel": "email",
        "outcome": "bounced",
        "provider": "ses",
        "code": "5.1.1",
        "detail": "user unknown",
        "provider_message_id": "m-1",
    }
    entry = suppression(stack, email_address(ADDRESS))
    assert entry is not None
    assert (entry["reason"], entry["source"], entry["contact"], entry["notification_id"]) == (
        "bounce",
        "ses",
        ADDRESS,
        "ntf-1",
    )
    assert entry["created_at"] == (T0 + timedelta(minutes=1)).isoformat()


def test_news_never_goes_backwards_but_every_report_is_logged(
    stack: MotoStack, recorder: FeedbackRecorder
) -> None:
    a_notification(stack)

    recorder.apply([event(Feedback.BOUNCED, minutes=2), event(Feedback.DELIVERED, minutes=1)])

    saved = record(stack)
    assert saved["deliveries"]["email"]["state"] == "bounced"
    assert [e["outcome"] for e in saved["delivery_log"]] == ["bounced", "delivered"]


def test_a_delivery_report_settles_an_uncertain_send(stack: MotoStack, recorder: FeedbackRecorder) -> None:
    a_notification(stack, state="uncertain")

    recorder.apply([event(Feedback.DELIVERED)])

    assert record(stack)["deliveries"]["email"]["state"] == "delivered"


def test_a_soft_bounce_fails_the_message_but_does_not_suppress_the_address(
    stack: MotoStack, recorder: FeedbackRecorder
) -> None:
    a_notification(stack)

    recorder.apply([event(Feedback.SOFT_BOUNCED, code="4.2.2", detail="mailbox full")])

    assert record(stack)["deliveries"]["email"]["state"] == "failed"
    assert suppression(stack, email_address(ADDRESS)) is None


def test_the_log_entry_carries_the_providers_time(stack: MotoStack, recorder: FeedbackRecorder) -> None:
    a_notification(stack)

    recorder.apply([event(Feedback.DELIVERED, minutes=7)])

    assert record(stack)["delivery_log"][-1]["at"] == (T0 + timedelta(minutes=7)).isoformat()


def test_a_complaint_naming_no_known_notification_changes_nobodys_settings(
    stack: MotoStack, recorder: FeedbackRecorder
) -> None:
    report = recorder.apply([event(Feedback.COMPLAINED)])  # user 42 tagged, but no such notification

    assert report.opted_out_of_marketing == 0
    assert UserStore(stack.client("dynamodb"), stack.tables["UsersTable"]).get_profile("42") is None


@pytest.mark.parametrize("feedback", [Feedback.DEFERRED, Feedback.OPENED])
def test_interim_news_is_logged_without_changing_the_state(
    stack: MotoStack, recorder: FeedbackRecorder, feedback: Feedback
) -> None:
    a_notification(stack)

    report = recorder.apply([event(feedback)])

    saved = record(stack)
    assert saved["deliveries"]["email"]["state"] == "sent"
    assert saved["delivery_log"][-1]["outcome"] == feedback.value
    assert (report.moved, report.suppressed) == (0, 0)
    assert suppression(stack, email_address(ADDRESS)) is None


def test_a_complaint_suppresses_and_opts_the_person_out_of_marketing(
    stack: MotoStack, recorder: FeedbackRecorder
) -> None:
    a_notification(stack, state="delivered")

    report = recorder.apply([event(Feedback.COMPLAINED)])

    assert report.opted_out_of_marketing == 1
    assert record(stack)["deliveries"]["email"]["state"] == "complained"
    assert suppression(stack, email_address(ADDRESS))["reason"] == "complaint"  # type: ignore[index]
    profile = UserStore(stack.client("dynamodb"), stack.tables["UsersTable"]).get_profile("42")
    assert profile is not None and profile.preferences.marketing_opt_in is False


def test_a_bounce_for_mail_herald_did_not_send_suppresses_but_logs_nothing(
    stack: MotoStack, recorder: FeedbackRecorder
) -> None:
    report = recorder.apply([event(Feedback.BOUNCED, herald=False, contact="stranger@example.com")])

    assert (report.unknown, report.logged, report.suppressed) == (1, 0, 1)
    assert suppression(stack, email_address("stranger@example.com")) is not None


def test_news_of_a_notification_that_is_gone_writes_no_record(
    stack: MotoStack, recorder: FeedbackRecorder
) -> None:
    report = recorder.apply([event(Feedback.DELIVERED)])  # no record: erased, or expired

    assert (report.unknown, report.logged) == (1, 0)
    items = stack.client("dynamodb").scan(TableName=stack.tables["NotificationsTable"])["Items"]
    assert items == []


def test_an_unreachable_phone_fails_the_sms_and_is_suppressed(
    stack: MotoStack, recorder: FeedbackRecorder
) -> None:
    a_notification(stack, channel="sms")

    recorder.apply([event(Feedback.UNREACHABLE, channel=Channel.SMS, contact="+14155550100", code="30006")])

    assert record(stack)["deliveries"]["sms"]["state"] == "failed"
    assert suppression(stack, sms_address("+14155550100"))["reason"] == "unreachable"  # type: ignore[index]


def test_a_replayed_report_writes_nothing(stack: MotoStack, recorder: FeedbackRecorder) -> None:
    a_notification(stack)
    bounce = event(Feedback.BOUNCED, event_id="sg-evt-1")
    recorder.apply([bounce])
    before = record(stack)

    report = recorder.apply([bounce, event(Feedback.DELIVERED, event_id="sg-evt-2")])

    after = record(stack)
    assert report.duplicates == 1
    assert [e["outcome"] for e in after["delivery_log"]] == ["bounced", "delivered"]
    assert after["deliveries"] == before["deliveries"]
    assert sorted(after["feedback_events"]) == ["sg-evt-1", "sg-evt-2"]


SENDING = {"state": "sending", "claim_id": "claim-1", "claim_expires_at": int(T0.timestamp()) + 300}


def the_senders_answer(
    stack: MotoStack, state: DeliveryState, claim_id: str = "claim-1"
) -> DeliveryState | None:
    """The email sender records its own answer for its claim (after the provider's report came)."""
    ledger = DeliveryLedger(stack.client("dynamodb"), stack.tables["NotificationsTable"])
    claim = Claim(
        user_id="42", notification_id="ntf-1", channel=Channel.EMAIL, claim_id=claim_id, expires_at=0
    )
    entry = LogEntry(Channel.EMAIL, state.value, provider="ses", provider_message_id="m-1")
    return ledger.finish(claim, state, entry, provider_message_id="m-1")


@pytest.mark.parametrize(
    ("feedback", "state"),
    [
        (Feedback.BOUNCED, "bounced"),
        (Feedback.DELIVERED, "delivered"),
        (Feedback.COMPLAINED, "complained"),
        (Feedback.FAILED, "failed"),
    ],
)
def test_a_report_that_comes_before_the_senders_own_answer_is_kept(
    stack: MotoStack, recorder: FeedbackRecorder, feedback: Feedback, state: str
) -> None:
    # GIVEN the sender holds the channel: its request reached the provider, its answer is not recorded
    a_notification(stack, delivery=SENDING)

    # WHEN the provider's report is applied first
    report = recorder.apply([event(feedback)])
    # THEN it moves the channel (the provider has the message) ...
    assert report.moved == 1
    assert record(stack)["deliveries"]["email"]["state"] == state

    # ... AND the sender's own answer, recorded after it, adds its ids but does not undo it
    assert the_senders_answer(stack, DeliveryState.SENT) is DeliveryState(state)  # what it settled as
    saved = record(stack)
    assert saved["deliveries"]["email"] | {"updated_at": None} == {
        **SENDING,
        "state": state,
        "updated_at": None,
        "provider": "ses",
        "provider_message_id": "m-1",
    }
    assert [e["outcome"] for e in saved["delivery_log"]] == [state, "sent"]


def test_an_answer_for_a_claim_that_was_taken_over_changes_no_state(
    stack: MotoStack, recorder: FeedbackRecorder
) -> None:
    a_notification(stack, delivery=SENDING)
    recorder.apply([event(Feedback.DELIVERED)])

    # an answer for another claim (this one went stale and was taken over) is only logged
    assert the_senders_answer(stack, DeliveryState.SENT, claim_id="claim-0") is None
    saved = record(stack)
    assert saved["deliveries"]["email"]["state"] == "delivered"
    assert "provider_message_id" not in saved["deliveries"]["email"]
    assert [e["outcome"] for e in saved["delivery_log"]] == ["delivered", "sent"]


def test_without_a_report_the_senders_answer_is_what_is_recorded(stack: MotoStack) -> None:
    a_notification(stack, delivery=SENDING)
    assert the_senders_answer(stack, DeliveryState.UNCERTAIN) is DeliveryState.UNCERTAIN
    assert record(stack)["deliveries"]["email"]["state"] == "uncertain"


def test_a_stale_claim_is_not_marked_uncertain_over_a_report_that_came_meanwhile(
    stack: MotoStack, recorder: FeedbackRecorder
) -> None:
    # GIVEN a claim that went stale (its sender died after the provider accepted the message) ...
    stale = {**SENDING, "claim_expires_at": int(T0.timestamp()) - 60}
    a_notification(stack, delivery=stale)
    # ... and a redelivered copy that found it `sending` and expired, about to mark it uncertain
    ledger = DeliveryLedger(stack.client("dynamodb"), stack.tables["NotificationsTable"])
    message = ChannelMessage.model_validate(
        {
            "notification_id": "ntf-1",
            "event_id": "e-1",
            "user_id": "42",
            "type": "marketing_promo",
            "channel": "email",
            "urgency": "low",
            "category": "marketing",
            "locale": "en",
            "to": ADDRESS,
        }
    )
    # WHEN the bounce is applied first
    recorder.apply([event(Feedback.BOUNCED)])
    # THEN the stale claim is not marked uncertain over it (news never goes backwards)
    assert ledger._mark_uncertain(message, stale, T0 + timedelta(minutes=5)) is False
    assert record(stack)["deliveries"]["email"]["state"] == "bounced"
    # AND the copy's claim finds the channel final, as reported
    found = ledger.claim(message, lease_seconds=60)
    assert getattr(found, "state", None) is DeliveryState.BOUNCED
