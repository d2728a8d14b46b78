"""`POST /v1/webhooks/sendgrid`: SendGrid's signed Event Webhook, as the SendGrid sandbox signs it
(ECDSA P-256 over timestamp + body), through the template's route (no JWT) into the API function,
on moto. Decision 023."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from herald.channels.ports import OutgoingEmail
from herald.channels.sendgrid_email import mail_body
from herald.models import Category, Urgency
from herald.stores.dynamo import from_attributes
from herald.stores.keys import email_address
from herald.stores.notifications import NotificationRecord, NotificationStore
from herald.stores.users import UserStore
from herald.users import UserProfile
from local.sandboxes.outbox import Outbox
from local.sandboxes.sendgrid_mail import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EventRules,
    SendGridSandbox,
    delivery_events,
)
from tests.integration.api.conftest import T0
from tests.support.api import Answer, ApiClient, api_credentials
from tests.support.stack import MotoStack

pytestmark = pytest.mark.integration

PATH = "/v1/webhooks/sendgrid"
USER = "u-sg"
NOTIFICATION = "ntf-sg-1"
ADDRESS = "ana@example.com"
MESSAGE_ID = "14c5d75ce93dfd64b469"
STALE_SECONDS = 301  # the bound is 300 s either way


@pytest.fixture
def sendgrid() -> SendGridSandbox:
    """The SendGrid sandbox with the key pair whose public half the stack's SendGrid secret holds."""
    return SendGridSandbox(api_credentials().sendgrid, Outbox())


@pytest.fixture
def sent(stack: MotoStack) -> None:
    """USER (marketing opted in) has NOTIFICATION, its email accepted by SendGrid (`sent`)."""
    dynamodb = stack.client("dynamodb")
    UserStore(dynamodb, stack.tables["UsersTable"]).put_profile(
        UserProfile(user_id=USER, email=ADDRESS, preferences={"marketing_opt_in": True})
    )
    NotificationStore(dynamodb, stack.tables["NotificationsTable"]).create(
        NotificationRecord(
            user_id=USER,
            notification_id=NOTIFICATION,
            event_id="e-sg-1",
            type="marketing_promo",
            category=Category.MARKETING,
            urgency=Urgency.LOW,
            locale="en",
            data={},
            created_at=T0,
            status="dispatched",
            deliveries={
                "email": {"state": "sent", "provider": "sendgrid", "provider_message_id": MESSAGE_ID}
            },
        )
    )


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """A SendGrid event about NOTIFICATION's email, Herald's custom args as top-level fields."""
    return {
        "email": ADDRESS,
        "timestamp": int(time.time()),
        "smtp-id": f"<{MESSAGE_ID}@ismtpd-555>",
        "event": kind,
        "category": ["marketing_promo"],
        "sg_event_id": f"ev-{kind}-{time.monotonic_ns()}",
        "sg_message_id": f"{MESSAGE_ID}.filter0001.16648.5515E0B88.0",
        "notification_id": NOTIFICATION,
        "user_id": USER,
        "herald_type": "marketing_promo",
        **fields,
    }


def deliver(api: ApiClient, body: bytes, headers: dict[str, str]) -> Answer:
    return api.post(PATH, user=None, data=body, headers=headers)


def post(api: ApiClient, sendgrid: SendGridSandbox, *events: dict[str, Any]) -> Answer:
    return deliver(api, *sendgrid.sign_events(list(events)))


def record(stack: MotoStack) -> dict[str, Any]:
    item = stack.client("dynamodb").get_item(
        TableName=stack.tables["NotificationsTable"],
        Key={"user_id": {"S": USER}, "notification_id": {"S": NOTIFICATION}},
        ConsistentRead=True,
    )["Item"]
    return from_attributes(item)


def suppressions(stack: MotoStack) -> list[dict[str, Any]]:
    items = stack.client("dynamodb").scan(TableName=stack.tables["SuppressionTable"])["Items"]
    return [from_attributes(item) for item in items]


def marketing_opt_in(stack: MotoStack) -> bool:
    profile = UserStore(stack.client("dynamodb"), stack.tables["UsersTable"]).get_profile(USER)
    assert profile is not None
    return profile.preferences.marketing_opt_in


def snapshot(stack: MotoStack) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    return record(stack), suppressions(stack), marketing_opt_in(stack)


def assert_refused(answer: Answer) -> None:
    assert answer.status == 401, answer.body
    assert answer.json["error"]["code"] == "unauthorized"


# -- applied --------------------------------------------------------------------------------


@pytest.mark.usefixtures("sent")
def test_delivered_moves_the_email_to_delivered_and_logs_sendgrids_message_id(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    # GIVEN a signed `delivered` event for the notification's email, sent without any JWT
    # WHEN SendGrid posts it
    answer = post(api, sendgrid, event("delivered", response="250 OK"))
    # THEN it is applied: the channel is delivered and the log says by whom, with SendGrid's X-Message-Id
    assert answer.status == 200, answer.body
    assert answer.json == {
        "received": 1,
        "logged": 1,
        "moved": 1,
        "suppressed": 0,
        "opted_out_of_marketing": 0,
        "unknown": 0,
        "ignored": 0,
        "duplicates": 0,
    }
    saved = record(stack)
    assert saved["deliveries"]["email"]["state"] == "delivered"
    entry = saved["delivery_log"][-1]
    assert (entry["channel"], entry["outcome"], entry["provider"], entry["provider_message_id"]) == (
        "email",
        "delivered",
        "sendgrid",
        MESSAGE_ID,
    )
    assert suppressions(stack) == []


@pytest.mark.usefixtures("sent")
def test_a_bounce_marks_the_email_bounced_and_suppresses_the_address_with_its_cause(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    answer = post(
        api,
        sendgrid,
        event(
            "bounce",
            type="bounce",
            status="5.1.1",
            reason="550 5.1.1 user unknown",
            bounce_classification="Invalid Address",
        ),
    )
    assert answer.status == 200, answer.body
    saved = record(stack)
    assert saved["deliveries"]["email"]["state"] == "bounced"
    assert saved["delivery_log"][-1]["code"] == "5.1.1"
    assert "user unknown" in saved["delivery_log"][-1]["detail"]
    (entry,) = suppressions(stack)
    assert (
        entry["address"],
        entry["reason"],
        entry["source"],
        entry["contact"],
        entry["notification_id"],
    ) == (
        email_address(ADDRESS),
        "bounce",
        "sendgrid",
        ADDRESS,
        NOTIFICATION,
    )
    assert marketing_opt_in(stack) is True  # a bounce is no complaint


@pytest.mark.usefixtures("sent")
def test_a_blocked_message_failed_but_the_address_stays_usable(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    # GIVEN the receiving server refused this message for its content (SendGrid's `blocked`)
    answer = post(
        api,
        sendgrid,
        event("bounce", type="blocked", status="5.7.1", reason="rejected", bounce_classification="Content"),
    )
    # THEN the email failed, and the address is not suppressed (SendGrid does not list blocks either)
    assert answer.status == 200, answer.body
    assert record(stack)["deliveries"]["email"]["state"] == "failed"
    assert suppressions(stack) == []


@pytest.mark.usefixtures("sent")
def test_a_block_that_sendgrid_classifies_as_an_invalid_address_is_a_bounce(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    answer = post(
        api,
        sendgrid,
        event(
            "bounce",
            type="blocked",
            reason="unable to get mx info",
            bounce_classification="Invalid Address",
        ),
    )
    assert answer.status == 200, answer.body
    assert record(stack)["deliveries"]["email"]["state"] == "bounced"
    assert [entry["reason"] for entry in suppressions(stack)] == ["bounce"]


@pytest.mark.usefixtures("sent")
@pytest.mark.parametrize(
    ("reason", "state", "suppressed_as"),
    [
        ("Bounced Address", "bounced", "bounce"),
        ("Invalid", "bounced", "bounce"),
        ("Spam Reporting Address", "complained", "complaint"),
        ("Invalid SMTPAPI header", "failed", None),
        ("Unsubscribed Address", "failed", None),
    ],
)
def test_a_drop_suppresses_only_when_the_address_is_at_fault(
    stack: MotoStack,
    api: ApiClient,
    sendgrid: SendGridSandbox,
    reason: str,
    state: str,
    suppressed_as: str | None,
) -> None:
    answer = post(api, sendgrid, event("dropped", reason=reason))
    assert answer.status == 200, answer.body
    saved = record(stack)
    assert saved["deliveries"]["email"]["state"] == state
    assert saved["delivery_log"][-1]["detail"] == reason
    assert [entry["reason"] for entry in suppressions(stack)] == ([suppressed_as] if suppressed_as else [])


@pytest.mark.usefixtures("sent")
def test_a_spam_report_suppresses_the_address_and_opts_the_person_out_of_marketing(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    answer = post(api, sendgrid, event("delivered"), event("spamreport"))
    assert answer.status == 200, answer.body
    assert (answer.json["moved"], answer.json["suppressed"], answer.json["opted_out_of_marketing"]) == (
        2,
        1,
        1,
    )
    assert record(stack)["deliveries"]["email"]["state"] == "complained"
    assert [(e["reason"], e["source"]) for e in suppressions(stack)] == [("complaint", "sendgrid")]
    assert marketing_opt_in(stack) is False


@pytest.mark.usefixtures("sent")
def test_deferred_and_open_are_logged_without_moving_the_state(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    answer = post(
        api,
        sendgrid,
        event("deferred", response="421 try again later", attempt="2"),
        event("open", sg_machine_open=True, useragent="Mozilla/5.0"),
    )
    assert answer.status == 200, answer.body
    assert (answer.json["logged"], answer.json["moved"]) == (2, 0)
    saved = record(stack)
    assert saved["deliveries"]["email"]["state"] == "sent"
    deferred, opened = saved["delivery_log"][-2:]
    assert (deferred["outcome"], deferred["detail"]) == ("deferred", "421 try again later (attempt 2)")
    assert (opened["outcome"], opened["detail"]) == ("opened", "machine open (privacy proxy)")


@pytest.mark.usefixtures("sent")
def test_events_herald_does_not_track_are_ignored_and_nothing_is_written(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    before = snapshot(stack)
    answer = post(
        api, sendgrid, event("processed"), event("click", url="https://example.com"), {"no": "event"}
    )
    assert answer.status == 200, answer.body
    assert (answer.json["received"], answer.json["ignored"], answer.json["logged"]) == (3, 3, 0)
    assert snapshot(stack) == before


def test_an_event_for_an_unknown_notification_writes_nothing(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    # GIVEN no such notification (erased, or another system's custom args)
    answer = post(api, sendgrid, event("delivered", notification_id="ntf-nobody"))
    # THEN SendGrid gets its 2xx (no retries) and nothing is written
    assert answer.status == 200, answer.body
    assert (answer.json["unknown"], answer.json["logged"]) == (1, 0)
    items = stack.client("dynamodb").scan(TableName=stack.tables["NotificationsTable"])["Items"]
    assert items == []
    assert suppressions(stack) == []


def test_a_bounce_of_mail_herald_did_not_tag_still_suppresses_the_address(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    # GIVEN an asynchronous bounce without custom args (SendGrid sends none for some)
    bounce = event("bounce", type="bounce", status="5.1.1", reason="550 no such user")
    for key in ("notification_id", "user_id", "herald_type", "sg_message_id"):
        bounce.pop(key)
    answer = post(api, sendgrid, bounce)
    # THEN the address is suppressed all the same, with no notification to log on
    assert answer.status == 200, answer.body
    assert (answer.json["unknown"], answer.json["suppressed"]) == (1, 1)
    (entry,) = suppressions(stack)
    assert (entry["reason"], entry["contact"], entry.get("notification_id")) == ("bounce", ADDRESS, None)


@pytest.mark.usefixtures("sent")
def test_a_replayed_batch_changes_no_state(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    # GIVEN a complaint batch, applied
    body, headers = sendgrid.sign_events([event("delivered"), event("spamreport")])
    assert deliver(api, body, headers).status == 200
    state, suppressed, opted_in = snapshot(stack)
    # WHEN the same signed request arrives again within the 5 minutes (SendGrid's retry, or a replay)
    answer = deliver(api, body, headers)
    # THEN the channel state, the suppression entry and the opt-out are as they were
    assert answer.status == 200, answer.body
    assert answer.json["moved"] == 0
    after = record(stack)
    assert after["deliveries"]["email"]["state"] == state["deliveries"]["email"]["state"] == "complained"
    assert [(e["reason"], e["created_at"]) for e in suppressions(stack)] == [
        (e["reason"], e["created_at"]) for e in suppressed
    ]
    assert marketing_opt_in(stack) is opted_in is False


@pytest.mark.usefixtures("sent")
def test_an_event_repeated_within_one_body_is_applied_once(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    delivered = event("delivered")
    answer = post(api, sendgrid, delivered, dict(delivered))
    assert answer.status == 200, answer.body
    assert (answer.json["logged"], answer.json["duplicates"]) == (1, 1)
    assert [e["outcome"] for e in record(stack)["delivery_log"]] == ["delivered"]


# -- refused: 401 and nothing written ---------------------------------------------------------


@pytest.mark.usefixtures("sent")
def test_an_unsigned_event_batch_is_refused(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    before = snapshot(stack)
    body, headers = sendgrid.sign_events([event("bounce", type="bounce")])
    for missing in (SIGNATURE_HEADER, TIMESTAMP_HEADER):
        assert_refused(deliver(api, body, {k: v for k, v in headers.items() if k != missing}))
    assert snapshot(stack) == before


@pytest.mark.usefixtures("sent")
def test_a_batch_signed_with_another_key_is_refused(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    before = snapshot(stack)
    body, headers = sendgrid.sign_events([event("spamreport")])
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = stranger.sign(headers[TIMESTAMP_HEADER].encode() + body, ec.ECDSA(hashes.SHA256()))
    assert_refused(deliver(api, body, {**headers, SIGNATURE_HEADER: base64.b64encode(forged).decode()}))
    assert_refused(deliver(api, body, {**headers, SIGNATURE_HEADER: "not base64 at all!"}))
    assert snapshot(stack) == before


@pytest.mark.usefixtures("sent")
def test_a_body_or_timestamp_changed_after_signing_is_refused(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    before = snapshot(stack)
    body, headers = sendgrid.sign_events([event("delivered")])
    tampered = body.replace(b'"delivered"', b'"spamreport"')
    assert_refused(deliver(api, tampered, headers))
    later = str(int(headers[TIMESTAMP_HEADER]) + 1)
    assert_refused(deliver(api, body, {**headers, TIMESTAMP_HEADER: later}))
    assert snapshot(stack) == before


@pytest.mark.usefixtures("sent")
@pytest.mark.parametrize("skew", [-STALE_SECONDS, STALE_SECONDS])
def test_a_stale_or_future_timestamp_is_refused_even_when_signed(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox, skew: int
) -> None:
    # GIVEN a genuine signature over a timestamp 5 min 1 s away (a replay captured long ago)
    before = snapshot(stack)
    body, headers = sendgrid.sign_events([event("bounce", type="bounce")], timestamp=int(time.time()) + skew)
    assert_refused(deliver(api, body, headers))
    assert snapshot(stack) == before


@pytest.mark.usefixtures("sent")
def test_a_signed_body_that_is_not_an_event_array_is_422(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    before = snapshot(stack)
    stamp = str(int(time.time()))
    body = json.dumps({"event": "delivered"}).encode()
    signature = api_credentials().sendgrid.event_webhook_private_key.sign(
        stamp.encode() + body, ec.ECDSA(hashes.SHA256())
    )
    headers = {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: stamp}
    answer = deliver(api, body, {**headers, "Content-Type": "application/json"})
    assert answer.status == 422, answer.body
    assert snapshot(stack) == before


# -- the sandbox closes the loop --------------------------------------------------------------


@pytest.mark.usefixtures("sent")
def test_the_sandboxs_events_for_an_accepted_email_reach_the_api_and_apply(
    stack: MotoStack, api: ApiClient, sendgrid: SendGridSandbox
) -> None:
    # GIVEN the email as Herald's SendGrid adapter builds it, to an address the sandbox bounces
    email = OutgoingEmail(
        sender="notifications@example.com",
        to="bounce@example.com",
        subject="Hi",
        text="text",
        tags={"notification_id": NOTIFICATION, "user_id": USER, "type": "marketing_promo"},
    )
    events = delivery_events(mail_body(email), MESSAGE_ID, EventRules())
    # WHEN the sandbox posts its signed batch over HTTP to the API (as SendGrid would)
    served = api.api.start()
    sendgrid.event_webhook_url = f"{served.url}{PATH}"
    sendgrid.queue_events(events)
    delivery = sendgrid.flush()
    # THEN the API verified it and applied the bounce
    assert delivery is not None and delivery.status == 200, delivery
    assert [e["event"] for e in events] == ["processed", "bounce"]
    assert record(stack)["deliveries"]["email"]["state"] == "bounced"
    assert [(e["reason"], e["contact"]) for e in suppressions(stack)] == [("bounce", "bounce@example.com")]
