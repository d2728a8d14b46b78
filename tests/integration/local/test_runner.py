"""The local runner against a real moto server on loopback: SQS event sources with partial batch
responses and redrive, the Lambda event and context, the environment swap, EventBridge Scheduler
one-time schedules and scheduled rules on a fast-forwarded clock, DynamoDB TTL."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local.model import FunctionSpec, QueueSource, ScheduleSource, StackDescription
from local.runner import Runner, batch_item_failures, sqs_record
from local.schedules import At, parse_schedule_expression, scheduled_event

pytestmark = pytest.mark.integration

REGION = "us-east-1"
ACCOUNT = "123456789012"
HANDLERS = "tests.integration.local.handlers_for_tests"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def make_queue(sqs: Any, name: str, *, visibility: int = 1, max_receive: int = 2) -> tuple[str, str, str]:
    """(queue url, queue arn, dlq url) with a redrive policy."""
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)}
            ),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn, dlq_url


def queue_depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def peek(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message of a queue (received with visibility 0, so they stay)."""
    return sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, MessageAttributeNames=["All"]
    ).get("Messages", [])


def description(endpoint: str, *functions: FunctionSpec) -> StackDescription:
    return StackDescription(
        region=REGION,
        aws_endpoint=endpoint,
        api_endpoint="http://127.0.0.1:0",
        sandbox_endpoint="http://127.0.0.1:0",
        parameters={"Stage": "dev"},
        functions={f.logical_id: f for f in functions},
    )


def function(
    logical_id: str,
    handler: str,
    *,
    queue: tuple[str, str] | None = None,
    report_failures: bool = True,
    batch_size: int = 10,
    window: int = 0,
    environment: dict[str, str] | None = None,
    schedules: list[ScheduleSource] | None = None,
    timeout: int = 5,
) -> FunctionSpec:
    sources = []
    if queue is not None:
        sources.append(
            QueueSource(
                queue_logical_id=f"{logical_id}Queue",
                queue_url=queue[0],
                queue_arn=queue[1],
                batch_size=batch_size,
                maximum_batching_window_seconds=window,
                report_batch_item_failures=report_failures,
            )
        )
    return FunctionSpec(
        logical_id=logical_id,
        code_uri="tests/integration/local/",
        module=HANDLERS,
        handler=handler,
        timeout_seconds=timeout,
        memory_mb=256,
        environment=environment or {},
        queue_sources=sources,
        schedules=schedules or [],
    )


def only_functions(stack: StackDescription, **kwargs: Any) -> Runner:
    return Runner(stack, emulate_scheduler=False, emulate_ttl=False, emulate_ses_feedback=False, **kwargs)


def runner_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("local-")]


# ---------------------------------------------------------------------------------------------
# SQS event sources
# ---------------------------------------------------------------------------------------------


def test_partial_batch_failures_delete_successes_and_redrive_failures_to_the_dlq(
    endpoint: str, clients: Callable[[str], Any]
) -> None:
    sqs = clients("sqs")
    url, arn, dlq_url = make_queue(sqs, f"partial-{uuid.uuid4().hex[:8]}", visibility=1, max_receive=2)
    for body in ("ok-1", "fail-1", "ok-2"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    runner = only_functions(description(endpoint, function("Partial", "partial", queue=(url, arn))))
    runner.start()
    try:
        dead = wait_for(lambda: peek(sqs, dlq_url), timeout=20)
        module = runner.module("Partial")
        assert module is not None
        seen = [body for batch in module.bodies() for body in batch]
        receive_counts = [
            r["attributes"]["ApproximateReceiveCount"]
            for call in module.CALLS
            for r in call["event"]["Records"]
            if r["body"] == "fail-1"
        ]
    finally:
        runner.stop()
    assert [m["Body"] for m in dead] == ["fail-1"]
    assert seen.count("ok-1") == 1 and seen.count("ok-2") == 1  # deleted after the first success
    assert seen.count("fail-1") == 2  # redelivered once, then moved to the DLQ (maxReceiveCount 2)
    assert receive_counts == ["1", "2"]
    assert queue_depth(sqs, url) == 0
    assert runner_threads() == []


def test_a_raising_handler_deletes_nothing(endpoint: str, clients: Callable[[str], Any]) -> None:
    sqs = clients("sqs")
    url, arn, dlq_url = make_queue(sqs, f"explode-{uuid.uuid4().hex[:8]}", visibility=1, max_receive=2)
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    runner = only_functions(description(endpoint, function("Explode", "explode", queue=(url, arn))))
    with runner:
        dead = wait_for(lambda: len(peek(sqs, dlq_url)) == 2 and peek(sqs, dlq_url), timeout=20)
        module = runner.module("Explode")
        assert module is not None
        seen = [body for batch in module.bodies() for body in batch]
    assert sorted(m["Body"] for m in dead) == ["a", "b"]
    assert sorted(seen) == ["a", "a", "b", "b"]  # both retried: the whole batch failed twice


def test_an_invalid_batch_response_fails_the_whole_batch(
    endpoint: str, clients: Callable[[str], Any]
) -> None:
    sqs = clients("sqs")
    url, arn, dlq_url = make_queue(sqs, f"invalid-{uuid.uuid4().hex[:8]}", visibility=1, max_receive=2)
    sqs.send_message(QueueUrl=url, MessageBody="fine")
    runner = only_functions(description(endpoint, function("Bad", "bad_response", queue=(url, arn))))
    with runner:
        dead = wait_for(lambda: peek(sqs, dlq_url), timeout=20)
    assert [m["Body"] for m in dead] == ["fine"]


def test_without_report_batch_item_failures_a_successful_batch_is_deleted_whole(
    endpoint: str, clients: Callable[[str], Any]
) -> None:
    sqs = clients("sqs")
    url, arn, dlq_url = make_queue(sqs, f"whole-{uuid.uuid4().hex[:8]}", visibility=2, max_receive=2)
    for body in ("fail-but-ignored", "ok"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    runner = only_functions(
        description(endpoint, function("Whole", "partial", queue=(url, arn), report_failures=False, window=1))
    )
    with runner:
        module = wait_for(lambda: runner.module("Whole"))
        wait_for(lambda: sum(len(b) for b in module.bodies()) >= 2)
        time.sleep(4.5)  # long enough for a failed message to be redelivered and redriven
        seen = [body for batch in module.bodies() for body in batch]
    assert sorted(seen) == ["fail-but-ignored", "ok"]  # the response is ignored: nothing retried
    assert queue_depth(sqs, url) == 0
    assert peek(sqs, dlq_url) == []


def test_batch_size_and_the_lambda_sqs_event_shape(endpoint: str, clients: Callable[[str], Any]) -> None:
    sqs = clients("sqs")
    url, arn, _ = make_queue(sqs, f"shape-{uuid.uuid4().hex[:8]}", visibility=30)
    sqs.send_message(
        QueueUrl=url,
        MessageBody="first",
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "test"},
            "count": {"DataType": "Number", "StringValue": "3"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )
    for i in range(4):
        sqs.send_message(QueueUrl=url, MessageBody=f"more-{i}")
    runner = only_functions(
        description(endpoint, function("Record", "record", queue=(url, arn), batch_size=2))
    )
    with runner:
        module = wait_for(lambda: runner.module("Record"))
        wait_for(lambda: sum(len(b) for b in module.bodies()) == 5)
        calls = list(module.CALLS)
    assert all(1 <= len(c["event"]["Records"]) <= 2 for c in calls)
    record = next(r for c in calls for r in c["event"]["Records"] if r["body"] == "first")
    assert set(record) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfMessageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == arn
    assert record["awsRegion"] == REGION
    assert record["md5OfBody"] == hashlib.md5(b"first").hexdigest()
    assert {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    } <= set(record["attributes"])
    assert record["messageAttributes"] == {
        "kind": {"stringValue": "test", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
        "count": {"stringValue": "3", "stringListValues": [], "binaryListValues": [], "dataType": "Number"},
        "blob": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
    }


def test_sqs_record_and_batch_response_rules() -> None:
    message = {"MessageId": "m1", "ReceiptHandle": "rh", "Body": "b", "MD5OfBody": "x", "Attributes": {}}
    assert (
        sqs_record(message, queue_arn="arn:aws:sqs:us-east-1:1:q", region="us-east-1")["messageAttributes"]
        == {}
    )
    ids = ["m1", "m2"]
    assert batch_item_failures(None, ids) == set()
    assert batch_item_failures({}, ids) == set()
    assert batch_item_failures({"batchItemFailures": []}, ids) == set()
    assert batch_item_failures({"batchItemFailures": None}, ids) == set()
    assert batch_item_failures({"batchItemFailures": [{"itemIdentifier": "m2"}]}, ids) == {"m2"}
    for invalid in (
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"id": "m1"}]},
        {"batchItemFailures": [{"itemIdentifier": "elsewhere"}]},
        {"batchItemFailures": "m1"},
        "not an object",
    ):
        assert batch_item_failures(invalid, ids) is None, invalid


# ---------------------------------------------------------------------------------------------
# Invocation: environment, context, isolation
# ---------------------------------------------------------------------------------------------


def test_environment_is_swapped_in_for_import_and_invocation_and_restored(endpoint: str) -> None:
    assert "HERALD_TEST_MARKER" not in os.environ
    before = dict(os.environ)
    os.environ["AWS_PROFILE"] = "a-developer-profile"
    try:
        runner = only_functions(
            description(
                endpoint,
                function("EchoA", "echo", environment={"HERALD_TEST_MARKER": "a"}),
                function("EchoB", "echo", environment={"HERALD_TEST_MARKER": "b"}, timeout=7),
            )
        )
        with runner:
            first = runner.invoke("EchoA", {"n": 1})
            second = runner.invoke("EchoB", {"n": 2})
            assert "HERALD_TEST_MARKER" not in os.environ and "SET_BY_HANDLER" not in os.environ
            module_a, module_b = runner.module("EchoA"), runner.module("EchoB")
            assert module_a is not None and module_b is not None
            assert module_a is not module_b  # each function has its own cold start
            context_a = module_a.CALLS[0]["context"]
            context_b = module_b.CALLS[0]["context"]
            assert module_a.IMPORT_ENV["HERALD_TEST_MARKER"] == "a"
            assert module_b.IMPORT_ENV["HERALD_TEST_MARKER"] == "b"
            assert module_a.CALLS[0]["env"]["AWS_PROFILE"] is None  # not in a Lambda environment
            assert module_a.CALLS[0]["env"]["AWS_ENDPOINT_URL"] == endpoint
    finally:
        del os.environ["AWS_PROFILE"]
    assert dict(os.environ) == before
    assert first["event"] == {"n": 1} and first["marker"] == "a"
    assert second["marker"] == "b"
    assert context_a["function_name"] == "EchoA"
    assert context_a["memory_limit_in_mb"] == "256"
    assert context_a["invoked_function_arn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:EchoA"
    assert str(uuid.UUID(context_a["aws_request_id"])) == context_a["aws_request_id"] == first["request"]
    assert 0 < context_a["remaining_ms"] <= 5000
    assert 5000 < context_b["remaining_ms"] <= 7000
    assert runner_threads() == []


def test_invoke_raises_what_the_handler_raises(endpoint: str) -> None:
    runner = only_functions(description(endpoint, function("Explode", "explode")))
    with runner:
        with pytest.raises(RuntimeError, match="handler failure"):
            runner.invoke("Explode", {})
        with pytest.raises(KeyError):
            runner.invoke("Missing", {})


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_schedule_expressions() -> None:
    at = parse_schedule_expression("at(2030-03-31T09:30:00)", timezone="Europe/Paris")
    assert isinstance(at, At) and at.first() == _utc("2030-03-31T07:30:00")  # CEST, UTC+2
    rate = parse_schedule_expression("rate(5 minutes)", anchor=1000.0)
    assert rate.first() == 1300.0 and rate.next_after(1300.0) == 1600.0 and rate.next_after(1999.0) == 2200.0
    daily = parse_schedule_expression("cron(0 8 * * ? *)")
    assert daily.next_after(_utc("2030-01-01T08:00:00")) == _utc("2030-01-02T08:00:00")
    weekdays = parse_schedule_expression("cron(15 10 ? * MON-FRI *)")
    assert weekdays.next_after(_utc("2030-01-04T11:00:00")) == _utc("2030-01-07T10:15:00")  # Fri -> Mon
    last_friday = parse_schedule_expression("cron(0 0 ? * 6L *)")
    assert last_friday.next_after(_utc("2030-01-01T00:00:00")) == _utc("2030-01-25T00:00:00")
    last_day = parse_schedule_expression("cron(30 23 L * ? *)")
    assert last_day.next_after(_utc("2030-02-01T00:00:00")) == _utc("2030-02-28T23:30:00")
    paris = parse_schedule_expression("cron(0 9 * * ? *)", timezone="Europe/Paris")
    assert paris.next_after(_utc("2030-07-01T00:00:00")) == _utc("2030-07-01T07:00:00")
    with pytest.raises(ValueError):
        parse_schedule_expression("cron(0 9 * * * *)")  # `?` needed in one day field
    with pytest.raises(ValueError):
        parse_schedule_expression("every day")
    event = scheduled_event(account=ACCOUNT, region=REGION, rule_name="Nightly", time=0)
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["resources"] == [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/Nightly"]
    assert event["time"] == "1970-01-01T00:00:00Z" and event["detail"] == {}


def _schedule_exists(scheduler: Any, name: str, group: str) -> bool:
    try:
        scheduler.get_schedule(Name=name, GroupName=group)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "ResourceNotFoundException"
        return False
    return True


def test_one_time_schedule_fires_once_when_due_then_is_deleted(
    endpoint: str, clients: Callable[[str], Any]
) -> None:
    sqs, scheduler = clients("sqs"), clients("scheduler")
    url, arn, _ = make_queue(sqs, f"deferred-{uuid.uuid4().hex[:8]}", visibility=30)
    group = f"herald-test-{uuid.uuid4().hex[:6]}"
    scheduler.create_schedule_group(Name=group)
    clock = FakeClock(_utc("2030-01-01T12:00:00"))
    common = {
        "GroupName": group,
        "ScheduleExpressionTimezone": "UTC",
        "FlexibleTimeWindow": {"Mode": "OFF"},
    }
    scheduler.create_schedule(
        Name="quiet-hours-end",
        ScheduleExpression="at(2030-01-01T13:00:00)",
        ActionAfterCompletion="DELETE",
        Target={"Arn": arn, "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/scheduler", "Input": '{"deferred": 1}'},
        **common,
    )
    scheduler.create_schedule(
        Name="kept-after-firing",
        ScheduleExpression="at(2030-01-01T13:30:00)",
        ActionAfterCompletion="NONE",
        Target={"Arn": arn, "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/scheduler", "Input": '{"deferred": 2}'},
        **common,
    )
    runner = Runner(
        description(endpoint),
        clock=clock,
        emulate_ttl=False,
        emulate_ses_feedback=False,
        schedule_interval_seconds=0.2,
    )
    with runner:
        time.sleep(1.0)
        assert queue_depth(sqs, url) == 0  # not due yet
        clock.advance(3600)  # 13:00
        messages = wait_for(lambda: peek(sqs, url))
        assert [m["Body"] for m in messages] == ['{"deferred": 1}']
        wait_for(lambda: not _schedule_exists(scheduler, "quiet-hours-end", group))
        clock.advance(3600)  # 14:00
        wait_for(lambda: queue_depth(sqs, url) == 2)
        time.sleep(1.0)  # several more passes: nothing fires twice
        assert queue_depth(sqs, url) == 2
    assert sorted(m["Body"] for m in peek(sqs, url)) == ['{"deferred": 1}', '{"deferred": 2}']
    assert _schedule_exists(scheduler, "kept-after-firing", group)  # ActionAfterCompletion NONE


def test_scheduled_rules_of_functions_fire_on_time(endpoint: str) -> None:
    clock = FakeClock(_utc("2030-01-01T00:00:00"))
    spec = function(
        "Nightly", "record", schedules=[ScheduleSource(name="Every5Minutes", expression="rate(5 minutes)")]
    )
    runner = Runner(
        description(endpoint, spec),
        clock=clock,
        emulate_ttl=False,
        emulate_ses_feedback=False,
        schedule_interval_seconds=0.1,
    )
    with runner:
        module = runner.module("Nightly")
        assert module is not None
        time.sleep(0.5)
        assert module.CALLS == []
        clock.advance(300)
        wait_for(lambda: len(module.CALLS) == 1)
        clock.advance(300)
        wait_for(lambda: len(module.CALLS) == 2)
        time.sleep(0.5)
        calls = list(module.CALLS)
    assert len(calls) == 2
    assert [c["event"]["time"] for c in calls] == ["2030-01-01T00:05:00Z", "2030-01-01T00:10:00Z"]
    assert all(c["event"]["detail-type"] == "Scheduled Event" for c in calls)


# ---------------------------------------------------------------------------------------------
# DynamoDB TTL
# ---------------------------------------------------------------------------------------------


def test_ttl_expired_items_are_deleted_and_the_others_kept(
    endpoint: str, clients: Callable[[str], Any]
) -> None:
    dynamodb = clients("dynamodb")
    clock = FakeClock(_utc("2030-06-01T00:00:00"))
    now = int(clock())
    table, plain = f"ttl-{uuid.uuid4().hex[:8]}", f"no-ttl-{uuid.uuid4().hex[:8]}"
    for name in (table, plain):
        dynamodb.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    dynamodb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    items = {
        "expired": {"expires_at": {"N": str(now - 10)}},
        "expired-now": {"expires_at": {"N": str(now)}},
        "later": {"expires_at": {"N": str(now + 3600)}},
        "no-ttl": {},
        "string-ttl": {"expires_at": {"S": str(now - 10)}},
        "six-years-ago": {"expires_at": {"N": str(now - 6 * 365 * 86400)}},
    }
    for name in (table, plain):
        for key, extra in items.items():
            dynamodb.put_item(TableName=name, Item={"pk": {"S": key}, "sk": {"S": "x"}, **extra})

    def keys(name: str) -> set[str]:
        return {i["pk"]["S"] for i in dynamodb.scan(TableName=name, ConsistentRead=True)["Items"]}

    runner = Runner(
        description(endpoint),
        clock=clock,
        emulate_scheduler=False,
        emulate_ses_feedback=False,
        ttl_interval_seconds=0.2,
    )
    with runner:
        wait_for(lambda: "expired" not in keys(table) and "expired-now" not in keys(table))
        clock.advance(3600)  # now "later" is due too
        wait_for(lambda: "later" not in keys(table))
    assert keys(table) == {"no-ttl", "string-ttl", "six-years-ago"}
    assert keys(plain) == set(items)  # TTL not enabled on this table
