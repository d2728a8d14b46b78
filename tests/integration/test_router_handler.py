"""The router handler on moto: batches, rejections, idempotency, batched reads, dispatch, fan-out."""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.catalog import load_catalog
from herald.directory import Directory, UserDeleted, UserUpserted
from herald.messages import parse_channel_body
from herald.routing import service as service_module
from herald.routing.held import HeldRequests
from herald.stores.keys import email_address
from herald.stores.presence import PresenceStore
from herald.stores.suppression import SuppressionStore
from herald.stores.users import UserStore
from herald.topics import TopicStore
from herald.users import UserProfile
from tests.support.aws import REPO_ROOT
from tests.support.lambda_context import FakeContext
from tests.support.sqs import sqs_event
from tests.support.stack import (
    MotoStack,
    fresh_function_module,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def router(stack: MotoStack) -> Any:
    """The real handler module, imported fresh inside moto (its clients are module-scoped)."""

    return fresh_function_module("functions.router.app")


def a_profile(user_id: str, **overrides: Any) -> UserProfile:
    fields: dict[str, Any] = {
        "user_id": user_id,
        "email": f"user{user_id}@example.com",
        "phone": "+14155550100",
        "time_zone": "UTC",
        "devices": {f"tok-{user_id}": {"platform": "android", "registered_at": "2026-01-01T00:00:00Z"}},
    }
    fields.update(overrides)
    return UserProfile.model_validate(fields)


def add_users(stack: MotoStack, *profiles: UserProfile) -> None:
    store = UserStore(stack.client("dynamodb"), stack.tables["UsersTable"])
    for profile in profiles:
        store.put_profile(profile)


def envelope(detail: dict[str, Any]) -> str:
    """An EventBridge envelope; `data` defaults to the catalog's sample data for the type."""
    types = load_catalog().types
    if "data" not in detail and detail.get("type") in types:
        detail = {**detail, "data": types[detail["type"]].sample_data}
    return json.dumps(
        {
            "version": "0",
            "id": f"id-{detail.get('event_id')}",
            "detail-type": "NotificationRequested",
            "source": "tests",
            "account": "123456789012",
            "time": "2026-11-22T12:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        }
    )


def bodies(stack: MotoStack, queue: str) -> list[dict[str, Any]]:
    """Channel messages on a queue as the sender sees them once it has claimed: the escalation's
    primary (sent by Step Functions) unwrapped, each reference filled from its notification record
    (data, address, device tokens). The raw bodies never carry data."""
    from herald.stores.dynamo import from_attributes

    messages = []
    for raw in stack.drain(queue):
        message = parse_channel_body(raw["Body"])
        assert message.is_reference, "channel messages are references to the notification record"
        item = stack.client("dynamodb").get_item(
            TableName=stack.tables["NotificationsTable"],
            Key={"user_id": {"S": message.user_id}, "notification_id": {"S": message.notification_id}},
            ConsistentRead=True,
        )["Item"]
        messages.append(message.hydrated(from_attributes(item)).model_dump(mode="json", exclude_none=True))
    return messages


def direct(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages the router sent itself (not the escalation state machine)."""
    return [m for m in messages if "task_token" not in m]


def notification(stack: MotoStack, user_id: str) -> list[dict[str, Any]]:
    from herald.stores.dynamo import from_attributes

    items = stack.client("dynamodb").scan(TableName=stack.tables["NotificationsTable"])["Items"]
    return [from_attributes(i) for i in items if from_attributes(i)["user_id"] == user_id]


def count_calls(client: Any) -> Counter[str]:
    calls: Counter[str] = Counter()
    client.meta.events.register("before-call.*.*", lambda model, **_: calls.update([model.name]))
    return calls


# -- the sample event ----------------------------------------------------------------------------


def test_the_sample_event_routes_medium_high_and_critical(stack: MotoStack, router: Any) -> None:
    add_users(stack, a_profile("42"))
    event = json.loads((REPO_ROOT / "events" / "router.json").read_text())

    response = router.lambda_handler(event, FakeContext())

    assert response == {"batchItemFailures": []}
    push = direct(bodies(stack, "Push"))
    assert sorted(m["type"] for m in push) == ["order_shipped", "security_alert"]
    assert [m["type"] for m in bodies(stack, "Sms")] == ["security_alert"]
    assert [m["type"] for m in bodies(stack, "Email")] == ["security_alert"]
    executions = stack.client("stepfunctions").list_executions(stateMachineArn=stack.state_machine_arn)[
        "executions"
    ]
    receipt = next(n for n in notification(stack, "42") if n["type"] == "payment_receipt")
    assert [e["name"] for e in executions] == [receipt["notification_id"]]
    assert receipt["escalation"] is True


def test_the_notification_record_carries_the_decision_trace(stack: MotoStack, router: Any) -> None:
    add_users(stack, a_profile("42", preferences={"channels": {"sms": False}}))

    router.lambda_handler(
        sqs_event(envelope({"event_id": "sec-1", "type": "security_alert", "user_id": "42"})),
        FakeContext(),
    )

    [record] = notification(stack, "42")
    assert record["status"] == "dispatched"
    sms_steps = [s for s in record["decision"] if s.get("channel") == "sms"]
    assert sms_steps == [
        {
            "rule": "channel_opt_in",
            "verdict": "block",
            "reason": "user turned this channel off",
            "channel": "sms",
        }
    ]
    assert record["expires_at"] > datetime.now(UTC).timestamp()


# -- bad input -----------------------------------------------------------------------------------


def test_an_invalid_record_goes_to_the_dlq_alone_with_its_reason(
    stack: MotoStack, router: Any, caplog: pytest.LogCaptureFixture
) -> None:
    add_users(stack, a_profile("1"), a_profile("2"))
    event = sqs_event(
        envelope({"event_id": "ok-1", "type": "comment_reply", "user_id": "1"}),
        envelope({"event_id": "bad-1", "type": "comment_reply"}),  # neither user_id nor audience
        envelope({"event_id": "bad-2", "type": "no_such_type", "user_id": "2"}),
        envelope({"event_id": "bad-3", "type": "comment_reply", "user_id": "2", "data": {"author": "A"}}),
        "this is not JSON",
        envelope({"event_id": "ok-2", "type": "comment_reply", "user_id": "2"}),
    )

    response = router.lambda_handler(event, FakeContext())

    assert response == {"batchItemFailures": []}  # rejected records are moved, not retried
    assert sorted(m["user_id"] for m in direct(bodies(stack, "Push"))) == ["1", "2"]
    rejected = stack.drain("IngestDeadLetter")
    reasons = {
        m["MessageAttributes"]["herald_event_id"]["StringValue"]: m["MessageAttributes"][
            "herald_rejection_reason"
        ]["StringValue"]
        for m in rejected
    }
    assert set(reasons) == {"bad-1", "bad-2", "bad-3", "unknown"}
    assert reasons["bad-3"] == "comment_reply requires data fields ['excerpt', 'thread_url']"
    assert "exactly one of 'user_id' and 'audience' is required" in reasons["bad-1"]
    assert "unknown notification type 'no_such_type'" in reasons["bad-2"]
    assert "this is not JSON" in [m["Body"] for m in rejected]
    logged = {r.event_id: r.reason for r in caplog.records if r.getMessage() == "record rejected"}
    assert set(logged) == {"bad-1", "bad-2", "bad-3", None}
    assert "exactly one of 'user_id' and 'audience' is required" in logged["bad-1"]


def test_a_transient_failure_fails_only_its_record(stack: MotoStack, router: Any, monkeypatch) -> None:
    add_users(stack, a_profile("1"), a_profile("2"))
    real_dispatch = router.service._dispatcher.dispatch

    def flaky(decision, request, entry, *batch):  # dispatching user 2's notification fails
        if decision.user_id == "2":
            raise RuntimeError("SQS is having a bad day")
        return real_dispatch(decision, request, entry, *batch)

    monkeypatch.setattr(router.service._dispatcher, "dispatch", flaky)
    event = sqs_event(
        envelope({"event_id": "a", "type": "comment_reply", "user_id": "1"}),
        envelope({"event_id": "b", "type": "comment_reply", "user_id": "2"}),
    )

    response = router.lambda_handler(event, FakeContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    monkeypatch.setattr(router.service._dispatcher, "dispatch", real_dispatch)
    retry = router.lambda_handler(sqs_event(event["Records"][1]["body"]), FakeContext())
    assert retry == {"batchItemFailures": []}  # the retry replays the plan the failed attempt recorded
    assert sorted(m["user_id"] for m in bodies(stack, "Push")) == ["1", "2"]


def test_a_queue_refusing_a_message_fails_only_the_records_whose_messages_it_refused(
    stack: MotoStack, router: Any, monkeypatch
) -> None:
    # GIVEN a batch of three whose push messages share one SendMessageBatch, and SQS refusing one
    add_users(stack, a_profile("1"), a_profile("2"), a_profile("3"))
    real_send = router.sqs.send_message_batch
    calls: list[int] = []

    def refuses_user_2(**kwargs: Any) -> dict[str, Any]:
        calls.append(len(kwargs["Entries"]))
        kept = [e for e in kwargs["Entries"] if '"user_id":"2"' not in e["MessageBody"]]
        refused = [e for e in kwargs["Entries"] if e not in kept]
        response = real_send(**{**kwargs, "Entries": kept}) if kept else {"Successful": []}
        failed = [{"Id": e["Id"], "Code": "InternalError", "SenderFault": False} for e in refused]
        return {**response, "Failed": failed}

    monkeypatch.setattr(router.sqs, "send_message_batch", refuses_user_2)
    event = sqs_event(
        *(envelope({"event_id": f"q{i}", "type": "comment_reply", "user_id": str(i)}) for i in (1, 2, 3))
    )

    # WHEN the batch is routed
    response = router.lambda_handler(event, FakeContext())

    # THEN the three messages went in one call, and only user 2's record is retried
    assert calls == [3]
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    assert sorted(m["user_id"] for m in bodies(stack, "Push")) == ["1", "3"]
    monkeypatch.setattr(router.sqs, "send_message_batch", real_send)
    retry = router.lambda_handler(sqs_event(event["Records"][1]["body"]), FakeContext())
    assert retry == {"batchItemFailures": []}
    assert [m["user_id"] for m in bodies(stack, "Push")] == ["2"]
    assert len(notification(stack, "2")) == 1  # the retry replayed the first decision


# -- idempotency ---------------------------------------------------------------------------------


def test_a_repeated_event_is_decided_once_by_its_record(stack: MotoStack, router: Any) -> None:
    add_users(stack, a_profile("42"))
    body = envelope({"event_id": "dup-1", "type": "order_shipped", "user_id": "42"})
    router.lambda_handler(sqs_event(body), FakeContext())
    calls = count_calls(router.dynamodb)

    router.lambda_handler(sqs_event(body), FakeContext())
    router.lambda_handler(sqs_event(body, body), FakeContext())

    # one record; each repeat found it with its one conditional write and replayed its plan: the
    # same notification queued again, which the push sender's claim sends at most once
    [record] = notification(stack, "42")
    assert {m["notification_id"] for m in bodies(stack, "Push")} == {record["notification_id"]}
    assert calls["PutItem"] == 3 and calls["GetItem"] == 0
    assert calls["UpdateItem"] == 0 and calls["TransactWriteItems"] == 0  # a replay is not counted


# -- batched reads -------------------------------------------------------------------------------


def test_one_batch_costs_two_batch_reads_whatever_its_size(stack: MotoStack, router: Any) -> None:
    add_users(stack, *(a_profile(str(i)) for i in range(10)))
    SuppressionStore(stack.client("dynamodb"), stack.tables["SuppressionTable"]).suppress(
        email_address("user3@example.com"), "bounce", "test"
    )
    calls = count_calls(router.dynamodb)
    event = sqs_event(
        *(envelope({"event_id": f"e{i}", "type": "security_alert", "user_id": str(i)}) for i in range(10))
    )

    router.lambda_handler(event, FakeContext())

    assert calls["BatchGetItem"] == 2  # users + presence + rate counters; then suppression
    assert calls["GetItem"] == 0 and calls["Query"] == 0 and calls["Scan"] == 0
    emails = {m["to"] for m in bodies(stack, "Email")}
    assert len(emails) == 9 and "user3@example.com" not in emails


def test_a_batch_of_ten_writes_each_record_once_and_shares_its_other_calls(
    stack: MotoStack, router: Any
) -> None:
    # GIVEN ten medium notifications for nine people (one of them gets two)
    add_users(stack, *(a_profile(str(i)) for i in range(9)))
    dynamodb_calls, sqs_calls = count_calls(router.dynamodb), count_calls(router.sqs)
    event = sqs_event(
        *(
            envelope({"event_id": f"b{i}", "type": "order_shipped", "user_id": str(min(i, 8))})
            for i in range(10)
        )
    )

    # WHEN the batch is routed
    assert router.lambda_handler(event, FakeContext()) == {"batchItemFailures": []}

    # THEN one conditional PutItem per notification (its own idempotency check), two batched reads,
    # one SendMessageBatch for the ten push messages and one transaction for the rate counters
    assert dynamodb_calls == Counter({"PutItem": 10, "BatchGetItem": 2, "TransactWriteItems": 1})
    assert sqs_calls == Counter({"SendMessageBatch": 1})
    assert len(bodies(stack, "Push")) == 10
    counters = {
        item["pk"]["S"].split("#")[0]: item["push"]["N"]
        for item in stack.client("dynamodb").scan(TableName=stack.tables["RateCountersTable"])["Items"]
    }
    assert counters == {**{str(i): "1" for i in range(8)}, "8": "2"}


def test_a_record_that_fails_after_planning_sends_nothing_and_the_others_go(
    stack: MotoStack, router: Any, monkeypatch
) -> None:
    # GIVEN two people, and the router failing on person 2 after their push was planned
    add_users(stack, a_profile("1"), a_profile("2"))
    real_count = router.service._count_sends

    def fails_for_2(decision, *args):
        if decision.user_id == "2":
            raise RuntimeError("the invocation met a bad moment")
        return real_count(decision, *args)

    monkeypatch.setattr(router.service, "_count_sends", fails_for_2)
    event = sqs_event(
        *(envelope({"event_id": f"f{i}", "type": "comment_reply", "user_id": str(i)}) for i in (1, 2))
    )

    # WHEN the batch is routed
    response = router.lambda_handler(event, FakeContext())

    # THEN person 2's record is retried and their planned message was not sent; person 1's went
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    assert [m["user_id"] for m in bodies(stack, "Push")] == ["1"]


def test_a_counting_failure_neither_fails_nor_holds_back_the_batch(
    stack: MotoStack, router: Any, monkeypatch
) -> None:
    add_users(stack, a_profile("1"))

    def throttled(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("ProvisionedThroughputExceededException")

    monkeypatch.setattr(router.service._rate_counters, "add_many", throttled)

    response = router.lambda_handler(
        sqs_event(envelope({"event_id": "c1", "type": "comment_reply", "user_id": "1"})), FakeContext()
    )

    assert response == {"batchItemFailures": []}  # the message is out; the count is what was lost
    assert [m["user_id"] for m in bodies(stack, "Push")] == ["1"]


def test_a_deleted_person_gets_nothing_and_nothing_is_written_about_them(
    stack: MotoStack, router: Any
) -> None:
    # GIVEN a person the directory deleted (their tombstone stands), and one it did not
    directory = Directory(stack.client("dynamodb"), stack.tables["UsersTable"])
    for user_id in ("gone", "here"):
        assert directory.apply(
            UserUpserted.model_validate({"user_id": user_id, "version": 1, "email": f"{user_id}@example.com"})
        )
    assert directory.apply(UserDeleted.model_validate({"user_id": "gone", "version": 2}))
    calls = count_calls(router.dynamodb)

    # WHEN a notification for each arrives in one batch (for the deleted one: late, or redriven)
    event = sqs_event(
        *(envelope({"event_id": f"d-{u}", "type": "security_alert", "user_id": u}) for u in ("gone", "here"))
    )
    assert router.lambda_handler(event, FakeContext()) == {"batchItemFailures": []}

    # THEN the deleted person has no record and no message, found by the batch's one read
    assert notification(stack, "gone") == []
    assert {m["user_id"] for m in bodies(stack, "Email")} == {"here"}
    assert calls["BatchGetItem"] == 2 and calls["GetItem"] == 0


# -- deferrals -----------------------------------------------------------------------------------


def test_send_at_beyond_fifteen_minutes_becomes_a_schedule_on_the_ingest_queue(
    stack: MotoStack, router: Any
) -> None:
    add_users(stack, a_profile("42"))
    send_at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    body = envelope(
        {"event_id": "later-1", "type": "order_shipped", "user_id": "42", "send_at": send_at.isoformat()}
    )

    router.lambda_handler(sqs_event(body), FakeContext())

    scheduler = stack.client("scheduler")
    [summary] = scheduler.list_schedules(GroupName=stack.env["SCHEDULE_GROUP"])["Schedules"]
    schedule = scheduler.get_schedule(Name=summary["Name"], GroupName=stack.env["SCHEDULE_GROUP"])
    assert schedule["ScheduleExpression"] == f"at({send_at.strftime('%Y-%m-%dT%H:%M:%S')})"
    assert schedule["Target"]["Arn"] == stack.env["INGEST_QUEUE_ARN"]
    released = json.loads(schedule["Target"]["Input"])
    # the schedule holds a reference: the request (with its data) waits in the notifications table
    assert released["herald"] == {"v": 1, "phase": "release", "held": summary["Name"]}
    assert released["detail"]["data"] == {}
    sample = load_catalog().types["order_shipped"].sample_data
    assert not any(
        str(value) in schedule["Target"]["Input"] for value in sample.values() if len(str(value)) > 3
    )
    assert bodies(stack, "Push") == [] and notification(stack, "42") == []

    router.lambda_handler(sqs_event(schedule["Target"]["Input"]), FakeContext())  # the schedule fires

    [push] = bodies(stack, "Push")
    assert (push["type"], push["data"]) == ("order_shipped", sample)
    [record] = notification(stack, "42")
    assert record["data"] == sample


def test_a_fired_schedule_whose_held_request_is_gone_goes_to_the_dlq_with_the_reason(
    stack: MotoStack, router: Any
) -> None:
    send_at = datetime.now(UTC) + timedelta(days=2)
    body = envelope(
        {"event_id": "later-2", "type": "order_shipped", "user_id": "42", "send_at": send_at.isoformat()}
    )
    router.lambda_handler(sqs_event(body), FakeContext())
    scheduler = stack.client("scheduler")
    [summary] = scheduler.list_schedules(GroupName=stack.env["SCHEDULE_GROUP"])["Schedules"]
    schedule = scheduler.get_schedule(Name=summary["Name"], GroupName=stack.env["SCHEDULE_GROUP"])
    stack.client("dynamodb").delete_item(
        TableName=stack.tables["NotificationsTable"],
        Key=HeldRequests.key(summary["Name"]),
    )

    router.lambda_handler(sqs_event(schedule["Target"]["Input"]), FakeContext())

    [dead] = stack.drain("IngestDeadLetter")
    assert "held request" in dead["MessageAttributes"]["herald_rejection_reason"]["StringValue"]
    assert bodies(stack, "Push") == []


def test_send_at_within_fifteen_minutes_uses_an_sqs_delay(stack: MotoStack, router: Any) -> None:
    send_at = datetime.now(UTC) + timedelta(minutes=5)
    body = envelope(
        {"event_id": "soon-1", "type": "order_shipped", "user_id": "42", "send_at": send_at.isoformat()}
    )

    router.lambda_handler(sqs_event(body), FakeContext())

    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_urls["Ingest"], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"


def test_quiet_hours_defer_push_with_a_schedule_on_the_push_queue(stack: MotoStack, router: Any) -> None:
    now = datetime.now(UTC)
    window = {
        "start": (now - timedelta(hours=1)).strftime("%H:00"),
        "end": (now + timedelta(hours=3)).strftime("%H:00"),
    }
    add_users(stack, a_profile("42", quiet_hours=window))

    router.lambda_handler(
        sqs_event(envelope({"event_id": "q-1", "type": "order_shipped", "user_id": "42"})), FakeContext()
    )

    assert bodies(stack, "Push") == []
    [summary] = stack.client("scheduler").list_schedules(GroupName=stack.env["SCHEDULE_GROUP"])["Schedules"]
    schedule = stack.client("scheduler").get_schedule(
        Name=summary["Name"], GroupName=stack.env["SCHEDULE_GROUP"]
    )
    assert schedule["Target"]["Arn"] == stack.env["PUSH_QUEUE_ARN"]
    assert json.loads(schedule["Target"]["Input"])["channel"] == "push"


# -- fan-out -------------------------------------------------------------------------------------


def fan_out(stack: MotoStack, router: Any, audience: dict[str, Any], event_id: str = "maint-1") -> list[str]:
    """Route an audience event, then everything it puts on the broadcast queue, as the broadcast
    queue's event source would; the recipients of the SMS channel. Nothing goes to the ingest queue."""
    pending = [envelope({"event_id": event_id, "type": "security_alert", "audience": audience})]
    invocations = 0
    while pending and invocations < 40:
        router.lambda_handler(sqs_event(*pending[:10]), FakeContext())
        pending = pending[10:]
        invocations += 1
        assert stack.drain("Ingest") == []  # transactional traffic keeps its queue
        pending += [message["Body"] for message in stack.drain("Broadcast")]
    # one notification per member: a member queued twice (a page sent again after a crash) is the
    # same notification twice, which the SMS sender's claim sends once
    return sorted(user for user, _ in {(m["user_id"], m["notification_id"]) for m in bodies(stack, "Sms")})


@pytest.fixture
def small_pages(router: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        router.service, "_settings", router.service._settings.model_copy(update={"fanout_page_size": 10})
    )


@pytest.mark.usefixtures("small_pages")
def test_audience_fans_out_page_by_page_to_each_member_once(stack: MotoStack, router: Any) -> None:
    admins = [a_profile(f"a{i}", roles=["admin"]) for i in range(23)]
    add_users(stack, *admins, a_profile("not-an-admin", roles=["viewer"]))

    assert fan_out(stack, router, {"role": "admin"}) == sorted(p.user_id for p in admins)
    # Replaying the whole fan-out changes nothing.
    router.lambda_handler(
        sqs_event(envelope({"event_id": "maint-1", "type": "security_alert", "audience": {"role": "admin"}})),
        FakeContext(),
    )
    assert stack.drain("Broadcast") == [] and stack.drain("Ingest") == []


@pytest.mark.usefixtures("small_pages")
def test_a_fan_out_cut_short_by_a_crash_resumes_and_reaches_each_member_once(
    stack: MotoStack, router: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 25 members, and a router that dies once after sending the first 10 requests of a page
    admins = [a_profile(f"c{i}", roles=["admin"]) for i in range(25)]
    add_users(stack, *admins)
    real = service_module.send_batches
    crashed: list[bool] = []

    def dies_once_mid_page(sqs: Any, url: str, bodies: Any) -> None:
        if url == stack.queue_urls["Broadcast"] and not crashed:
            crashed.append(True)
            real(sqs, url, bodies[:5])
            raise RuntimeError("the invocation died mid-page")
        real(sqs, url, bodies)

    monkeypatch.setattr(service_module, "send_batches", dies_once_mid_page)
    event = envelope({"event_id": "maint-crash", "type": "security_alert", "audience": {"role": "admin"}})

    # WHEN the first attempt fails (SQS will redeliver it) and the redelivery runs
    first = router.lambda_handler(sqs_event(event), FakeContext())
    assert crashed and first["batchItemFailures"], first

    # THEN the fan-out resumes from the page and every member gets the alert exactly once
    assert fan_out(stack, router, {"role": "admin"}, event_id="maint-crash") == sorted(
        p.user_id for p in admins
    )


@pytest.mark.usefixtures("small_pages")
def test_a_topic_reaches_its_followers_by_their_own_choice_over_the_directorys(
    stack: MotoStack, router: Any
) -> None:
    # GIVEN the directory lists topic "deals" for 12 people; two of them left it themselves, and
    # three people the directory does not list joined it themselves
    listed = [f"d{i}" for i in range(12)]
    joined = ["j0", "j1", "j2"]
    add_users(stack, *(a_profile(u) for u in [*listed, *joined, "bystander"]))
    directory = Directory(stack.client("dynamodb"), stack.tables["UsersTable"])

    def upsert(user_id: str, version: int, topics: list[str]) -> None:
        entry = {"user_id": user_id, "version": version, "topics": topics, "phone": "+14155550100"}
        assert directory.apply(UserUpserted.model_validate(entry))

    for user_id in [*listed, "bystander"]:
        upsert(user_id, 1, ["deals"] if user_id != "bystander" else ["news"])
    topics = TopicStore(stack.client("dynamodb"), stack.tables["UsersTable"])
    for user_id in joined:
        topics.choose(user_id, "deals", "joined")
    for user_id in ("d3", "d7"):
        topics.choose(user_id, "deals", "left")
    # ... and the directory drops "deals" for d3, then lists it again: their choice still wins
    upsert("d3", 2, ["news"])
    upsert("d3", 3, ["deals", "news"])

    # WHEN a security alert goes to the topic
    recipients = fan_out(stack, router, {"topic": "deals"})

    # THEN exactly the followers get it, once each
    assert recipients == sorted({*listed, *joined} - {"d3", "d7"})


@pytest.mark.usefixtures("small_pages")
def test_everyone_means_every_person_the_directory_knows(stack: MotoStack, router: Any) -> None:
    # seeded as production seeds them: the directory's upserts (and one of them deleted)
    directory = Directory(stack.client("dynamodb"), stack.tables["UsersTable"])
    people = [f"p{i}" for i in range(17)]
    for i, user_id in enumerate(people):
        entry = {
            "user_id": user_id,
            "version": 1,
            "phone": "+14155550100",
            "roles": ["admin"] if i % 2 else [],
        }
        assert directory.apply(UserUpserted.model_validate(entry))
    assert directory.apply(UserDeleted.model_validate({"user_id": "p5", "version": 2}))

    assert fan_out(stack, router, {"all": True}) == sorted(set(people) - {"p5"})


# -- escalation ----------------------------------------------------------------------------------


def wait_for(queue: str, stack: MotoStack, timeout: float = 15.0) -> list[dict[str, Any]]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = bodies(stack, queue)
        if found:
            return found
        time.sleep(0.2)
    return []


def test_high_urgency_escalates_to_email_when_the_push_is_not_acknowledged(
    stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FALLBACK_DELAY_SECONDS", "1")

    sys.modules.pop("functions.router.app", None)
    router = importlib.import_module("functions.router.app")
    add_users(stack, a_profile("42"))

    router.lambda_handler(
        sqs_event(envelope({"event_id": "pay-1", "type": "payment_receipt", "user_id": "42"})), FakeContext()
    )

    [primary] = wait_for("Push", stack)
    assert primary["escalation"] is True and primary["task_token"]
    [fallback] = wait_for("Email", stack)  # nobody acknowledged within 1 s
    assert (fallback["channel"], fallback["to"]) == ("email", "user42@example.com")


def test_an_undeliverable_primary_sends_the_email_at_once(stack: MotoStack, router: Any) -> None:
    add_users(stack, a_profile("42"))
    router.lambda_handler(
        sqs_event(envelope({"event_id": "pay-2", "type": "payment_receipt", "user_id": "42"})), FakeContext()
    )
    [primary] = wait_for("Push", stack)

    stack.client("stepfunctions").send_task_failure(
        taskToken=primary["task_token"], error="Herald.Undeliverable", cause="every device token is dead"
    )

    [fallback] = wait_for("Email", stack, timeout=10)
    assert fallback["notification_id"] == primary["notification_id"]


def test_an_acknowledged_push_ends_the_escalation_without_email(stack: MotoStack, router: Any) -> None:
    import time

    add_users(stack, a_profile("42"))
    router.lambda_handler(
        sqs_event(envelope({"event_id": "pay-3", "type": "payment_receipt", "user_id": "42"})), FakeContext()
    )
    [primary] = wait_for("Push", stack)

    sfn = stack.client("stepfunctions")
    sfn.send_task_success(taskToken=primary["task_token"], output=json.dumps({"acknowledged": True}))

    [execution] = sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    for _ in range(50):
        status = sfn.describe_execution(executionArn=execution["executionArn"])["status"]
        if status != "RUNNING":
            break
        time.sleep(0.2)
    assert status == "SUCCEEDED"
    assert bodies(stack, "Email") == []


# -- repeats and retries replay the first decision -------------------------------------------------


def test_a_late_repeat_replays_the_first_decision(stack: MotoStack, router: Any) -> None:
    add_users(stack, a_profile("42"))
    body = envelope({"event_id": "late-dup-1", "type": "order_shipped", "user_id": "42"})
    router.lambda_handler(sqs_event(body), FakeContext())
    assert [m["channel"] for m in direct(bodies(stack, "Push"))] == ["push"]
    dynamodb = stack.client("dynamodb")
    # the user came online meanwhile (as the Pusher webhook records it): a fresh decision would pick in-app
    assert PresenceStore(dynamodb, stack.tables["PresenceTable"]).apply(
        "42", occupied=True, time_ms=int(time.time() * 1000), max_age_seconds=21600
    )

    router.lambda_handler(sqs_event(body), FakeContext())

    assert [m["channel"] for m in direct(bodies(stack, "Push"))] == ["push"]  # the same plan again
    assert bodies(stack, "Realtime") == []
    [record] = notification(stack, "42")
    assert [s["rule"] for s in record["decision"]].count("presence") == 1
    [counter] = dynamodb.scan(TableName=stack.tables["RateCountersTable"])["Items"]
    assert counter["push"] == {"N": "1"}  # counted once


@pytest.mark.parametrize(
    ("type_name", "urgency", "reason"),
    [
        ("order_shipped", "system", "order_shipped (transactional) cannot be sent with urgency system"),
        ("order_webhook", "high", "order_webhook (system) cannot be sent with urgency high"),
        ("marketing_promo", "critical", "marketing_promo is marketing: urgency critical is not allowed"),
    ],
)
def test_an_urgency_override_the_type_cannot_take_is_rejected(
    stack: MotoStack, router: Any, type_name: str, urgency: str, reason: str
) -> None:
    body = envelope({"event_id": "u-1", "type": type_name, "user_id": "42", "urgency": urgency})

    router.lambda_handler(sqs_event(body), FakeContext())

    [rejected] = stack.drain("IngestDeadLetter")
    assert rejected["MessageAttributes"]["herald_rejection_reason"]["StringValue"] == reason


def test_a_malformed_stored_presence_item_does_not_fail_the_batch(stack: MotoStack, router: Any) -> None:
    add_users(stack, a_profile("42"))
    stack.client("dynamodb").put_item(
        TableName=stack.tables["PresenceTable"], Item={"user_id": {"S": "42"}, "occupied": {"S": "maybe"}}
    )

    response = router.lambda_handler(
        sqs_event(envelope({"event_id": "p-1", "type": "order_shipped", "user_id": "42"})), FakeContext()
    )

    assert response == {"batchItemFailures": []}
    assert [m["channel"] for m in direct(bodies(stack, "Push"))] == ["push"]  # treated as offline
