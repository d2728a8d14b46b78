"""The sandboxes close the feedback loop (issue 11, item 7): SendGrid posts signed Event Webhook
batches for the mail it accepted, Twilio posts signed status callbacks by itself once switched on
and simulates inbound texts to the number's messaging webhook. Driven by the real SDKs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from twilio.request_validator import RequestValidator
from twilio.rest import Client as TwilioClient

from local.sandboxes import SandboxHost

pytestmark = pytest.mark.integration

PHONE = "+14155550100"
LANDLINE = "+14155550109"


@pytest.fixture(autouse=True)
def _no_feedback_urls(sandbox: SandboxHost) -> Iterator[None]:
    yield
    sandbox.sendgrid.event_webhook_url = None
    sandbox.twilio.inbound_url = None


def _mail(*recipients: str) -> dict[str, object]:
    """A v3 mail/send body as Herald's adapter builds it (custom args at message level)."""
    return {
        "personalizations": [{"to": [{"email": address}]} for address in recipients],
        "from": {"email": "notifications@herald.example"},
        "subject": "Hi",
        "content": [{"type": "text/plain", "value": "text"}],
        "custom_args": {"notification_id": "ntf-1", "user_id": "42", "herald_type": "promo"},
        "categories": ["promo"],
    }


def test_accepted_mail_is_followed_by_one_signed_batch_of_events(
    sandbox: SandboxHost, sendgrid_client: SendGridAPIClient, capture
) -> None:
    # GIVEN SendGrid's Event Webhook pointed at a receiver
    sandbox.sendgrid.event_webhook_url = f"{capture.url}/sendgrid/events"
    # WHEN three emails are accepted: a deliverable address, the bounce and the spamreport patterns
    response = sendgrid_client.client.mail.send.post(
        request_body=_mail("ana@example.com", "bounce@example.com", "spamreport+x@example.com")
    )
    assert response.status_code == 202
    message_id = response.headers["X-Message-Id"]
    # THEN one batch arrives, signed as SendGrid signs (the SDK's helper verifies it)
    (batch,) = capture.wait("/sendgrid/events")
    assert sandbox.sendgrid.wait_idle()
    assert capture.requests("/sendgrid/events") == [batch]
    helper = EventWebhook()
    key = helper.convert_public_key_to_ecdsa(sandbox.sendgrid.event_webhook_public_key)
    assert helper.verify_signature(
        batch.text,
        batch.headers[EventWebhookHeader.SIGNATURE],
        batch.headers[EventWebhookHeader.TIMESTAMP],
        key,
    )
    events = json.loads(batch.body)
    by_address: dict[str, list[str]] = {}
    for event in events:
        by_address.setdefault(event["email"], []).append(event["event"])
    assert by_address == {
        "ana@example.com": ["processed", "delivered"],
        "bounce@example.com": ["processed", "bounce"],
        "spamreport+x@example.com": ["processed", "delivered", "spamreport"],
    }
    # each event carries the custom args at top level, its own id and the X-Message-Id prefix
    assert all(e["notification_id"] == "ntf-1" and e["user_id"] == "42" for e in events)
    assert len({e["sg_event_id"] for e in events}) == len(events)
    assert all(e["sg_message_id"].split(".")[0] == message_id for e in events)
    bounce = next(e for e in events if e["event"] == "bounce")
    assert (bounce["type"], bounce["status"], bounce["bounce_classification"]) == (
        "bounce",
        "5.1.1",
        "Invalid Address",
    )


def test_the_event_webhook_can_be_reconfigured_or_switched_off(
    sandbox: SandboxHost, sendgrid_client: SendGridAPIClient, capture
) -> None:
    url = f"{sandbox.url}/_sendgrid/event_webhook"
    assert requests.post(url, json={"bounce": "(unclosed"}, timeout=5).status_code == 400
    assert requests.post(url, json={"colour": "red"}, timeout=5).status_code == 400
    settings = requests.post(
        url,
        json={"url": f"{capture.url}/sendgrid/events", "blocked": "^ana@", "batch_window_seconds": 0.1},
        timeout=5,
    ).json()
    assert (settings["url"], settings["blocked"], settings["enabled"]) == (
        f"{capture.url}/sendgrid/events",
        "^ana@",
        True,
    )
    sendgrid_client.client.mail.send.post(request_body=_mail("ana@example.com"))
    (batch,) = capture.wait("/sendgrid/events")
    blocked = json.loads(batch.body)[-1]
    assert (blocked["event"], blocked["type"]) == ("bounce", "blocked")
    # switched off: accepted mail is followed by nothing
    assert requests.post(url, json={"enabled": False}, timeout=5).json()["enabled"] is False
    sendgrid_client.client.mail.send.post(request_body=_mail("ana@example.com"))
    time.sleep(0.3)
    assert sandbox.sendgrid.wait_idle()
    assert len(capture.requests("/sendgrid/events")) == 1


def test_twilio_posts_no_status_callback_by_itself_unless_switched_on(
    sandbox: SandboxHost, twilio_client: TwilioClient, capture
) -> None:
    callback = f"{capture.url}/twilio/status"
    twilio_client.messages.create(
        to=PHONE, from_=sandbox.credentials.twilio.from_number, body="hi", status_callback=callback
    )
    time.sleep(0.8)
    assert capture.requests("/twilio/status") == []


def test_switched_on_twilio_posts_signed_sent_and_delivered_or_undelivered_callbacks(
    sandbox: SandboxHost, twilio_client: TwilioClient, capture
) -> None:
    settings = requests.post(
        f"{sandbox.url}/_twilio/callbacks",
        json={"enabled": True, "delay_seconds": 0.05, "failures": {LANDLINE: 30006}},
        timeout=5,
    ).json()
    assert settings == {
        "enabled": True,
        "statuses": ["sent", "delivered"],
        "delay_seconds": 0.05,
        "failures": {LANDLINE: 30006},
    }
    callback = f"{capture.url}/twilio/status?notification_id=ntf-1&user_id=42"
    sent = {
        to: twilio_client.messages.create(
            to=to, from_=sandbox.credentials.twilio.from_number, body="hi", status_callback=callback
        ).sid
        for to in (PHONE, LANDLINE)
    }
    requests_seen = capture.wait("/twilio/status?notification_id=ntf-1&user_id=42", count=4)
    assert sandbox.twilio.wait_idle()
    validator = RequestValidator(sandbox.credentials.twilio.auth_token)
    assert all(validator.validate(callback, r.form, r.headers["X-Twilio-Signature"]) for r in requests_seen)
    statuses = {(r.form["To"], r.form["MessageStatus"], r.form.get("ErrorCode")) for r in requests_seen}
    assert statuses == {
        (PHONE, "sent", None),
        (PHONE, "delivered", None),
        (LANDLINE, "sent", None),
        (LANDLINE, "undelivered", "30006"),
    }
    assert twilio_client.messages(sent[LANDLINE]).fetch().status == "undelivered"
    assert (
        requests.post(f"{sandbox.url}/_twilio/callbacks", json={"statuses": ["bogus"]}, timeout=5).status_code
        == 400
    )


def test_an_inbound_text_goes_to_the_numbers_messaging_webhook(sandbox: SandboxHost, capture) -> None:
    # GIVEN the number's messaging webhook configured (the local stack sets Herald's)
    sandbox.twilio.inbound_url = f"{capture.url}/twilio/inbound"
    # WHEN a phone texts STOP, through the control API without naming a URL
    answer = requests.post(f"{sandbox.url}/_twilio/inbound", json={"from": PHONE, "body": "STOP"}, timeout=5)
    # THEN the signed message reached the webhook, and Twilio now refuses sends to the phone
    assert answer.status_code == 200 and answer.json()["ok"], answer.text
    (request,) = capture.wait("/twilio/inbound")
    assert (request.form["Body"], request.form["From"], request.form["OptOutType"]) == ("STOP", PHONE, "STOP")
    assert RequestValidator(sandbox.credentials.twilio.auth_token).validate(
        f"{capture.url}/twilio/inbound", request.form, request.headers["X-Twilio-Signature"]
    )
    assert sandbox.twilio.is_opted_out(PHONE)
