"""Schedules: the CloudFormation custom resource that deploys `schedules.yaml` (decision 028). On
create and update (each new layer version) it makes the recurring group hold the file's schedules;
on delete it removes them. Thin: the work is herald.schedules; the answer goes to CloudFormation's
pre-signed ResponseURL, as the custom resource protocol requires (a bad file fails the deploy).

Everything that can fail — configuration included — runs inside the answer's `try`: a function
that dies without answering would leave the stack waiting for the resource's ServiceTimeout."""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import CloudFormationCustomResourceEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.catalog import load_catalog
from herald.schedules import ScheduleManager, packaged_schedules
from herald.settings import SchedulesSettings, load

logger = Logger()
MAX_REASON = 1000  # CloudFormation refuses a response body over 4096 bytes


def respond(event: CloudFormationCustomResourceEvent, status: str, reason: str, data: dict[str, str]) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:MAX_REASON],
            "PhysicalResourceId": event.physical_resource_id or event.logical_resource_id,
            "StackId": event.stack_id,
            "RequestId": event.request_id,
            "LogicalResourceId": event.logical_resource_id,
            "Data": data,
        }
    ).encode()
    request = urllib.request.Request(
        event.response_url, data=body, method="PUT", headers={"Content-Type": ""}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


def apply(event: CloudFormationCustomResourceEvent) -> dict[str, str]:
    settings = load(SchedulesSettings)
    manager = ScheduleManager(
        boto3.client("scheduler"), group=settings.group, bus_arn=settings.bus_arn, role_arn=settings.role_arn
    )
    requested = (event.resource_properties or {}).get("LayerVersion")
    running = os.environ.get("HERALD_LAYER_VERSION")
    if requested and running and requested != running:
        # an update's rollback asks for the previous layer's file: say which one was applied
        logger.warning("the request names another layer than the one running", extra={"requested": requested})
    if event.request_type == "Delete":
        return {"deleted": str(len(manager.remove_file_schedules()))}
    report = manager.sync(packaged_schedules(load_catalog()))
    return {name: str(len(names)) for name, names in report.items()}


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=CloudFormationCustomResourceEvent)
def lambda_handler(event: CloudFormationCustomResourceEvent, context: LambdaContext) -> dict[str, Any]:
    data: dict[str, str] = {}
    try:
        data = apply(event)
        status, reason = "SUCCESS", "schedules.yaml deployed"
    except Exception as error:  # the deploy must hear of it, whatever it was
        logger.exception("schedules not deployed")
        status, reason = "FAILED", f"{type(error).__name__}: {error}"
    logger.info(
        "custom resource answered",
        extra={"request_type": event.request_type, "status": status, "report": data},
    )
    try:
        respond(event, status, reason, data)
    except Exception:  # nothing else can tell CloudFormation: its ServiceTimeout will
        logger.exception("the answer did not reach CloudFormation")
    return {"status": status, **data}
