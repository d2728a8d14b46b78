"""The feedback function on moto, provisioned from template.yaml: SES events from the feedback queue
applied to the delivery log, the suppression list and marketing opt-outs; soft bounces counted per
address within the window (concurrently too); mail Herald did not send, unknown detail-types and
malformed events (decision 022)."""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.batch import REJECTION_ATTRIBUTE
from herald.delivery import DeliveryLedger
from herald.feedback import FeedbackRecorder
from herald.models import Category, Urgency
from herald.ses_feedback import SesFeedback, SesFeedbackRecord, SoftBounces, soft_bounce_key
from herald.stores.dynamo import from_attributes, to_attributes
from herald.stores.keys import email_address
from herald.stores.notifications import NotificationRecord, NotificationStore
from herald.stores.suppression import SuppressionStore
from herald.stores.users import UserStore
from herald.users import UserProfile
from tests.support.lambda_context import FakeContext
from tests.support.stack import MotoStack, fresh_function_module

pytestmark = pytest.mark.integration
CONTEXT = FakeContext("herald-feedback", 30)

ADDRESS = "ana@example.com"
USER = "42"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def handler(stack: MotoStack) -> Any:
    return fresh_function_module("functions.feedback.app")


# -- what SES publishes -------------------------------------------------------------------------


def mail(stack: MotoStack, *, to: str = ADDRESS, notification_id: str = "ntf-1", herald: bool = True) -> dict:
    tags: dict[str, list[str]] = {
        "ses:configuration-set": [stack.env["SES_CONFIGURATION_SET"]],
        "ses:from-domain": ["example.com"],
    }
    if herald:
        tags |= {"notification_id": [notification_id], "user_id": [USER], "type": ["marketing_promo"]}
    return {
        "timestamp": "2026-11-30T12:00:00.000Z",
        "source": "notifications@example.com",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/notifications@example.com",
        "sendingAccountId": "123456789012",
        "messageId": f"0100-{notification_id}-000000",
        "destination": [to],
        "headersTruncated": False,
        "tags": tags,
    }


def ses_event(
    stack: MotoStack, detail_type: str, obj: str, body: dict, *, event_id: str = "", **mail_args: Any
) -> str:
    event_type = {"deliveryDelay": "DeliveryDelay"}.get(obj, obj[:1].upper() + obj[1:])
    return json.dumps(
        {
            "version": "0",
            "id": event_id or f"evt-{random.getrandbits(48):x}",
            "detail-type": detail_type,
            "source": "aws.ses",
            "account": "123456789012",
            "time": "2026-11-30T12:00:05Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {"eventType": event_type, "mail": mail(stack, **mail_args), obj: body},
        }
    )


def bounce(
    stack: MotoStack, kind: str = "Permanent", *, at: datetime = T0, feedback_id: str = "fb-1", **kw: Any
) -> str:
    body = {
        "bounceType": kind,
        "bounceSubType": "General" if kind == "Permanent" else "MailboxFull",
        "bouncedRecipients": [
            {
                "emailAddress": kw.get("to", ADDRESS),
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550",
            }
        ],
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "feedbackId": feedback_id,
    }
    return ses_event(stack, "Email Bounced", "bounce", body, **kw)


def complaint(stack: MotoStack, **kw: Any) -> str:
    body = {
        "complainedRecipients": [{"emailAddress": ADDRESS}],
        "timestamp": "2026-11-30T12:01:00.000Z",
        "feedbackId": "fb-c",
        "complaintFeedbackType": "abuse",
    }
    return ses_event(stack, "Email Complaint Received", "complaint", body, **kw)


def delivery(stack: MotoStack, **kw: Any) -> str:
    body = {"timestamp": "2026-11-30T12:00:02.000Z", "recipients": [ADDRESS], "smtpResponse": "250 2.6.0 ok"}
    return ses_event(stack, "Email Delivered", "delivery", body, **kw)


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{i}",
                "receiptHandle": f"r-{i}",
                "body": body,
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
            for i, body in enumerate(bodies)
        ]
    }


# -- what Herald keeps --------------------------------------------------------------------------


def a_notification(stack: MotoStack, notification_id: str = "ntf-1", state: str = "sent") -> None:
    dynamodb = stack.client("dynamodb")
    UserStore(dynamodb, stack.tables["UsersTable"]).put_profile(
        UserProfile(user_id=USER, email=ADDRESS, preferences={"marketing_opt_in": True})
    )
    NotificationStore(dynamodb, stack.tables["NotificationsTable"]).create(
        NotificationRecord(
            user_id=USER,
            notification_id=notification_id,
            event_id=f"e-{notification_id}",
            type="marketing_promo",
            category=Category.MARKETING,
            urgency=Urgency.LOW,
            locale="en",
            data={},
            created_at=T0,
            status="dispatched",
            deliveries={"email": {"state": state, "provider": "ses"}},
        )
    )


def record(stack: MotoStack, notification_id: str = "ntf-1") -> dict[str, Any]:
    item = stack.client("dynamodb").get_item(
        TableName=stack.tables["NotificationsTable"],
        Key=to_attributes({"user_id": USER, "notification_id": notification_id}),
        ConsistentRead=True,
    )["Item"]
    return from_attributes(item)


def suppression(stack: MotoStack, address: str = ADDRESS) -> dict[str, Any] | None:
    item = (
        stack.client("dynamodb")
        .get_item(TableName=stack.tables["SuppressionTable"], Key={"address": {"S": email_address(address)}})
        .get("Item")
    )
    return from_attributes(item) if item else None


def counted(stack: MotoStack, address: str = ADDRESS) -> set[str]:
    item = (
        stack.client("dynamodb")
        .get_item(
            TableName=stack.tables["RateCountersTable"],
            Key=to_attributes(soft_bounce_key(email_address(address))),
            ConsistentRead=True,
        )
        .get("Item")
    )
    return set(item["bounces"]["SS"]) if item else set()


def all_items(stack: MotoStack, table: str) -> list[dict[str, Any]]:
    return stack.client("dynamodb").scan(TableName=stack.tables[table])["Items"]


# -- tests --------------------------------------------------------------------------------------


def test_a_permanent_bounce_suppresses_the_address_and_bounces_the_channel(
    stack: MotoStack, handler: Any
) -> None:
    a_notification(stack)

    result = handler.lambda_handler(sqs_event(bounce(stack)), CONTEXT)

    assert result == {"batchItemFailures": []}
    saved = record(stack)
    assert saved["deliveries"]["email"]["state"] == "bounced"
    assert saved["delivery_log"][-1]["outcome"] == "bounced"
    assert saved["delivery_log"][-1]["code"] == "5.1.1"
    entry = suppression(stack)
    assert entry is not None
    assert (entry["reason"], entry["source"], entry["contact"], entry["notification_id"]) == (
        "bounce",
        "ses",
        ADDRESS,
        "ntf-1",
    )


def test_a_complaint_suppresses_and_opts_the_person_out_of_marketing(stack: MotoStack, handler: Any) -> None:
    a_notification(stack, state="delivered")

    result = handler.lambda_handler(sqs_event(complaint(stack)), CONTEXT)

    assert result == {"batchItemFailures": []}
    assert record(stack)["deliveries"]["email"]["state"] == "complained"
    assert suppression(stack)["reason"] == "complaint"  # type: ignore[index]
    profile = UserStore(stack.client("dynamodb"), stack.tables["UsersTable"]).get_profile(USER)
    assert profile is not None and profile.preferences.marketing_opt_in is False


def test_delivery_delay_reject_and_rendering_failure_update_the_log_without_suppressing(
    stack: MotoStack, handler: Any
) -> None:
    a_notification(stack, "ntf-1")
    a_notification(stack, "ntf-2")
    a_notification(stack, "ntf-3")
    delay = ses_event(
        stack,
        "Email Delivery Delayed",
        "deliveryDelay",
        {
            "timestamp": "2026-11-30T12:10:00.000Z",
            "delayType": "MailboxFull",
            "expirationTime": "2026-12-01T12:00:00.000Z",
            "delayedRecipients": [
                {"emailAddress": ADDRESS, "status": "4.2.2", "diagnosticCode": "smtp; 452"}
            ],
        },
        notification_id="ntf-1",
    )
    reject = ses_event(stack, "Email Rejected", "reject", {"reason": "Bad content"}, notification_id="ntf-2")
    rendering = ses_event(
        stack,
        "Email Rendering Failed",
        "failure",
        {"templateName": "order_shipped", "errorMessage": "Attribute 'order_id' is not present"},
        notification_id="ntf-3",
    )

    result = handler.lambda_handler(sqs_event(delay, reject, rendering), CONTEXT)

    assert result == {"batchItemFailures": []}
    delayed, rejected = record(stack, "ntf-1"), record(stack, "ntf-2")
    assert delayed["deliveries"]["email"]["state"] == "sent"
    assert (delayed["delivery_log"][-1]["outcome"], delayed["delivery_log"][-1]["code"]) == (
        "deferred",
        "4.2.2",
    )
    assert rejected["deliveries"]["email"]["state"] == "failed"
    assert rejected["delivery_log"][-1]["detail"] == "rejected by SES: Bad content"
    unrendered = record(stack, "ntf-3")
    assert unrendered["deliveries"]["email"]["state"] == "failed"
    assert unrendered["delivery_log"][-1]["code"] == "RenderingFailure"
    assert "Attribute 'order_id' is not present" in unrendered["delivery_log"][-1]["detail"]
    assert suppression(stack) is None


def test_a_delivery_settles_the_channel(stack: MotoStack, handler: Any) -> None:
    a_notification(stack)

    handler.lambda_handler(sqs_event(delivery(stack)), CONTEXT)

    saved = record(stack)
    assert saved["deliveries"]["email"]["state"] == "delivered"
    assert saved["delivery_log"][-1]["detail"] == "250 2.6.0 ok"


def test_mail_herald_did_not_send_changes_nothing_at_all(stack: MotoStack, handler: Any) -> None:
    stranger = "stranger@example.com"

    result = handler.lambda_handler(
        sqs_event(
            bounce(stack, to=stranger, herald=False),
            bounce(stack, "Transient", to=stranger, herald=False),
            complaint(stack, to=stranger, herald=False),
        ),
        CONTEXT,
    )

    assert result == {"batchItemFailures": []}
    assert suppression(stack, stranger) is None
    assert all_items(stack, "SuppressionTable") == []
    assert all_items(stack, "RateCountersTable") == []
    assert stack.drain("FeedbackDeadLetter") == []


def test_mail_of_another_configuration_set_is_not_heralds(stack: MotoStack, handler: Any) -> None:
    a_notification(stack)
    other = json.loads(bounce(stack))
    other["detail"]["mail"]["tags"]["ses:configuration-set"] = ["another-app"]

    handler.lambda_handler(sqs_event(json.dumps(other)), CONTEXT)

    assert record(stack)["deliveries"]["email"]["state"] == "sent"
    assert suppression(stack) is None


def test_a_malformed_event_goes_to_the_dlq_with_its_reason_and_fails_alone(
    stack: MotoStack, handler: Any
) -> None:
    a_notification(stack)
    broken = json.loads(bounce(stack))
    del broken["detail"]["bounce"]["bouncedRecipients"]
    bad = json.dumps(broken)

    result = handler.lambda_handler(sqs_event(bad, delivery(stack)), CONTEXT)

    assert result == {"batchItemFailures": []}, "a rejection is moved, not retried"
    [dead] = stack.drain("FeedbackDeadLetter")
    assert dead["Body"] == bad
    reason = dead["MessageAttributes"][REJECTION_ATTRIBUTE]["StringValue"]
    assert "bouncedRecipients" in reason and "Field required" in reason
    assert dead["MessageAttributes"]["herald_event_id"]["StringValue"] == "ses:0100-ntf-1-000000"
    assert record(stack)["deliveries"]["email"]["state"] == "delivered"  # its neighbour was applied


def test_an_unknown_detail_type_is_acknowledged_and_changes_nothing(stack: MotoStack, handler: Any) -> None:
    a_notification(stack)
    subscribed = json.dumps(
        {
            "version": "0",
            "id": "evt-sub",
            "detail-type": "Email Subscribed",
            "source": "aws.ses",
            "time": "2026-11-30T12:00:05Z",
            "detail": {"eventType": "Subscription", "mail": mail(stack)},
        }
    )

    result = handler.lambda_handler(sqs_event(subscribed), CONTEXT)

    assert result == {"batchItemFailures": []}
    assert stack.drain("FeedbackDeadLetter") == []
    assert record(stack).get("delivery_log", []) == []


def test_an_aws_failure_is_a_batch_item_failure_to_retry(
    stack: MotoStack, handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    a_notification(stack)

    def throttled(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem")

    monkeypatch.setattr(handler.dynamodb, "update_item", throttled)

    result = handler.lambda_handler(sqs_event(bounce(stack)), CONTEXT)

    assert result == {"batchItemFailures": [{"itemIdentifier": "m-0"}]}
    assert stack.drain("FeedbackDeadLetter") == []
    monkeypatch.undo()
    assert suppression(stack) is None


def test_the_same_event_delivered_twice_is_logged_once(stack: MotoStack, handler: Any) -> None:
    a_notification(stack)
    event = delivery(stack, event_id="evt-once")

    handler.lambda_handler(sqs_event(event), CONTEXT)
    handler.lambda_handler(sqs_event(event), CONTEXT)

    assert [e["outcome"] for e in record(stack)["delivery_log"]] == ["delivered"]


# -- soft bounces -------------------------------------------------------------------------------


def test_soft_bounces_suppress_only_at_the_threshold_within_the_window(
    stack: MotoStack, handler: Any
) -> None:
    for n in (1, 2, 3):
        a_notification(stack, f"ntf-{n}")

    handler.lambda_handler(
        sqs_event(
            bounce(stack, "Transient", at=T0, feedback_id="fb-1", notification_id="ntf-1"),
            bounce(
                stack, "Transient", at=T0 + timedelta(days=2), feedback_id="fb-2", notification_id="ntf-2"
            ),
        ),
        CONTEXT,
    )

    assert suppression(stack) is None, "two soft bounces within the window: not yet"
    assert record(stack, "ntf-2")["deliveries"]["email"]["state"] == "failed"  # this message is given up
    assert record(stack, "ntf-2")["delivery_log"][-1]["outcome"] == "soft_bounced"
    assert "soft bounce 2 of 3 within 7 days" in record(stack, "ntf-2")["delivery_log"][-1]["detail"]

    handler.lambda_handler(
        sqs_event(
            bounce(
                stack, "Undetermined", at=T0 + timedelta(days=6), feedback_id="fb-3", notification_id="ntf-3"
            )
        ),
        CONTEXT,
    )

    entry = suppression(stack)
    assert entry is not None
    assert (entry["reason"], entry["source"], entry["contact"], entry["notification_id"]) == (
        "soft_bounces",
        "ses",
        ADDRESS,
        "ntf-3",
    )
    assert record(stack, "ntf-3")["delivery_log"][-1]["detail"].endswith(
        "soft bounce 3 of 3 within 7 days: address suppressed"
    )


def test_soft_bounces_older_than_the_window_do_not_count_and_are_pruned(
    stack: MotoStack, handler: Any
) -> None:
    a_notification(stack)
    days = (0, 1, 9)

    handler.lambda_handler(
        sqs_event(
            *(bounce(stack, "Transient", at=T0 + timedelta(days=d), feedback_id=f"fb-{d}") for d in days)
        ),
        CONTEXT,
    )

    assert suppression(stack) is None, "only the bounce of day 9 is within 7 days of day 9"
    assert [e.split("|")[1] for e in counted(stack)] == ["fb-9"]


def test_a_soft_bounce_redelivered_under_another_event_id_is_counted_once(
    stack: MotoStack, handler: Any
) -> None:
    a_notification(stack)
    first = bounce(stack, "Transient", feedback_id="fb-same", event_id="evt-a")
    again = bounce(stack, "Transient", feedback_id="fb-same", event_id="evt-b")

    handler.lambda_handler(sqs_event(first, again, again), CONTEXT)

    assert len(counted(stack)) == 1
    assert suppression(stack) is None


class AtomicCalls:
    """A DynamoDB client whose every request is atomic, as DynamoDB's are (moto's in-process
    backend is not thread-safe), while requests of different workers interleave in any order: a
    read-modify-write counter loses updates here; an atomic one does not."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)

        def atomic(**kwargs: Any) -> Any:
            time.sleep(random.uniform(0, 0.003))  # let other workers in between requests
            with self._lock:
                return call(**kwargs)

        return atomic


def test_concurrent_soft_bounces_are_all_counted_and_the_threshold_is_met_once_reached(
    stack: MotoStack,
) -> None:
    dynamodb = AtomicCalls(stack.client("dynamodb"))
    a_notification(stack)
    workers = 12

    def one_lambda(n: int) -> int:
        feedback = SesFeedback(
            FeedbackRecorder(
                DeliveryLedger(dynamodb, stack.tables["NotificationsTable"]),
                SuppressionStore(dynamodb, stack.tables["SuppressionTable"]),
                UserStore(dynamodb, stack.tables["UsersTable"]),
            ),
            SoftBounces(dynamodb, stack.tables["RateCountersTable"]),
            threshold=workers,
            configuration_set=stack.env["SES_CONFIGURATION_SET"],
        )
        body = bounce(stack, "Transient", at=T0 + timedelta(seconds=n), feedback_id=f"fb-{n}")
        event = SesFeedbackRecord.model_validate(sqs_event(body)["Records"][0]).body
        barrier.wait()
        return feedback.apply(event).soft_bounces[ADDRESS]

    barrier = threading.Barrier(workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        counts = list(pool.map(one_lambda, range(workers)))

    assert len(counted(stack)) == workers, "no soft bounce was lost"
    assert sorted(counts) == list(range(1, workers + 1)), "each worker saw the count its own ADD made"
    assert suppression(stack)["reason"] == "soft_bounces"  # type: ignore[index]
    log = record(stack)["delivery_log"]
    assert len(log) == workers and sum(e["detail"].endswith("address suppressed") for e in log) == 1


def test_the_counter_keeps_only_a_hash_of_the_address(stack: MotoStack, handler: Any) -> None:
    a_notification(stack)

    handler.lambda_handler(sqs_event(bounce(stack, "Transient")), CONTEXT)

    [item] = all_items(stack, "RateCountersTable")
    assert ADDRESS not in json.dumps(item)
    assert int(item["expires_at"]["N"]) > time.time() + 6 * 86400
