"""The local stack runs CloudFormation custom resources as CloudFormation does: the function gets
the Create request with a ResponseURL and must PUT its answer there; FAILED (or no answer) fails
the stack's start."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from local.custom_resources import CustomResourceFailed, run_custom_resources
from local.model import CustomResource, FunctionSpec, PhysicalResource, StackDescription

pytestmark = pytest.mark.integration


def a_stack() -> StackDescription:
    function = FunctionSpec(
        "SchedulesFunction", "functions/schedules/", "functions.schedules.app", "h", 60, 128, {}
    )
    arn = "arn:aws:lambda:us-east-1:123456789012:function:schedules"
    return StackDescription(
        region="us-east-1",
        aws_endpoint="",
        api_endpoint="",
        sandbox_endpoint="",
        parameters={},
        resources={
            "SchedulesFunction": PhysicalResource(
                "SchedulesFunction", "AWS::Lambda::Function", "fn", {"Arn": arn}
            )
        },
        functions={"SchedulesFunction": function},
        custom_resources={
            "RecurringSchedules": CustomResource(
                "RecurringSchedules",
                "Custom::RecurringSchedules",
                "SchedulesFunction",
                {"LayerVersion": "v1"},
            )
        },
    )


def answering(status: str, seen: list[dict[str, Any]]) -> Any:
    def invoke(function: str, event: dict[str, Any]) -> None:
        seen.append({"function": function, **event})
        body = json.dumps(
            {"Status": status, "Reason": "why", "RequestId": event["RequestId"], "Data": {"created": "a,b"}}
        ).encode()
        request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT")
        urllib.request.urlopen(request, timeout=5).read()

    return invoke


def test_a_custom_resource_is_created_with_cloudformations_request_and_its_answer_read() -> None:
    seen: list[dict[str, Any]] = []
    created = run_custom_resources(a_stack(), answering("SUCCESS", seen))
    assert created == {"RecurringSchedules": {"created": "a,b"}}
    [request] = seen
    assert (request["function"], request["RequestType"], request["LogicalResourceId"]) == (
        "SchedulesFunction",
        "Create",
        "RecurringSchedules",
    )
    assert request["ResourceProperties"]["LayerVersion"] == "v1"
    assert request["ResponseURL"].startswith("http://127.0.0.1:")


def test_a_failed_or_missing_answer_fails_the_start() -> None:
    with pytest.raises(CustomResourceFailed, match="why"):
        run_custom_resources(a_stack(), answering("FAILED", []))
    with pytest.raises(CustomResourceFailed, match="sent no response"):
        run_custom_resources(a_stack(), lambda function, event: None, timeout=0.5)
