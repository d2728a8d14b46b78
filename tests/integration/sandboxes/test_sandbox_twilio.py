"""The Twilio Messaging sandbox driven by the real `twilio` SDK."""

from __future__ import annotations

import re

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client as TwilioClient

from local.sandboxes import SandboxHost

pytestmark = pytest.mark.integration

PHONE = "+14155550100"


def test_create_returns_a_message_resource(sandbox: SandboxHost, twilio_client: TwilioClient) -> None:
    message = twilio_client.messages.create(
        to=PHONE, from_=sandbox.credentials.twilio.from_number, body="Your code is 123456"
    )

    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert message.status == "queued"
    assert message.account_sid == sandbox.credentials.twilio.account_sid
    assert message.to == PHONE
    assert message.num_segments == "1"
    assert message.date_created is not None
    (entry,) = sandbox.outbox.entries(provider="twilio")
    assert (entry.channel, entry.recipient, entry.body, entry.provider_id) == (
        "sms",
        PHONE,
        "Your code is 123456",
        message.sid,
    )


def test_messaging_service_send_is_accepted(sandbox: SandboxHost, twilio_client: TwilioClient) -> None:
    service = sandbox.credentials.twilio.messaging_service_sid
    message = twilio_client.messages.create(to=PHONE, messaging_service_sid=service, body="hello")

    assert message.status == "accepted"  # what Twilio answers when a Messaging Service picks the sender
    assert message.messaging_service_sid == service
    assert sandbox.outbox.entries()[0].request["MessagingServiceSid"] == service


def test_opted_out_recipient_is_21610(sandbox: SandboxHost, twilio_client: TwilioClient) -> None:
    sandbox.twilio.mark_opted_out(PHONE)

    with pytest.raises(TwilioRestException) as raised:
        twilio_client.messages.create(to=PHONE, from_=sandbox.credentials.twilio.from_number, body="hi")

    assert (raised.value.status, raised.value.code) == (400, 21610)
    assert sandbox.outbox.entries() == []


def test_invalid_number_is_21211(sandbox: SandboxHost, twilio_client: TwilioClient) -> None:
    with pytest.raises(TwilioRestException) as raised:
        twilio_client.messages.create(
            to="0044 20 7946 0000", from_=sandbox.credentials.twilio.from_number, body="x"
        )

    assert (raised.value.status, raised.value.code) == (400, 21211)
    assert sandbox.outbox.entries() == []


def test_wrong_auth_token_is_401_20003(sandbox: SandboxHost, twilio_client_factory) -> None:
    client = twilio_client_factory(sandbox.credentials.twilio.account_sid, "0" * 32)

    with pytest.raises(TwilioRestException) as raised:
        client.messages.create(to=PHONE, from_=sandbox.credentials.twilio.from_number, body="x")

    assert (raised.value.status, raised.value.code) == (401, 20003)
    assert raised.value.msg.endswith("Authenticate")
    assert sandbox.outbox.entries() == []


def test_raw_401_body_is_twilios_shape(sandbox: SandboxHost) -> None:
    sid = sandbox.credentials.twilio.account_sid
    response = requests.post(
        f"{sandbox.url}/2010-04-01/Accounts/{sid}/Messages.json",
        data={"To": PHONE, "Body": "x"},
        auth=(sid, "bad"),
    )
    assert response.status_code == 401
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


def test_status_callback_is_signed_and_updates_the_message(
    sandbox: SandboxHost, twilio_client: TwilioClient, capture
) -> None:
    callback = f"{capture.url}/twilio/status?notification=n1"
    message = twilio_client.messages.create(
        to=PHONE, from_=sandbox.credentials.twilio.from_number, body="hi", status_callback=callback
    )

    delivery = sandbox.twilio.send_status_callback(message.sid, "delivered")

    assert delivery.ok
    (request,) = capture.wait("/twilio/status?notification=n1")
    params = request.form
    assert params["MessageSid"] == message.sid
    assert params["MessageStatus"] == "delivered"
    signature = request.headers["X-Twilio-Signature"]
    assert RequestValidator(sandbox.credentials.twilio.auth_token).validate(callback, params, signature)
    assert not RequestValidator("someone-elses-token").validate(callback, params, signature)
    assert twilio_client.messages(message.sid).fetch().status == "delivered"


def test_failed_status_callback_carries_the_error_code(
    sandbox: SandboxHost, twilio_client: TwilioClient, capture
) -> None:
    callback = f"{capture.url}/twilio/status"
    message = twilio_client.messages.create(
        to=PHONE, from_=sandbox.credentials.twilio.from_number, body="hi", status_callback=callback
    )

    response = requests.post(
        f"{sandbox.url}/_twilio/status_callback",
        json={"sid": message.sid, "status": "undelivered", "error_code": 30005},
    )

    assert response.status_code == 200
    assert capture.wait("/twilio/status")[0].form["ErrorCode"] == "30005"
    unknown = requests.post(
        f"{sandbox.url}/_twilio/status_callback", json={"sid": "SMnope", "status": "sent"}
    )
    assert unknown.status_code == 404


def test_inbound_stop_and_start_change_the_opt_out_list(
    sandbox: SandboxHost, twilio_client: TwilioClient, capture
) -> None:
    url = f"{capture.url}/twilio/inbound"
    from_number = sandbox.credentials.twilio.from_number

    sandbox.twilio.send_inbound(PHONE, "STOP", url)

    (stop,) = capture.wait("/twilio/inbound")
    assert RequestValidator(sandbox.credentials.twilio.auth_token).validate(
        url, stop.form, stop.headers["X-Twilio-Signature"]
    )
    assert (stop.form["From"], stop.form["Body"], stop.form["OptOutType"]) == (PHONE, "STOP", "STOP")
    with pytest.raises(TwilioRestException) as raised:
        twilio_client.messages.create(to=PHONE, from_=from_number, body="still there?")
    assert raised.value.code == 21610

    sandbox.twilio.send_inbound(PHONE, "start", url)

    assert capture.wait("/twilio/inbound", 2)[1].form["OptOutType"] == "START"
    assert twilio_client.messages.create(to=PHONE, from_=from_number, body="welcome back").status == "queued"


def test_callbacks_only_go_to_loopback(sandbox: SandboxHost) -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        sandbox.twilio.send_inbound(PHONE, "STOP", "https://herald.example.com/sms")
    assert not sandbox.twilio.is_opted_out(PHONE)  # refused before any state changed
    assert sandbox.twilio.callbacks_sent() == []
