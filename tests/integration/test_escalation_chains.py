"""Escalation chains from the router to the state machine, on moto (issue 10 items 3–5): each
type's chain becomes one execution named after its notification, started now or by EventBridge
Scheduler when quiet hours end (no Wait state), and its cost in Step Functions transitions is
measured from the execution histories of moto's interpreter."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from herald.catalog import load_catalog
from herald.dispatch import START_EXECUTION_TARGET
from herald.messages import parse_channel_body
from herald.routing.decision import notification_id_for
from tests.integration.test_router_handler import (
    FakeContext,
    a_profile,
    add_users,
    envelope,
    notification,
)
from tests.support.sqs import sqs_event
from tests.support.stack import MotoStack, fresh_function_module

pytestmark = pytest.mark.integration


def a_router(monkeypatch: pytest.MonkeyPatch, **settings: str) -> Any:

    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return fresh_function_module("functions.router.app")


def route(router: Any, **detail: Any) -> None:
    assert router.lambda_handler(sqs_event(envelope(detail)), FakeContext()) == {"batchItemFailures": []}


def task_message(stack: MotoStack, queue: str, event_id: str, timeout: float = 30) -> dict[str, Any]:
    """The state machine's first-step message on `queue` (with its task token) for the notification
    of `event_id`: a stopped execution of an earlier test may still have put its own there."""
    wanted = notification_id_for(event_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for raw in stack.drain(queue):
            body = json.loads(raw["Body"])
            if "task_token" in body and body["message"]["notification_id"] == wanted:
                return body
        time.sleep(0.1)
    raise AssertionError(f"no task message on {queue}")


def answer(call: Any, attempts: int = 20) -> None:
    """A task answer as an app or sender makes it. Under load moto's interpreter was seen to refuse
    a token it had just put on the queue (InvalidToken, once): retried briefly. A token that stays
    invalid still fails the test."""
    for attempt in range(attempts):
        try:
            call()
            return
        except ClientError as error:
            if error.response["Error"]["Code"] != "InvalidToken" or attempt == attempts - 1:
                raise
            time.sleep(0.1)


def finished(stack: MotoStack, timeout: float = 30) -> dict[str, Any]:
    """The one execution once it has finished, with its history."""
    sfn = stack.client("stepfunctions")
    (execution,) = sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    arn = execution["executionArn"]
    deadline = time.monotonic() + timeout
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.1)
    described = sfn.describe_execution(executionArn=arn)
    history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return {**described, "transitions": sum(1 for e in history if e["type"].endswith("StateEntered"))}


def test_a_types_chain_is_one_execution_named_after_the_notification_with_ids_only(
    stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_users(stack, a_profile("42"))
    router = a_router(monkeypatch)

    route(router, event_id="drv-1", type="driver_arrived", user_id="42")

    [record] = notification(stack, "42")
    sfn = stack.client("stepfunctions")
    (execution,) = sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    assert execution["name"] == record["notification_id"]
    given = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert given["first"]["queue_url"] == stack.queue_urls["Push"] and given["first"]["wait_seconds"] == 5
    assert given["last"]["queue_url"] == stack.queue_urls["Sms"] and "wait_seconds" not in given["last"]
    assert given["last"]["message"]["after_escalation"] is True  # an earlier acknowledgement stops it
    text = json.dumps(given)
    for value in [*load_catalog().entry("driver_arrived").sample_data.values(), "+14155550100", "tok-42"]:
        assert value not in text  # ids, never the data or the person's addresses
    assert "push, then sms if not acknowledged within 5 s" in json.dumps(record["decision"])


def test_a_repeated_event_starts_no_second_execution(
    stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_users(stack, a_profile("42"))
    router = a_router(monkeypatch)

    route(router, event_id="pay-1", type="payment_receipt", user_id="42")
    route(router, event_id="pay-1", type="payment_receipt", user_id="42")

    executions = stack.client("stepfunctions").list_executions(stateMachineArn=stack.state_machine_arn)
    assert len(executions["executions"]) == 1


def test_in_quiet_hours_the_chain_is_started_by_a_schedule_at_their_end_not_by_a_wait_state(
    stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    quiet = {
        "start": (now - timedelta(hours=1)).strftime("%H:00"),
        "end": (now + timedelta(hours=3)).strftime("%H:00"),
    }
    add_users(stack, a_profile("42", quiet_hours=quiet))
    router = a_router(monkeypatch)

    route(router, event_id="pay-q", type="payment_receipt", user_id="42")

    sfn = stack.client("stepfunctions")
    assert sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"] == []
    scheduler = stack.client("scheduler")
    group = stack.env["SCHEDULE_GROUP"]
    [summary] = scheduler.list_schedules(GroupName=group)["Schedules"]
    schedule = scheduler.get_schedule(Name=summary["Name"], GroupName=group)
    [record] = notification(stack, "42")
    quiet_end = datetime.fromisoformat(record["plan"][0]["escalation"]["deliver_at"])
    assert schedule["ScheduleExpression"] == f"at({quiet_end.strftime('%Y-%m-%dT%H:%M:%S')})"
    assert schedule["Target"]["Arn"] == START_EXECUTION_TARGET.format(partition="aws")
    assert schedule["Target"]["RoleArn"] == stack.env["SCHEDULER_ROLE_ARN"]
    start = json.loads(schedule["Target"]["Input"])
    assert start["StateMachineArn"] == stack.state_machine_arn
    assert start["Name"] == record["notification_id"]
    assert "tok-42" not in start["Input"] and "user42@example.com" not in start["Input"]

    # WHEN the schedule fires (Scheduler makes the API call its input describes) THEN the chain runs
    sfn.start_execution(stateMachineArn=start["StateMachineArn"], name=start["Name"], input=start["Input"])
    body = task_message(stack, "Push", "pay-q")
    assert parse_channel_body(json.dumps(body)).notification_id == record["notification_id"]


@pytest.mark.parametrize(
    ("path", "fallback_delay", "transitions"),
    [("acknowledged", "60", 1), ("undeliverable", "60", 2), ("timeout", "1", 2)],
)
def test_step_functions_transitions_are_at_the_floor(
    stack: MotoStack, monkeypatch: pytest.MonkeyPatch, path: str, fallback_delay: str, transitions: int
) -> None:
    add_users(stack, a_profile("42"))
    router = a_router(monkeypatch, FALLBACK_DELAY_SECONDS=fallback_delay)
    route(router, event_id=f"pay-{path}", type="payment_receipt", user_id="42")
    sfn = stack.client("stepfunctions")

    first = task_message(stack, "Push", f"pay-{path}")
    if path == "acknowledged":
        answer(lambda: sfn.send_task_success(taskToken=first["task_token"], output="{}"))
    elif path == "undeliverable":
        answer(
            lambda: sfn.send_task_failure(
                taskToken=first["task_token"], error="Herald.Undeliverable", cause="no device"
            )
        )

    execution = finished(stack)
    assert execution["status"] == "SUCCEEDED"
    assert execution["transitions"] == transitions
    emails = [parse_channel_body(m["Body"]) for m in stack.drain("Email")]
    assert [m.notification_id for m in emails] == (
        [] if path == "acknowledged" else [first["message"]["notification_id"]]
    )


def test_the_fraud_chain_waits_for_the_sms_delivery_not_an_acknowledgement(
    stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_users(stack, a_profile("42"))
    router = a_router(monkeypatch)

    route(router, event_id="fraud-1", type="fraud_alert", user_id="42")

    body = task_message(stack, "Sms", "fraud-1")
    message = parse_channel_body(json.dumps(body))
    assert message.escalation and message.ends_when_delivered
    assert stack.drain("Push") == []
