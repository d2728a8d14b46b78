"""SES feedback closes the loop on the local stack (decision 022): mail to the SES mailbox simulator
makes the events SES would publish (local/ses_feedback.py), which travel as on AWS — default bus,
rule on `aws.ses`, FeedbackQueue, the feedback function — into the delivery log, the suppression
list and the person's marketing choice. Driven only through the bus and the stack's tables."""

from __future__ import annotations

from typing import Any

import pytest

from herald.catalog import load_catalog
from herald.stores.dynamo import from_attributes
from herald.stores.keys import email_address
from herald.stores.users import UserStore
from herald.users import UserProfile
from local.stack import LocalStack
from tests.e2e.conftest import emails_to, put_event, wait_until
from tests.support.cli import herald, section

pytestmark = pytest.mark.e2e

TIMEOUT = 120.0  # under a loaded CI machine the SES simulator polling (data.json) slows down


def a_person(stack: LocalStack, user_id: str, email: str) -> None:
    assert stack.description
    UserStore(stack.client("dynamodb"), stack.description.ref("UsersTable")).put_profile(
        UserProfile(user_id=user_id, email=email, preferences={"marketing_opt_in": True})
    )


def request(user_id: str, event_id: str, type_name: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_name,
        "user_id": user_id,
        "data": dict(load_catalog().types[type_name].sample_data),
    }


def notifications(stack: LocalStack, user_id: str) -> dict[str, dict[str, Any]]:
    """The person's notification records, by the event that caused them."""
    assert stack.description
    items = stack.client("dynamodb").query(
        TableName=stack.description.ref("NotificationsTable"),
        KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": user_id}},
        ConsistentRead=True,
    )["Items"]
    return {record["event_id"]: record for record in map(from_attributes, items)}


def email_state(stack: LocalStack, user_id: str, event_id: str) -> str | None:
    record = notifications(stack, user_id).get(event_id)
    return ((record or {}).get("deliveries") or {}).get("email", {}).get("state")


def suppression(stack: LocalStack, address: str) -> dict[str, Any] | None:
    assert stack.description
    item = (
        stack.client("dynamodb")
        .get_item(
            TableName=stack.description.ref("SuppressionTable"),
            Key={"address": {"S": email_address(address)}},
            ConsistentRead=True,
        )
        .get("Item")
    )
    return from_attributes(item) if item else None


def test_a_bounce_suppresses_the_address_and_the_next_email_is_not_sent(stack: LocalStack) -> None:
    # GIVEN a person whose address bounces (the SES mailbox simulator)
    address = "bounce+e2e@simulator.amazonses.com"
    a_person(stack, "ses-bounce", address)

    # WHEN a transactional email goes to it
    put_event(stack, request("ses-bounce", "e2e-ses-bounce-1", "order_shipped"))

    # THEN SES's bounce comes back through the feedback function: the channel bounced ...
    assert wait_until(lambda: email_state(stack, "ses-bounce", "e2e-ses-bounce-1") == "bounced", TIMEOUT)
    log = notifications(stack, "ses-bounce")["e2e-ses-bounce-1"]["delivery_log"]
    assert [(e["outcome"], e.get("provider")) for e in log if e["channel"] == "email"] == [
        ("queued", None),
        ("sent", "ses"),
        ("bounced", "ses"),
    ]
    # ... and the address is suppressed, with its cause
    entry = suppression(stack, address)
    assert entry is not None
    assert (entry["reason"], entry["source"], entry["contact"]) == ("bounce", "ses", address)
    assert (
        entry["notification_id"] == notifications(stack, "ses-bounce")["e2e-ses-bounce-1"]["notification_id"]
    )

    # WHEN the next email (marketing, which the person opted into) is requested
    put_event(stack, request("ses-bounce", "e2e-ses-bounce-2", "marketing_promo"))

    # THEN it is not sent: the decision records the suppression as the reason
    second = wait_until(lambda: notifications(stack, "ses-bounce").get("e2e-ses-bounce-2"), TIMEOUT)
    assert second is not None
    blocked = [
        s
        for s in second["decision"]
        if (s["rule"], s["verdict"], s.get("channel")) == ("suppression", "block", "email")
    ]
    assert blocked and "suppressed" in blocked[0]["reason"], second["decision"]
    assert "email" not in (second.get("deliveries") or {})
    assert len(emails_to(stack, address)) == 1

    # AND support sees why with `herald trace` (the console script, against the running stack)
    first_id = notifications(stack, "ses-bounce")["e2e-ses-bounce-1"]["notification_id"]
    out = herald(stack.state_file, "trace", "e2e-ses-bounce-2")
    [email] = [line.split(None, 2) for line in section(out, "channels") if line.split()[0] == "email"]
    assert email[1] == "suppressed"
    assert (
        email[2] == f"— suppression: email address suppressed: bounce (ses, since {entry['created_at'][:10]})"
    )
    # and the first one's timeline: queued, sent by SES, bounced as SES reported it
    first = section(herald(stack.state_file, "trace", first_id), "delivery log")
    assert [line.split()[3:5] for line in first] == [
        ["email", "queued"],
        ["email", "sent"],
        ["email", "bounced"],
    ]


def test_a_complaint_suppresses_and_opts_the_person_out_of_marketing(stack: LocalStack) -> None:
    assert stack.description
    address = "complaint+e2e@simulator.amazonses.com"
    a_person(stack, "ses-complaint", address)

    put_event(stack, request("ses-complaint", "e2e-ses-complaint-1", "marketing_promo"))

    assert wait_until(
        lambda: email_state(stack, "ses-complaint", "e2e-ses-complaint-1") == "complained", TIMEOUT
    )
    log = notifications(stack, "ses-complaint")["e2e-ses-complaint-1"]["delivery_log"]
    assert [e["outcome"] for e in log if e["channel"] == "email"] == [
        "queued",
        "sent",
        "delivered",
        "complained",
    ]
    assert (suppression(stack, address) or {}).get("reason") == "complaint"
    profile = UserStore(stack.client("dynamodb"), stack.description.ref("UsersTable")).get_profile(
        "ses-complaint"
    )
    assert profile is not None and profile.preferences.marketing_opt_in is False


def test_a_delivered_email_is_marked_delivered(stack: LocalStack) -> None:
    address = "success+e2e-feedback@simulator.amazonses.com"
    a_person(stack, "ses-success", address)

    put_event(stack, request("ses-success", "e2e-ses-success-1", "marketing_promo"))

    assert wait_until(lambda: email_state(stack, "ses-success", "e2e-ses-success-1") == "delivered", TIMEOUT)
    assert suppression(stack, address) is None
