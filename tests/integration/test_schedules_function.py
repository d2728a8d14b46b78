"""The schedules function (decision 028) on moto, as CloudFormation calls it: a custom resource
request, answered by a PUT to the pre-signed ResponseURL (here a loopback capture). Create and
Update make the recurring group hold schedules.yaml's schedules and nothing else of the file's;
an operator's schedule survives every deploy; a bad file fails the deploy and changes nothing;
Delete removes the file's schedules."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from herald.catalog import load_catalog
from herald.schedules import CLI_OWNER_PREFIX, FILE_OWNER, SCHEDULED_TIME, ScheduleManager, parse_schedules
from local.custom_resources import ResponseCapture
from tests.support.aws import REPO_ROOT
from tests.support.lambda_context import FakeContext
from tests.support.stack import MotoStack, fresh_function_module

pytestmark = pytest.mark.integration

PROMO = {"headline": "Monday deals", "discount": "10%", "cta_url": "https://example.com/deals"}


def file_with(*names: str) -> str:
    return yaml.safe_dump(
        {
            "schedules": {
                name: {
                    "expression": "cron(0 9 ? * MON *)",
                    "timezone": "Europe/Lisbon",
                    "type": "marketing_promo",
                    "audience": {"topic": "deals"},
                    "data": PROMO,
                }
                for name in names
            }
        }
    )


@pytest.fixture
def capture() -> Iterator[ResponseCapture]:
    responses = ResponseCapture()
    yield responses
    responses.close()


@pytest.fixture
def function(stack: MotoStack) -> Any:
    return fresh_function_module("functions.schedules.app")


def deploy(
    function: Any, capture: ResponseCapture, request_type: str, text: str, monkeypatch: Any
) -> dict[str, Any]:
    monkeypatch.setattr(function, "packaged_schedules", lambda catalog: parse_schedules(text, catalog))
    request_id = str(uuid.uuid4())
    event = json.loads((REPO_ROOT / "events" / "schedules.json").read_text(encoding="utf-8"))
    event |= {
        "RequestType": request_type,
        "RequestId": request_id,
        "ResponseURL": f"{capture.url}/{request_id}",
    }

    function.lambda_handler(event, FakeContext("herald-schedules", 120, aws_request_id=request_id))
    answer = capture.wait(request_id, timeout=10)
    assert answer is not None, "no answer to CloudFormation"
    assert (answer["RequestId"], answer["LogicalResourceId"]) == (request_id, "RecurringSchedules")
    return answer


def schedules(stack: MotoStack) -> dict[str, dict[str, Any]]:
    env = stack.function_env("SchedulesFunction")
    manager = ScheduleManager(
        stack.client("scheduler"),
        group=env["RECURRING_SCHEDULE_GROUP"],
        bus_arn=env["HERALD_BUS_ARN"],
        role_arn=env["SCHEDULER_ROLE_ARN"],
    )
    return {s["Name"]: s for s in manager.list()}


def test_a_deploy_puts_the_files_schedules_on_the_bus_and_keeps_an_operators(
    stack: MotoStack, function: Any, capture: ResponseCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = stack.function_env("SchedulesFunction")
    created = deploy(function, capture, "Create", file_with("monday-deals", "friday-news"), monkeypatch)
    assert created["Status"] == "SUCCESS", created
    found = schedules(stack)
    assert set(found) == {"monday-deals", "friday-news"}
    monday = found["monday-deals"]
    assert (monday["ScheduleExpression"], monday["ScheduleExpressionTimezone"], monday["Description"]) == (
        "cron(0 9 ? * MON *)",
        "Europe/Lisbon",
        FILE_OWNER,
    )
    assert (monday["Target"]["Arn"], monday["Target"]["RoleArn"]) == (
        env["HERALD_BUS_ARN"],
        env["SCHEDULER_ROLE_ARN"],
    )
    assert monday["Target"]["EventBridgeParameters"] == {
        "DetailType": "NotificationRequested",
        "Source": "herald.schedule",
    }
    detail = json.loads(monday["Target"]["Input"])
    assert detail["event_id"] == f"sched-monday-deals-{SCHEDULED_TIME}"

    # an operator adds their own; the next deploy drops friday-news from the file
    operator = ScheduleManager(
        stack.client("scheduler"),
        group=env["RECURRING_SCHEDULE_GROUP"],
        bus_arn=env["HERALD_BUS_ARN"],
        role_arn=env["SCHEDULER_ROLE_ARN"],
    )
    [mine] = parse_schedules(file_with("ops-heartbeat"), load_catalog())
    assert operator.put(mine, f"{CLI_OWNER_PREFIX}ops") == "created"
    updated = deploy(function, capture, "Update", file_with("monday-deals"), monkeypatch)
    assert updated["Status"] == "SUCCESS", updated
    assert set(schedules(stack)) == {"monday-deals", "ops-heartbeat"}

    # a file the catalog refuses fails the deploy, and nothing changes
    bad = file_with("monday-deals").replace("marketing_promo", "no_such_type")
    failed = deploy(function, capture, "Update", bad, monkeypatch)
    assert failed["Status"] == "FAILED" and "no_such_type" in failed["Reason"]
    assert set(schedules(stack)) == {"monday-deals", "ops-heartbeat"}

    # the stack is deleted: the file's schedules go, the operator's is theirs to delete
    deleted = deploy(function, capture, "Delete", file_with("monday-deals"), monkeypatch)
    assert deleted["Status"] == "SUCCESS"
    assert set(schedules(stack)) == {"ops-heartbeat"}
