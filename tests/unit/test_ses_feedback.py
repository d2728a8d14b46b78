"""SES's documented event publishing records, as the feedback queue receives them (the EventBridge
envelope around them), turned into Herald's news: herald.ses_feedback.

The records are SES's own examples (tests/unit/fixtures/ses/); Herald's tags are added to mail
Herald sent, as its sender sets them (`notification_id`, `user_id`)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from herald.feedback import Feedback, ProviderEvent
from herald.models import Channel
from herald.ses_feedback import (
    BouncedEvent,
    OtherSesEvent,
    SesFeedbackRecord,
    SesNews,
    interpret,
    peek_event_id,
)

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "fixtures" / "ses"
MESSAGE_ID = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
DETAIL_TYPES = {
    "send": "Email Sent",
    "delivery": "Email Delivered",
    "bounce": "Email Bounced",
    "complaint": "Email Complaint Received",
    "reject": "Email Rejected",
    "rendering_failure": "Email Rendering Failed",
    "delivery_delay": "Email Delivery Delayed",
    "open": "Email Opened",
    "click": "Email Clicked",
}


def documented(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def herald_sent(
    record: dict[str, Any], *, notification_id: str = "ntf-1", user_id: str = "42"
) -> dict[str, Any]:
    record = copy.deepcopy(record)
    record["mail"]["tags"] = {
        **record["mail"].get("tags", {}),
        "notification_id": [notification_id],
        "user_id": [user_id],
    }
    return record


def envelope(detail_type: str, detail: Any, **fields: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "6f5f5c4e-0000-4000-8000-000000000001",
        "detail-type": detail_type,
        "source": "aws.ses",
        "account": "123456789012",
        "time": "2017-08-05T00:41:02Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ses:us-east-1:123456789012:configuration-set/ConfigSet"],
        "detail": detail,
        **fields,
    }


def sqs_record(body: Any) -> dict[str, Any]:
    return {
        "messageId": "m-1",
        "receiptHandle": "r-1",
        "body": body if isinstance(body, str) else json.dumps(body),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1795348800000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1795348800001",
        },
        "messageAttributes": {},
        "md5OfBody": "0",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:FeedbackQueue",
        "awsRegion": "us-east-1",
    }


def parsed(name: str, record: dict[str, Any] | None = None) -> Any:
    """The documented record `name` (or `record`), Herald-tagged, as the handler's model reads it."""
    detail = herald_sent(documented(name)) if record is None else record
    return SesFeedbackRecord.model_validate(sqs_record(envelope(DETAIL_TYPES[name], detail))).body


def only(news: SesNews) -> ProviderEvent:
    assert news.ignored is None and news.soft_bounces == ()
    [event] = news.events
    return event


@pytest.mark.parametrize("name", sorted(DETAIL_TYPES))
def test_every_documented_record_validates_as_its_detail_type(name: str) -> None:
    event = parsed(name)

    assert event.detail_type == DETAIL_TYPES[name]
    assert not isinstance(event, OtherSesEvent)
    assert event.detail.mail.message_id == MESSAGE_ID


def test_a_permanent_bounce_is_bounced_news_about_the_recipient_with_the_dsn() -> None:
    event = only(interpret(parsed("bounce")))

    assert event == ProviderEvent(
        channel=Channel.EMAIL,
        feedback=Feedback.BOUNCED,
        provider="ses",
        at=datetime(2017, 8, 5, 0, 41, 2, 669000, tzinfo=UTC),
        user_id="42",
        notification_id="ntf-1",
        contact="recipient@example.com",
        provider_message_id=MESSAGE_ID,
        code="5.1.1",
        detail="Permanent/General; smtp; 550 5.1.1 user unknown",
    )


@pytest.mark.parametrize(
    ("bounce_type", "sub_type"), [("Transient", "MailboxFull"), ("Undetermined", "Undetermined")]
)
def test_transient_and_undetermined_bounces_are_soft_bounces_to_count(
    bounce_type: str, sub_type: str
) -> None:
    record = herald_sent(documented("bounce"))
    record["bounce"] |= {"bounceType": bounce_type, "bounceSubType": sub_type}

    news = interpret(parsed("bounce", record))

    assert news.events == ()
    [soft] = news.soft_bounces
    assert soft.feedback_id == "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000"
    assert (soft.event.feedback, soft.event.contact, soft.event.code) == (
        Feedback.SOFT_BOUNCED,
        "recipient@example.com",
        "5.1.1",
    )
    assert soft.event.detail is not None and soft.event.detail.startswith(f"{bounce_type}/{sub_type}")


def test_a_bounce_names_the_address_herald_sent_to_even_when_the_dsn_names_another() -> None:
    record = herald_sent(documented("bounce"))
    record["bounce"]["bouncedRecipients"][0]["emailAddress"] = "forwarded@elsewhere.example"

    event = only(interpret(parsed("bounce", record)))

    assert event.contact == "recipient@example.com"
    assert event.detail is not None and "reported for forwarded@elsewhere.example" in event.detail


def test_a_complaint_is_complained_news_with_its_feedback_type() -> None:
    event = only(interpret(parsed("complaint")))

    assert (event.feedback, event.contact, event.code) == (
        Feedback.COMPLAINED,
        "recipient@example.com",
        "abuse",
    )
    assert event.at == datetime(2017, 8, 5, 0, 41, 2, 669000, tzinfo=UTC)


def test_a_not_spam_report_withdraws_rather_than_complains() -> None:
    record = herald_sent(documented("complaint"))
    record["complaint"]["complaintFeedbackType"] = "not-spam"

    news = interpret(parsed("complaint", record))

    assert news.events == () and news.ignored and "not-spam" in news.ignored


def test_a_complaint_with_redacted_recipients_is_about_the_one_address_herald_sent_to() -> None:
    record = herald_sent(documented("complaint"))
    record["complaint"]["complainedRecipients"] = []

    assert only(interpret(parsed("complaint", record))).contact == "recipient@example.com"


def test_a_delivery_is_delivered_news_with_the_smtp_answer() -> None:
    event = only(interpret(parsed("delivery")))

    assert (event.feedback, event.contact, event.detail) == (
        Feedback.DELIVERED,
        "recipient@example.com",
        "250 2.6.0 Message received",
    )
    assert event.at == datetime(2016, 10, 19, 23, 21, 4, 133000, tzinfo=UTC)


def test_a_reject_and_a_rendering_failure_fail_the_message() -> None:
    reject = only(interpret(parsed("reject")))
    rendering = only(interpret(parsed("rendering_failure")))

    assert (reject.feedback, reject.code, reject.detail) == (
        Feedback.FAILED,
        "Reject",
        "rejected by SES: Bad content",
    )
    assert reject.contact == "sender@example.com"  # the documented record's destination
    assert (rendering.feedback, rendering.code) == (Feedback.FAILED, "RenderingFailure")
    assert rendering.detail is not None and "Attribute 'attributeName' is not present" in rendering.detail


def test_a_delivery_delay_is_deferred_news_with_the_status_and_when_ses_gives_up() -> None:
    event = only(interpret(parsed("delivery_delay")))

    assert (event.feedback, event.contact, event.code) == (
        Feedback.DEFERRED,
        "recipient@example.com",
        "4.4.1",
    )
    assert event.detail == (
        "TransientCommunicationFailure; smtp; 421 4.4.1 Unable to connect to remote host; "
        "SES keeps trying until 2020-06-16T00:25:40.914000+00:00"
    )


def test_opens_and_clicks_are_engagement_for_the_log_and_the_link_is_not_kept() -> None:
    opened = only(interpret(parsed("open")))
    clicked = only(interpret(parsed("click")))

    assert (opened.feedback, opened.contact) == (Feedback.OPENED, "recipient@example.com")
    assert clicked.feedback is Feedback.OPENED
    assert "docs.aws.amazon.com" not in clicked.model_dump_json()


def test_a_send_is_acknowledged_without_news() -> None:
    news = interpret(parsed("send"))

    assert news.events == () and news.soft_bounces == () and news.ignored


@pytest.mark.parametrize("name", sorted(DETAIL_TYPES))
def test_mail_herald_did_not_send_is_ignored_entirely(name: str) -> None:
    news = interpret(parsed(name, documented(name)))  # the documented tags: none of Herald's

    assert news.events == () and news.soft_bounces == ()
    assert news.ignored is not None


def test_mail_with_only_one_of_heralds_tags_is_not_heralds() -> None:
    record = documented("bounce")
    record["mail"]["tags"]["user_id"] = ["42"]

    assert interpret(parsed("bounce", record)).ignored


def test_mail_of_another_configuration_set_is_ignored_even_with_tags_of_the_same_names() -> None:
    event = parsed("bounce")

    assert interpret(event, configuration_set="herald-dev").ignored
    assert interpret(event, configuration_set="ConfigSet").events  # the documented record's own set


def test_an_unknown_detail_type_validates_and_is_ignored() -> None:
    body = envelope("Email Subscribed", {"eventType": "Subscription", "anything": True})

    event = SesFeedbackRecord.model_validate(sqs_record(body)).body

    assert isinstance(event, OtherSesEvent)
    assert interpret(event).ignored


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["bounce"].pop("bouncedRecipients"), "bouncedRecipients"),
        (lambda d: d["bounce"].update(bounceType="Soft"), "bounceType"),
        (lambda d: d["bounce"].update(bouncedRecipients=[]), "bouncedRecipients"),
        (lambda d: d.pop("mail"), "mail"),
        (lambda d: d["mail"].pop("messageId"), "messageId"),
        (lambda d: d.pop("bounce"), "bounce"),
    ],
)
def test_a_known_kind_without_its_documented_shape_does_not_validate(change: Any, expected: str) -> None:
    detail = herald_sent(documented("bounce"))
    change(detail)

    with pytest.raises(ValidationError) as raised:
        SesFeedbackRecord.model_validate(sqs_record(envelope("Email Bounced", detail)))

    assert expected in str(raised.value)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        envelope("Email Bounced", {}, source="com.example.other"),
        {"detail-type": "Email Bounced", "source": "aws.ses"},  # no id, no detail
    ],
)
def test_what_is_not_an_ses_event_does_not_validate(body: Any) -> None:
    with pytest.raises(ValidationError):
        SesFeedbackRecord.model_validate(sqs_record(body))


def test_the_dead_letter_names_the_ses_message_when_it_can() -> None:
    detail = herald_sent(documented("bounce"))

    assert peek_event_id(json.dumps(envelope("Email Bounced", detail))) == f"ses:{MESSAGE_ID}"
    assert peek_event_id(json.dumps(envelope("Email Bounced", {}))) == "6f5f5c4e-0000-4000-8000-000000000001"
    assert peek_event_id("not json") is None


def test_the_local_simulator_bounce_is_read_as_ses_publishes_it() -> None:
    """local/ses_feedback.py produces the events of the local stack: the parser reads them too."""
    from local.ses_feedback import bounce_record, eventbridge_event, mail_from_simple

    mail = mail_from_simple(
        message_id="0100-local-000000",
        source="notifications@example.com",
        destinations={"ToAddresses": ["bounce+x@simulator.amazonses.com"]},
        subject="Hi",
        body="Hello",
        timestamp=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        configuration_set="herald-dev",
        tags={"notification_id": "ntf-9", "user_id": "u-9", "type": "marketing_promo"},
    )
    record = bounce_record(
        mail,
        list(mail.destinations),
        account="123456789012",
        region="us-east-1",
        at=datetime(2030, 1, 2, 3, 4, 7, tzinfo=UTC),
    )
    body = eventbridge_event(
        record, account="123456789012", region="us-east-1", configuration_set="herald-dev"
    )

    event = SesFeedbackRecord.model_validate(sqs_record(body)).body

    assert isinstance(event, BouncedEvent)
    news = interpret(event, configuration_set="herald-dev")
    [bounced] = news.events
    assert (bounced.feedback, bounced.contact, bounced.user_id, bounced.notification_id) == (
        Feedback.BOUNCED,
        "bounce+x@simulator.amazonses.com",
        "u-9",
        "ntf-9",
    )
