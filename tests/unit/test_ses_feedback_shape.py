"""The SES events the local stack publishes for the mailbox simulator have SES's own shape.

The expected documents are written by hand after the SES developer guide's event publishing
examples ("Examples of event data that Amazon SES publishes", EventBridge destination): an
EventBridge envelope with source `aws.ses`, the configuration set ARN as resource, and the event
publishing record (`eventType`, `mail`, `bounce` / `complaint` / `delivery` / `send`) as detail.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.ses_feedback import (
    SentMail,
    bounce_record,
    eventbridge_event,
    mail_from_raw,
    mail_from_simple,
    parse_message_tags,
    publishing_records,
    ses_events,
    simulator_scenario,
)

pytestmark = pytest.mark.unit

ACCOUNT = "123456789012"
REGION = "us-east-1"
SENT_AT = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
LATER = SENT_AT + timedelta(milliseconds=1500)
MESSAGE_ID = "010001234567abcd-11111111-2222-3333-4444-555555555555-000000"
RAW = (
    "From: Herald <notifications@herald.test>\r\n"
    "To: bounce@simulator.amazonses.com\r\n"
    "Subject: Your weekly digest\r\n"
    "Date: Wed, 02 Jan 2030 03:04:05 +0000\r\n"
    "MIME-Version: 1.0\r\n"
    "List-Unsubscribe: <https://herald.test/u?t=abc>\r\n"
    "X-SES-CONFIGURATION-SET: herald-dev\r\n"
    "X-SES-MESSAGE-TAGS: notification_id=n-1, user_id=u-1\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Hello\r\n"
)


def raw_mail(to: str = "bounce@simulator.amazonses.com") -> SentMail:
    return mail_from_raw(
        message_id=MESSAGE_ID,
        source="notifications@herald.test",
        destinations=[to, to],  # moto lists the Destination and the To header: deduplicated
        raw_data=RAW.replace("bounce@simulator.amazonses.com", to),
        timestamp=SENT_AT,
        operation="SendEmail",
    )


EXPECTED_MAIL: dict[str, Any] = {
    "timestamp": "2030-01-02T03:04:05.678Z",
    "source": "notifications@herald.test",
    "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/notifications@herald.test",
    "sendingAccountId": "123456789012",
    "messageId": MESSAGE_ID,
    "destination": ["bounce@simulator.amazonses.com"],
    "headersTruncated": False,
    "headers": [
        {"name": "From", "value": "Herald <notifications@herald.test>"},
        {"name": "To", "value": "bounce@simulator.amazonses.com"},
        {"name": "Subject", "value": "Your weekly digest"},
        {"name": "Date", "value": "Wed, 02 Jan 2030 03:04:05 +0000"},
        {"name": "MIME-Version", "value": "1.0"},
        {"name": "List-Unsubscribe", "value": "<https://herald.test/u?t=abc>"},
        {"name": "Content-Type", "value": "text/plain; charset=utf-8"},
    ],
    "commonHeaders": {
        "from": ["Herald <notifications@herald.test>"],
        "date": "Wed, 02 Jan 2030 03:04:05 +0000",
        "to": ["bounce@simulator.amazonses.com"],
        "messageId": MESSAGE_ID,
        "subject": "Your weekly digest",
    },
    "tags": {
        "ses:operation": ["SendEmail"],
        "ses:configuration-set": ["herald-dev"],
        "ses:source-ip": ["127.0.0.1"],
        "ses:from-domain": ["herald.test"],
        "ses:caller-identity": ["herald-local"],
        "notification_id": ["n-1"],
        "user_id": ["u-1"],
    },
}

EXPECTED_BOUNCE_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "6f5f5c4e-0000-4000-8000-000000000001",
    "detail-type": "Email Bounced",
    "source": "aws.ses",
    "account": "123456789012",
    "time": "2030-01-02T03:04:07Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ses:us-east-1:123456789012:configuration-set/herald-dev"],
    "detail": {
        "eventType": "Bounce",
        "bounce": {
            "feedbackId": "0100018f-feedback-000000",
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": "bounce@simulator.amazonses.com",
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": "2030-01-02T03:04:07.178Z",
            "reportingMTA": "dsn; a8-30.smtp-out.amazonses.com",
            "remoteMtaIp": "127.0.0.1",
        },
        "mail": EXPECTED_MAIL,
    },
}


def test_a_bounce_event_has_the_documented_shape() -> None:
    mail = raw_mail()
    record = bounce_record(
        mail,
        ["bounce@simulator.amazonses.com"],
        account=ACCOUNT,
        region=REGION,
        at=LATER,
        feedback_id="0100018f-feedback-000000",
    )
    event = eventbridge_event(
        record,
        account=ACCOUNT,
        region=REGION,
        configuration_set="herald-dev",
        event_id="6f5f5c4e-0000-4000-8000-000000000001",
    )
    assert event == EXPECTED_BOUNCE_EVENT


def _without_ids(event: dict[str, Any]) -> dict[str, Any]:
    event = {**event, "id": "<id>", "detail": dict(event["detail"])}
    for key in ("bounce", "complaint"):
        if key in event["detail"]:
            event["detail"][key] = {**event["detail"][key], "feedbackId": "<feedback>"}
    return event


def test_the_simulator_outcomes() -> None:
    def kinds(to: str) -> list[str]:
        events = ses_events(raw_mail(to), account=ACCOUNT, region=REGION, now=LATER)
        return [e["detail-type"] for e in events]

    assert kinds("success@simulator.amazonses.com") == ["Email Sent", "Email Delivered"]
    assert kinds("bounce@simulator.amazonses.com") == ["Email Sent", "Email Bounced"]
    assert kinds("complaint@simulator.amazonses.com") == [
        "Email Sent",
        "Email Delivered",
        "Email Complaint Received",
    ]
    assert kinds("ooto@simulator.amazonses.com") == ["Email Sent", "Email Delivered"]
    assert kinds("suppressionlist@simulator.amazonses.com") == ["Email Sent", "Email Bounced"]
    assert kinds("Success+Label@Simulator.AmazonSES.com") == ["Email Sent", "Email Delivered"]
    assert kinds("someone@example.com") == []
    assert kinds("bounce@example.com") == []


def test_send_delivery_complaint_and_suppression_records() -> None:
    to = "complaint@simulator.amazonses.com"
    records = publishing_records(raw_mail(to), account=ACCOUNT, region=REGION, now=LATER)
    send, delivery, complaint = records
    assert send == {"eventType": "Send", "mail": send["mail"], "send": {}}
    assert send["mail"]["destination"] == [to]
    assert delivery["delivery"] == {
        "timestamp": "2030-01-02T03:04:07.178Z",
        "processingTimeMillis": 1500,
        "recipients": [to],
        "smtpResponse": "250 2.6.0 Message received",
        "reportingMTA": "a8-30.smtp-out.amazonses.com",
        "remoteMtaIp": "127.0.0.1",
    }
    assert delivery["mail"]["tags"]["ses:outgoing-ip"] == ["127.0.0.1"]
    assert set(complaint) == {"eventType", "complaint", "mail"}
    assert complaint["eventType"] == "Complaint"
    assert {k: v for k, v in complaint["complaint"].items() if k != "feedbackId"} == {
        "complaintSubType": None,
        "complainedRecipients": [{"emailAddress": to}],
        "timestamp": "2030-01-02T03:04:07.179Z",
        "userAgent": "Amazon SES Mailbox Simulator",
        "complaintFeedbackType": "abuse",
        "arrivalDate": "2030-01-02T03:04:07.179Z",
    }
    assert complaint["complaint"]["feedbackId"].endswith("-000000")

    (_, suppressed) = publishing_records(
        raw_mail("suppressionlist@simulator.amazonses.com"), account=ACCOUNT, region=REGION, now=LATER
    )
    assert suppressed["bounce"]["bounceType"] == "Permanent"
    assert suppressed["bounce"]["bounceSubType"] == "OnAccountSuppressionList"
    assert "reportingMTA" not in suppressed["bounce"]  # SES refused it itself: no DSN
    assert suppressed["bounce"]["bouncedRecipients"][0]["diagnosticCode"].startswith(
        "Amazon SES did not send"
    )


def test_event_types_filter_and_the_configuration_set_requirement() -> None:
    mail = raw_mail("complaint@simulator.amazonses.com")
    # the template's destination: bounce, complaint, delivery, reject, renderingFailure, deliveryDelay
    matching = ["bounce", "complaint", "delivery", "reject", "renderingFailure", "deliveryDelay"]
    events = ses_events(mail, account=ACCOUNT, region=REGION, now=LATER, event_types=matching)
    assert [e["detail-type"] for e in events] == ["Email Delivered", "Email Complaint Received"]
    events = ses_events(mail, account=ACCOUNT, region=REGION, now=LATER, event_types=["COMPLAINT"])
    assert [e["detail-type"] for e in events] == ["Email Complaint Received"]
    no_set = mail_from_raw(
        message_id=MESSAGE_ID,
        source="notifications@herald.test",
        destinations=["bounce@simulator.amazonses.com"],
        raw_data="From: notifications@herald.test\r\nTo: bounce@simulator.amazonses.com\r\n\r\nHi\r\n",
        timestamp=SENT_AT,
    )
    assert no_set.configuration_set is None
    assert ses_events(no_set, account=ACCOUNT, region=REGION, now=LATER) == []


def test_simple_sends_and_captured_parameters() -> None:
    mail = mail_from_simple(
        message_id=MESSAGE_ID,
        source="Herald <notifications@herald.test>",
        destinations={"ToAddresses": ["success@simulator.amazonses.com"], "CcAddresses": ["cc@example.com"]},
        subject="Hello",
        body="<p>Hi</p>",
        timestamp=SENT_AT,
        configuration_set="herald-dev",
        tags={"notification_id": "n-2"},
        reply_to=["support@herald.test"],
    )
    (sent, delivered) = ses_events(mail, account=ACCOUNT, region=REGION, now=LATER)
    detail = sent["detail"]
    assert _without_ids(sent)["resources"] == [
        "arn:aws:ses:us-east-1:123456789012:configuration-set/herald-dev"
    ]
    assert detail["mail"]["destination"] == ["success@simulator.amazonses.com", "cc@example.com"]
    assert detail["mail"]["commonHeaders"] == {
        "from": ["Herald <notifications@herald.test>"],
        "replyTo": ["support@herald.test"],
        "date": "Wed, 02 Jan 2030 03:04:05 +0000",
        "to": ["success@simulator.amazonses.com"],
        "cc": ["cc@example.com"],
        "messageId": MESSAGE_ID,
        "subject": "Hello",
    }
    assert detail["mail"]["tags"]["notification_id"] == ["n-2"]
    assert detail["mail"]["tags"]["ses:from-domain"] == ["herald.test"]
    assert sent["time"] == "2030-01-02T03:04:05Z"
    # only the simulator recipient gets a delivery: the other address goes nowhere locally
    assert delivered["detail"]["delivery"]["recipients"] == ["success@simulator.amazonses.com"]


def test_addresses_and_tag_headers() -> None:
    assert simulator_scenario("bounce@simulator.amazonses.com") == "bounce"
    assert simulator_scenario("Someone <ooto+x@simulator.amazonses.com>") == "ooto"
    assert simulator_scenario("suppressionlist+a.b@simulator.amazonses.com") == "suppressionlist"
    assert simulator_scenario("blackhole@simulator.amazonses.com") is None
    assert simulator_scenario("success@simulator.amazonses.com.evil.test") is None
    assert parse_message_tags("a=1, b = two ,broken, =x") == {"a": "1", "b": "two"}
    assert parse_message_tags(None) == {}
