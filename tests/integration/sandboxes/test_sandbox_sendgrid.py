"""The SendGrid v3 sandbox driven by the real `sendgrid` SDK, and its signed Event Webhook."""

from __future__ import annotations

import json

import pytest
from python_http_client.exceptions import BadRequestsError, UnauthorizedError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from sendgrid.helpers.mail import Mail

from local.sandboxes import SandboxHost

pytestmark = pytest.mark.integration


def _mail(to: str = "ada@example.com") -> Mail:
    return Mail(
        from_email="notifications@herald.example",
        to_emails=to,
        subject="Your weekly digest",
        plain_text_content="3 things happened",
        html_content="<p>3 things happened</p>",
    )


def test_send_is_202_with_message_id(sandbox: SandboxHost, sendgrid_client: SendGridAPIClient) -> None:
    response = sendgrid_client.send(_mail())

    assert response.status_code == 202
    assert response.body in (b"", "")
    message_id = response.headers["X-Message-Id"]
    assert len(message_id) >= 16
    (entry,) = sandbox.outbox.entries(provider="sendgrid")
    assert (entry.channel, entry.recipient, entry.subject, entry.body, entry.provider_id) == (
        "email",
        "ada@example.com",
        "Your weekly digest",
        "3 things happened",
        message_id,
    )
    assert entry.extra["html"] == "<p>3 things happened</p>"
    assert entry.request["from"]["email"] == "notifications@herald.example"


def test_wrong_key_is_401_with_sendgrids_body(sandbox: SandboxHost) -> None:
    client = SendGridAPIClient("SG.wrong.key", host=sandbox.url)

    with pytest.raises(UnauthorizedError) as raised:
        client.send(_mail())

    assert raised.value.status_code == 401
    assert json.loads(raised.value.body) == {
        "errors": [
            {
                "message": "The provided authorization grant is invalid, expired, or revoked",
                "field": None,
                "help": None,
            }
        ]
    }
    assert sandbox.outbox.entries() == []


def test_invalid_payload_is_400_with_field_errors(
    sandbox: SandboxHost, sendgrid_client: SendGridAPIClient
) -> None:
    payload = {
        "personalizations": [{"to": [{"email": "not-an-address"}]}],
        "from": {"email": "a@herald.example"},
    }

    with pytest.raises(BadRequestsError) as raised:
        sendgrid_client.client.mail.send.post(request_body=payload)

    fields = {error["field"] for error in json.loads(raised.value.body)["errors"]}
    assert fields == {"personalizations.0.to.0.email", "subject", "content"}
    assert sandbox.outbox.entries() == []


def test_template_send_needs_no_subject_or_content(
    sandbox: SandboxHost, sendgrid_client: SendGridAPIClient
) -> None:
    payload = {
        "personalizations": [{"to": [{"email": "bo@example.com"}], "dynamic_template_data": {"name": "Bo"}}],
        "from": {"email": "a@herald.example"},
        "template_id": "d-0123456789abcdef",
    }

    response = sendgrid_client.client.mail.send.post(request_body=payload)

    assert response.status_code == 202
    (entry,) = sandbox.outbox.entries()
    assert entry.extra["template_id"] == "d-0123456789abcdef"


def test_sandbox_mode_validates_without_sending(
    sandbox: SandboxHost, sendgrid_client: SendGridAPIClient
) -> None:
    payload = _mail().get()
    payload["mail_settings"] = {"sandbox_mode": {"enable": True}}

    response = sendgrid_client.client.mail.send.post(request_body=payload)

    assert response.status_code == 200
    assert sandbox.outbox.entries() == []


def test_signed_events_verify_with_sendgrids_helper(sandbox: SandboxHost) -> None:
    events = [
        {"email": "ada@example.com", "event": "bounce", "sg_message_id": "abc.filter0001", "timestamp": 1}
    ]

    body, headers = sandbox.sendgrid.sign_events(events)

    verifier = EventWebhook(sandbox.sendgrid.event_webhook_public_key)
    signature = headers[EventWebhookHeader.SIGNATURE]
    timestamp = headers[EventWebhookHeader.TIMESTAMP]
    assert json.loads(body) == events
    assert verifier.verify_signature(body.decode(), signature, timestamp)
    assert not verifier.verify_signature(body.decode().replace("bounce", "delivered"), signature, timestamp)
    assert not verifier.verify_signature(body.decode(), signature, str(int(timestamp) + 1))


def test_send_events_posts_a_verifiable_batch(sandbox: SandboxHost, capture) -> None:
    events = [
        {"email": "ada@example.com", "event": "delivered", "sg_message_id": "m1.filter", "timestamp": 2}
    ]

    delivery = sandbox.sendgrid.send_events(events, f"{capture.url}/sendgrid/events")

    assert delivery.ok
    (request,) = capture.wait("/sendgrid/events")
    verifier = EventWebhook(sandbox.credentials.sendgrid.event_webhook_public_key)
    assert verifier.verify_signature(
        request.text,
        request.headers["X-Twilio-Email-Event-Webhook-Signature"],
        request.headers["X-Twilio-Email-Event-Webhook-Timestamp"],
    )
