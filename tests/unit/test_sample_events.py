"""events/: one sample event per function, valid for `sam local invoke -e` and for the handlers."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.utilities.data_classes import CloudFormationCustomResourceEvent
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model, EventBridgeModel

from herald.directory import DirectoryRecord
from herald.ingest import IngestRecord
from herald.messages import parse_channel_body
from herald.models import Channel
from herald.ses_feedback import SesFeedbackRecord
from tests.support.aws import REPO_ROOT, template

pytestmark = pytest.mark.unit

FUNCTIONS = {
    resource["Properties"]["CodeUri"].strip("/").split("/")[-1]: logical_id
    for logical_id, resource in template()["Resources"].items()
    if resource["Type"] == "AWS::Serverless::Function"
}


def test_every_function_has_a_sample_event() -> None:
    missing = [name for name in FUNCTIONS if not (REPO_ROOT / "events" / f"{name}.json").is_file()]

    assert missing == []


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_the_sample_event_is_what_the_function_consumes(name: str) -> None:
    event = json.loads((REPO_ROOT / "events" / f"{name}.json").read_text())
    if name in ("api", "operator"):  # JWT routes; the operator's carry the admin scope (decision 038)
        request = APIGatewayProxyEventV2Model.model_validate(event)
        routes = {
            f"{e['Properties']['Method']} {e['Properties']['Path']}"
            for e in template()["Resources"][FUNCTIONS[name]]["Properties"]["Events"].values()
        }
        assert request.routeKey in routes
        assert request.requestContext.authorizer.jwt.claims["sub"]
        if name == "operator":
            assert "herald/admin" in (request.requestContext.authorizer.jwt.scopes or [])
        return
    if name == "twilio_webhook":  # Twilio's signed POST on the HTTP API (no JWT), decision 035
        request = APIGatewayProxyEventV2Model.model_validate(event)
        routes = {
            f"{e['Properties']['Method']} {e['Properties']['Path']}"
            for e in template()["Resources"][FUNCTIONS[name]]["Properties"]["Events"].values()
        }
        assert request.routeKey in routes
        assert request.headers["x-twilio-signature"] and request.requestContext.authorizer is None
        return
    if name == "digest":  # a tick of its Schedule event (EventBridge), not SQS
        tick = EventBridgeModel.model_validate(event)
        assert (tick.source, tick.detail_type) == ("aws.events", "Scheduled Event")
        return
    if name == "schedules":  # CloudFormation's custom resource request, not SQS
        request = CloudFormationCustomResourceEvent(event)
        assert (request.request_type, request.logical_resource_id) == ("Create", "RecurringSchedules")
        assert request.response_url.startswith("https://")
        return

    assert event["Records"], "an SQS event with at least one record"
    for record in event["Records"]:
        assert record["eventSource"] == "aws:sqs"
        if name == "router":
            IngestRecord.model_validate(record)
        elif name == "directory":
            DirectoryRecord.model_validate(record)
        elif name == "feedback":
            SesFeedbackRecord.model_validate(record)
        else:
            message = parse_channel_body(record["body"])
            assert message.channel is Channel(name.removesuffix("_sender"))
