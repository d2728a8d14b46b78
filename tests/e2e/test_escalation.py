"""Escalation chains on the local stack (issue 10 item 7), driven through the bus, the sandboxes'
controls and the app API only: an acknowledged push ends the chain, an ignored one is followed by
exactly one email after the delay, an undeliverable one by the email at once, and the driver's
chain texts 5 seconds after an unanswered push."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from herald.catalog import load_catalog
from herald.users import UserProfile
from local.app_client import AppClient
from local.stack import LocalStack
from tests.e2e.conftest import FALLBACK_DELAY_SECONDS, emails_to, http_json, outbox, put_event, wait_until
from tests.e2e.test_local_stack import DEVICE, add_user

pytestmark = pytest.mark.e2e


def sample(type_name: str) -> dict:
    return load_catalog().entry(type_name).sample_data


def a_person(stack: LocalStack, user_id: str, **fields: object) -> None:
    add_user(
        stack,
        UserProfile.model_validate(
            {
                "user_id": user_id,
                "email": f"{user_id}+success@simulator.amazonses.com",
                "devices": {f"{user_id}-phone": DEVICE},
                **fields,
            }
        ),
    )


def test_an_ignored_push_is_followed_by_exactly_one_email_after_the_delay(stack: LocalStack) -> None:
    a_person(stack, "esc-ignored")
    put_event(
        stack,
        {
            "event_id": "esc-e1",
            "type": "payment_receipt",
            "user_id": "esc-ignored",
            "data": sample("payment_receipt"),
        },
    )
    assert wait_until(lambda: outbox(stack, provider="fcm", recipient="esc-ignored-phone"))
    pushed = time.monotonic()

    emails = wait_until(lambda: emails_to(stack, "esc-ignored+success@"), timeout=FALLBACK_DELAY_SECONDS + 30)

    assert len(emails) == 1
    assert time.monotonic() - pushed >= FALLBACK_DELAY_SECONDS - 5  # not before the delay
    time.sleep(3)
    assert len(emails_to(stack, "esc-ignored+success@")) == 1


def test_an_undeliverable_push_sends_the_email_at_once(stack: LocalStack) -> None:
    assert stack.sandbox
    a_person(stack, "esc-dead")
    http_json(f"{stack.sandbox.url}/_fcm/unregistered", method="POST", body={"token": "esc-dead-phone"})
    put_event(
        stack,
        {
            "event_id": "esc-e2",
            "type": "payment_receipt",
            "user_id": "esc-dead",
            "data": sample("payment_receipt"),
        },
    )

    emails = wait_until(lambda: emails_to(stack, "esc-dead+success@"), timeout=FALLBACK_DELAY_SECONDS - 10)

    assert len(emails) == 1  # well before the fallback delay: the sender failed the step


def test_the_drivers_chain_texts_five_seconds_after_an_unanswered_push(stack: LocalStack) -> None:
    a_person(stack, "esc-rider", phone="+14155550190")
    put_event(
        stack,
        {
            "event_id": "esc-e3",
            "type": "driver_arrived",
            "user_id": "esc-rider",
            "data": sample("driver_arrived"),
        },
    )

    push = wait_until(lambda: outbox(stack, provider="fcm", recipient="esc-rider-phone"))
    sms = wait_until(lambda: outbox(stack, provider="twilio", recipient="+14155550190"), timeout=30)

    assert len(push) == 1 and len(sms) == 1
    assert "Rui" in sms[0]["body"]
    waited = datetime.fromisoformat(sms[0]["time"]) - datetime.fromisoformat(push[0]["time"])
    assert waited >= timedelta(
        seconds=4
    )  # the chain's 5 s without an acknowledgement (Step Functions' clock)


def test_the_fraud_chain_pushes_only_when_the_sms_cannot_be_delivered(stack: LocalStack) -> None:
    assert stack.sandbox
    a_person(stack, "esc-card", phone="+14155550191")
    a_person(stack, "esc-card-stop", phone="+14155550192")
    http_json(f"{stack.sandbox.url}/_twilio/opted_out", method="POST", body={"phone": "+14155550192"})

    for user in ("esc-card", "esc-card-stop"):
        put_event(
            stack,
            {
                "event_id": f"esc-{user}",
                "type": "fraud_alert",
                "user_id": user,
                "data": sample("fraud_alert"),
            },
        )

    assert wait_until(lambda: outbox(stack, provider="fcm", recipient="esc-card-stop-phone"), timeout=20)
    assert wait_until(lambda: outbox(stack, provider="twilio", recipient="+14155550191"))
    # the delivered SMS ended the chain (long before the fallback delay): no push will follow
    assert wait_until(lambda: execution_status(stack, "esc-card") == "SUCCEEDED", timeout=15)
    assert outbox(stack, provider="fcm", recipient="esc-card-phone") == []


def execution_status(stack: LocalStack, user_id: str) -> str | None:
    """The status of the person's escalation (named after their notification)."""
    assert stack.description
    sfn = stack.client("stepfunctions")
    arn = stack.description.ref("EscalationStateMachine")
    app_client = stack.client("dynamodb")
    items = app_client.query(
        TableName=stack.description.ref("NotificationsTable"),
        KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": user_id}},
    )["Items"]
    names = {item["notification_id"]["S"] for item in items}
    for execution in sfn.list_executions(stateMachineArn=arn)["executions"]:
        if execution["name"] in names:
            return sfn.describe_execution(executionArn=execution["executionArn"])["status"]
    return None


def test_an_acknowledged_push_ends_the_chain_and_no_email_follows(stack: LocalStack) -> None:
    assert stack.api and stack.sandbox
    a_person(stack, "esc-acked")
    put_event(
        stack,
        {
            "event_id": "esc-e4",
            "type": "payment_receipt",
            "user_id": "esc-acked",
            "data": sample("payment_receipt"),
        },
    )
    assert wait_until(lambda: outbox(stack, provider="fcm", recipient="esc-acked-phone"))
    app = AppClient(stack.api.url, stack.sandbox.url)
    (item,) = app.get("/v1/me/notifications", user="esc-acked").body["items"]

    acked = app.post(f"/v1/me/notifications/{item['id']}/ack", user="esc-acked")

    assert acked.status == 200 and acked.body["acked_at"]
    assert wait_until(lambda: execution_status(stack, "esc-acked") == "SUCCEEDED", timeout=10)
    assert emails_to(stack, "esc-acked+success@") == []
    assert app.post(f"/v1/me/notifications/{item['id']}/ack", user="esc-acked").status == 200  # harmless
