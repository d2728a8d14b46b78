"""SendGrid's and Twilio's signed webhooks on the local stack (issue 11, items 7 and 8; decision 023):
forged callbacks are refused and change nothing, genuine ones from the sandboxes apply, and a phone's
STOP / START text turns its SMS off and on again. Driven through the bus, the HTTP API and the
sandboxes' control API, as a provider and an attacker would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from herald.stores.dynamo import from_attributes
from herald.stores.keys import email_address, sms_address
from local.app_client import AppClient
from local.stack import LocalStack
from tests.e2e.conftest import http_json, outbox, put_bus_event, put_event, wait_until

pytestmark = pytest.mark.e2e

SECURITY_DATA = {
    "action": "New sign-in",
    "device": "Firefox",
    "ip_address": "203.0.113.7",
    "location": "Lisbon, PT",
    "review_url": "https://app.example.com/security",
}
SHIPPED = {
    "order_id": "fb-1",
    "carrier": "DHL",
    "tracking_url": "https://example.com/t/fb-1",
    "address": "1 Rua Augusta",
}


@pytest.fixture(scope="module")
def app(stack: LocalStack) -> AppClient:
    assert stack.api and stack.sandbox
    return AppClient(stack.api.url, stack.sandbox.url)


def post_raw(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # loopback: the local API
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def records(app: AppClient, user: str) -> list[dict[str, Any]]:
    return app.get("/v1/me/export", user=user).body["notifications"]


def suppression(stack: LocalStack, address: str) -> dict[str, Any] | None:
    assert stack.description
    item = (
        stack.client("dynamodb")
        .get_item(TableName=stack.description.ref("SuppressionTable"), Key={"address": {"S": address}})
        .get("Item")
    )
    return from_attributes(item) if item else None


def synced(app: AppClient, user: str) -> None:
    """Wait until the directory applied the person's UserUpserted."""
    assert wait_until(
        lambda: (app.get("/v1/me/export", user=user).body.get("directory") or {}).get("version")
    )


def delivered_record(app: AppClient, user: str, channel: str) -> dict[str, Any]:
    """The person's one notification, once its `channel` is sent."""
    found = wait_until(
        lambda: [
            r for r in records(app, user) if r.get("deliveries", {}).get(channel, {}).get("state") == "sent"
        ]
    )
    assert found, f"{user}: the {channel} was never sent"
    return found[0]


def test_forged_sendgrid_events_are_refused_and_change_nothing(stack: LocalStack, app: AppClient) -> None:
    assert stack.api and stack.sandbox
    # GIVEN a person who opted in to marketing and an email Herald sent them
    address = "fb-sg@example.com"
    put_bus_event(stack, "UserUpserted", {"user_id": "fb-sg", "version": 1, "email": address})
    synced(app, "fb-sg")
    assert app.put("/v1/me/preferences", user="fb-sg", json_body={"marketing_opt_in": True}).ok
    put_event(stack, {"event_id": "fb-sg-1", "type": "order_shipped", "user_id": "fb-sg", "data": SHIPPED})
    sent = delivered_record(app, "fb-sg", "email")
    ids = {"notification_id": sent["notification_id"], "user_id": "fb-sg"}
    complaint = [{"email": address, "event": "spamreport", "timestamp": int(time.time()), **ids}]
    url = f"{stack.api.url}/v1/webhooks/sendgrid"
    before = records(app, "fb-sg")

    # WHEN an attacker posts a complaint signed with a key of their own, then one that is unsigned,
    # then a genuine signature over a timestamp 10 minutes old (a captured request replayed)
    body = json.dumps(complaint).encode()
    stamp = str(int(time.time()))
    forged = ec.generate_private_key(ec.SECP256R1()).sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(forged).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }
    stale_body, stale_headers = stack.sandbox.sendgrid.sign_events(
        complaint, timestamp=int(time.time()) - 600
    )
    answers = [
        post_raw(url, body, headers)[0],
        post_raw(url, body, {"Content-Type": "application/json"})[0],
        post_raw(url, stale_body, stale_headers)[0],
    ]

    # THEN each is refused, and the notification, the address and the person's opt-in are untouched
    assert answers == [401, 401, 401]
    assert records(app, "fb-sg") == before
    assert suppression(stack, email_address(address)) is None
    assert app.get("/v1/me/preferences", user="fb-sg").body["marketing_opt_in"] is True

    # AND the sandbox's genuine `delivered` for the same email is applied
    delivered = [{"email": address, "event": "delivered", "timestamp": int(time.time()), **ids}]
    posted = http_json(
        f"{stack.sandbox.url}/_sendgrid/events", method="POST", body={"events": delivered, "url": url}
    )
    assert posted["status"] == 200, posted
    (after,) = records(app, "fb-sg")
    assert after["deliveries"]["email"]["state"] == "delivered"
    assert after["delivery_log"][-1]["provider"] == "sendgrid"


def test_forged_twilio_callbacks_are_refused_and_a_genuine_one_applies(
    stack: LocalStack, app: AppClient
) -> None:
    assert stack.api and stack.sandbox
    # GIVEN a security alert texted to a person: Twilio has the message and its StatusCallback
    phone = "+14155550181"
    put_bus_event(stack, "UserUpserted", {"user_id": "fb-tw", "version": 1, "phone": phone})
    synced(app, "fb-tw")
    put_event(
        stack, {"event_id": "fb-tw-1", "type": "security_alert", "user_id": "fb-tw", "data": SECURITY_DATA}
    )
    sent = delivered_record(app, "fb-tw", "sms")
    (message,) = outbox(stack, provider="twilio", recipient=phone)
    callback = message["request"]["StatusCallback"]
    query = dict(parse_qsl(urlsplit(callback).query))
    assert (query["notification_id"], query["user_id"]) == (sent["notification_id"], "fb-tw")
    params = {
        "AccountSid": stack.sandbox.credentials.twilio.account_sid,
        "MessageSid": message["provider_id"],
        "MessageStatus": "undelivered",
        "ErrorCode": "30006",
        "To": phone,
    }
    before = records(app, "fb-tw")

    # WHEN an attacker posts "undelivered: landline" signed with a token of their own, unsigned,
    # and with Twilio's genuine signature moved onto another notification's callback URL
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    data = urlencode(params).encode()
    payload = callback + "".join(k + params[k] for k in sorted(params))
    forged = base64.b64encode(hmac.new(b"guessed-token", payload.encode(), hashlib.sha1).digest()).decode()
    genuine = stack.sandbox.twilio.sign(callback, params)
    elsewhere = callback.replace(sent["notification_id"], "ntf-" + "0" * 32)
    answers = [
        post_raw(callback, data, {**form, "X-Twilio-Signature": forged})[0],
        post_raw(callback, data, form)[0],
        post_raw(elsewhere, data, {**form, "X-Twilio-Signature": genuine})[0],
    ]

    # THEN each is refused and nothing changed: the SMS is still sent, the phone not suppressed
    assert answers == [401, 401, 401]
    assert records(app, "fb-tw") == before
    assert suppression(stack, sms_address(phone)) is None

    # AND Twilio's genuine `delivered` callback (from the sandbox) is applied
    posted = http_json(
        f"{stack.sandbox.url}/_twilio/status_callback",
        method="POST",
        body={"sid": message["provider_id"], "status": "delivered"},
    )
    assert posted["status"] == 204, posted
    (after,) = records(app, "fb-tw")
    assert after["deliveries"]["sms"]["state"] == "delivered"
    assert (after["delivery_log"][-1]["provider"], after["delivery_log"][-1]["outcome"]) == (
        "twilio",
        "delivered",
    )


def test_stop_turns_the_phones_sms_off_and_start_turns_it_back_on(stack: LocalStack, app: AppClient) -> None:
    assert stack.sandbox
    # GIVEN a person whose app recorded their phone with an SMS marketing consent
    phone = "+14155550182"
    put_bus_event(stack, "UserUpserted", {"user_id": "fb-stop", "version": 1, "email": "fb-stop@example.com"})
    synced(app, "fb-stop")
    consent = {"phone": phone, "sms_marketing": {"granted": True, "wording_version": "sms-v3"}}
    assert app.put("/v1/me/contacts", user="fb-stop", json_body=consent).ok

    # WHEN the phone texts STOP to Herald's number (Twilio forwards it, signed, to the webhook)
    stop = http_json(
        f"{stack.sandbox.url}/_twilio/inbound", method="POST", body={"from": phone, "body": "Stop"}
    )
    assert stop["status"] == 200 and "<Response" in stop["response_body"], stop
    entry = suppression(stack, sms_address(phone))
    assert entry is not None and (entry["reason"], entry["source"]) == ("opted_out", "twilio")
    # THEN the next alert reaches the person by email, and the SMS is skipped with the reason
    put_event(
        stack,
        {"event_id": "fb-stop-1", "type": "security_alert", "user_id": "fb-stop", "data": SECURITY_DATA},
    )
    first = delivered_record(app, "fb-stop", "email")
    assert "sms" not in first.get("deliveries", {})
    blocked = [s for s in first["decision"] if s.get("channel") == "sms" and s["verdict"] == "block"]
    assert blocked and blocked[0]["rule"] == "suppression", first["decision"]
    assert outbox(stack, provider="twilio", recipient=phone) == []

    # WHEN the phone texts START THEN texts are delivered to it again
    start = http_json(
        f"{stack.sandbox.url}/_twilio/inbound", method="POST", body={"from": phone, "body": "START"}
    )
    assert start["status"] == 200, start
    assert suppression(stack, sms_address(phone)) is None
    put_event(
        stack,
        {"event_id": "fb-stop-2", "type": "security_alert", "user_id": "fb-stop", "data": SECURITY_DATA},
    )
    assert len(wait_until(lambda: outbox(stack, provider="twilio", recipient=phone))) == 1


def test_help_is_answered_with_the_configured_text(stack: LocalStack) -> None:
    assert stack.sandbox
    answer = http_json(
        f"{stack.sandbox.url}/_twilio/inbound", method="POST", body={"from": "+14155550183", "body": "HELP"}
    )
    assert answer["status"] == 200
    assert "<Message>Herald notifications: reply STOP to opt out" in answer["response_body"]
