"""The provisioner: template.yaml (through the SAM transform) into a moto server, described for the
runner and the HTTP API; plus the intrinsic functions it resolves the template with."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from local.intrinsics import (
    NO_VALUE,
    Context,
    IntrinsicError,
    evaluate_condition,
    pseudo_parameters,
    references,
    resolve,
    resource_order,
)
from local.model import PhysicalResource, StackDescription
from local.moto_server import MotoServer
from local.provision import (
    CREATORS,
    DELIBERATELY_NOT_EMULATED,
    PROVIDER_SECRETS,
    ProvisionError,
    UnsupportedResourceType,
    provision,
    unhandled_types,
)
from local.sandboxes import SandboxHost
from tests.integration.local.conftest import TEMPLATE
from tools.sam_translate import translate_template

pytestmark = pytest.mark.integration

API_ENDPOINT = "http://127.0.0.1:3999"


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    """The real template after the SAM transform (what the provisioner works from)."""
    return translate_template(TEMPLATE)


@pytest.fixture(scope="module")
def stack(aws: MotoServer, sandbox: SandboxHost) -> StackDescription:
    return provision(TEMPLATE, aws_endpoint=aws.url, sandbox=sandbox, api_endpoint=API_ENDPOINT)


def _of_type(cfn: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in cfn["Resources"].items() if r["Type"] == rtype}


def _receive(aws: MotoServer, url: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    sqs = aws.client("sqs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        if messages:
            for message in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            return messages
    return []


# -- coverage of the template ------------------------------------------------------------------


def test_every_resource_type_of_the_template_is_created_or_deliberately_not_emulated(
    cfn: dict[str, Any],
) -> None:
    assert unhandled_types(cfn) == {}, (
        "template.yaml has resource types local/provision.py neither creates nor lists in "
        "DELIBERATELY_NOT_EMULATED (with the reason)"
    )


def test_no_type_is_both_created_and_not_emulated() -> None:
    assert set(CREATORS) & set(DELIBERATELY_NOT_EMULATED) == set()
    assert all(reason.strip() for reason in DELIBERATELY_NOT_EMULATED.values())


def test_an_unknown_resource_type_fails_before_anything_is_created(tmp_path: Path, aws: MotoServer) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        "AWSTemplateFormatVersion: '2010-09-09'\n"
        "Transform: AWS::Serverless-2016-10-31\n"
        "Resources:\n"
        "  Queue: {Type: AWS::SQS::Queue, Properties: {QueueName: unknown-type-probe}}\n"
        "  Stream: {Type: AWS::Kinesis::Stream, Properties: {ShardCount: 1}}\n"
    )
    with pytest.raises(UnsupportedResourceType) as raised:
        provision(template, aws_endpoint=aws.url, stack_name="unknown-type")
    assert raised.value.resource_types == {"AWS::Kinesis::Stream": ["Stream"]}
    assert "AWS::Kinesis::Stream" in str(raised.value)
    assert not aws.client("sqs").list_queues(QueueNamePrefix="unknown-type-probe").get("QueueUrls")


def test_not_emulated_lists_exactly_the_resources_of_those_types_with_reasons(
    cfn: dict[str, Any], stack: StackDescription
) -> None:
    expected = {lid for lid, r in cfn["Resources"].items() if r["Type"] in DELIBERATELY_NOT_EMULATED}
    assert set(stack.not_emulated) == expected
    for lid, reason in stack.not_emulated.items():
        rtype = cfn["Resources"][lid]["Type"]
        assert reason == f"{rtype}: {DELIBERATELY_NOT_EMULATED[rtype]}"
        assert lid not in stack.resources


# -- DynamoDB ----------------------------------------------------------------------------------


def test_tables_have_the_template_keys_indexes_ttl_and_pitr(
    cfn: dict[str, Any], stack: StackDescription, aws: MotoServer
) -> None:
    ddb = aws.client("dynamodb")
    tables = _of_type(cfn, "AWS::DynamoDB::Table")
    assert len(tables) >= 6
    for lid, resource in tables.items():
        props = resource["Properties"]
        name = stack.ref(lid)
        table = ddb.describe_table(TableName=name)["Table"]
        assert table["TableArn"] == stack.attribute(lid, "Arn")
        assert table["KeySchema"] == props["KeySchema"], lid
        assert {(a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]} == {
            (a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]
        }, lid
        assert table["BillingModeSummary"]["BillingMode"] == props["BillingMode"]
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            assert {i["IndexName"]: i["KeySchema"] for i in table.get(key, [])} == {
                i["IndexName"]: i["KeySchema"] for i in props.get(key, []) if "IndexName" in i
            }, (lid, key)  # a conditional (Fn::If) index is off with the default parameters
        ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert ttl["TimeToLiveStatus"] == "ENABLED"
        assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]
        backups = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    assert stack.outputs["UsersTableName"] == stack.ref("UsersTable")


# -- SQS ---------------------------------------------------------------------------------------


def test_queues_have_the_template_attributes_and_redrive_to_their_dlq(
    cfn: dict[str, Any], stack: StackDescription, aws: MotoServer
) -> None:
    sqs = aws.client("sqs")
    queues = _of_type(cfn, "AWS::SQS::Queue")
    redriven = 0
    for lid, resource in queues.items():
        props = resource["Properties"]
        url = stack.ref(lid)
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["QueueArn"] == stack.attribute(lid, "Arn")
        assert url.endswith("/" + stack.attribute(lid, "QueueName"))
        assert len(stack.attribute(lid, "QueueName")) <= 80
        for key in ("VisibilityTimeout", "MessageRetentionPeriod"):
            if key in props:
                assert attributes[key] == str(props[key]), (lid, key)
        if "RedrivePolicy" in props:
            redriven += 1
            policy = json.loads(attributes["RedrivePolicy"])
            dlq = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            assert policy["deadLetterTargetArn"] == stack.attribute(dlq, "Arn"), lid
            assert int(policy["maxReceiveCount"]) == int(props["RedrivePolicy"]["maxReceiveCount"])
    assert redriven >= 7


def test_queue_policies_let_the_rules_send(stack: StackDescription, aws: MotoServer) -> None:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=stack.ref("IngestQueue"), AttributeNames=["Policy"]
    )["Attributes"]
    statement = json.loads(attributes["Policy"])["Statement"][0]
    assert statement["Resource"] == stack.attribute("IngestQueue", "Arn")
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == stack.attribute(
        "NotificationRequestedRule", "Arn"
    )


# -- EventBridge -------------------------------------------------------------------------------


def test_rules_target_the_right_queues(stack: StackDescription, aws: MotoServer) -> None:
    events = aws.client("events")
    bus = stack.attribute("HeraldBus", "Name")
    assert events.describe_event_bus(Name=bus)["Arn"] == stack.attribute("HeraldBus", "Arn")
    assert stack.outputs["HeraldBusName"] == bus

    rule = stack.attribute("NotificationRequestedRule", "Arn").rsplit("/", 1)[1]
    targets = events.list_targets_by_rule(Rule=rule, EventBusName=bus)["Targets"]
    assert [t["Arn"] for t in targets] == [stack.attribute("IngestQueue", "Arn")]
    pattern = json.loads(events.describe_rule(Name=rule, EventBusName=bus)["EventPattern"])
    assert pattern == {"detail-type": ["NotificationRequested"]}

    feedback_rule = stack.ref("SesFeedbackRule")
    targets = events.list_targets_by_rule(Rule=feedback_rule)["Targets"]
    assert [t["Arn"] for t in targets] == [stack.attribute("FeedbackQueue", "Arn")]


def test_a_notification_requested_event_on_the_bus_lands_in_the_ingest_queue(
    stack: StackDescription, aws: MotoServer
) -> None:
    detail = {"probe": "ingest", "at": time.time()}
    result = aws.client("events").put_events(
        Entries=[
            {
                "EventBusName": stack.outputs["HeraldBusName"],
                "Source": "test.producer",
                "DetailType": "NotificationRequested",
                "Detail": json.dumps(detail),
            },
            {
                "EventBusName": stack.outputs["HeraldBusName"],
                "Source": "test.producer",
                "DetailType": "SomethingElse",
                "Detail": json.dumps({"probe": "other"}),
            },
        ]
    )
    assert result["FailedEntryCount"] == 0
    messages = _receive(aws, stack.outputs["IngestQueueUrl"])
    bodies = [json.loads(m["Body"]) for m in messages]
    assert [b["detail"] for b in bodies] == [detail]
    assert bodies[0]["detail-type"] == "NotificationRequested"


def test_an_ses_event_on_the_default_bus_lands_in_the_feedback_queue(
    stack: StackDescription, aws: MotoServer
) -> None:
    detail = {"eventType": "Bounce", "mail": {"messageId": "probe"}}
    aws.client("events").put_events(
        Entries=[{"Source": "aws.ses", "DetailType": "Email Bounced", "Detail": json.dumps(detail)}]
    )
    messages = _receive(aws, stack.outputs["FeedbackQueueUrl"])
    assert [json.loads(m["Body"])["detail"] for m in messages] == [detail]
    assert _receive(aws, stack.outputs["IngestQueueUrl"], timeout=1) == []


# -- Step Functions, Scheduler -----------------------------------------------------------------


def test_the_state_machine_is_created_through_the_api_from_its_definition_file(
    stack: StackDescription, aws: MotoServer
) -> None:
    arn = stack.ref("EscalationStateMachine")
    assert stack.outputs["EscalationStateMachineArn"] == arn
    described = aws.client("stepfunctions").describe_state_machine(stateMachineArn=arn)
    assert described["name"] == stack.attribute("EscalationStateMachine", "Name")
    assert described["type"] == "STANDARD"
    assert described["roleArn"] == stack.attribute("EscalationStateMachineRole", "Arn")
    assert json.loads(described["definition"]) == json.loads(
        (TEMPLATE.parent / "statemachine" / "escalation.asl.json").read_text()
    )
    assert described["loggingConfiguration"]["level"] == "ALL"


def test_the_state_machine_executes_a_chain_whose_first_step_times_out(
    stack: StackDescription, aws: MotoServer
) -> None:
    """Step Functions executions are on, and the interpreter reaches the server (MOTO_PORT)."""
    sfn = aws.client("stepfunctions")
    execution = sfn.start_execution(
        stateMachineArn=stack.ref("EscalationStateMachine"),
        name=f"probe-{time.time_ns()}",
        input=json.dumps(
            {
                "notification_id": "n1",
                "user_id": "u1",
                "first": {
                    "queue_url": stack.ref("PushQueue"),
                    "message": {"channel": "push", "probe": True},
                    "wait_seconds": 1,
                },
                "last": {
                    "queue_url": stack.ref("EmailQueue"),
                    "message": {"channel": "email", "probe": True},
                },
            }
        ),
    )["executionArn"]
    (primary,) = _receive(aws, stack.ref("PushQueue"))
    body = json.loads(primary["Body"])
    assert body["message"] == {"channel": "push", "probe": True}
    assert body["task_token"]
    (fallback,) = _receive(aws, stack.ref("EmailQueue"), timeout=15)
    assert json.loads(fallback["Body"]) == {"channel": "email", "probe": True}
    deadline = time.monotonic() + 10
    while (
        sfn.describe_execution(executionArn=execution)["status"] == "RUNNING" and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert sfn.describe_execution(executionArn=execution)["status"] == "SUCCEEDED"


def test_moto_server_sets_moto_port_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTO_PORT", "1234")
    with MotoServer(port=0) as second:
        assert os.environ["MOTO_PORT"] == str(second.port)
        assert second.client("sts").get_caller_identity()["Account"]
    assert os.environ["MOTO_PORT"] == "1234"


def test_moto_server_on_a_busy_port_fails_fast(aws: MotoServer) -> None:
    started = time.monotonic()
    with pytest.raises(OSError, match=str(aws.port)):
        MotoServer(port=aws.port).start()
    assert time.monotonic() - started < 5


def test_the_schedule_group_exists(stack: StackDescription, aws: MotoServer) -> None:
    group = aws.client("scheduler").get_schedule_group(Name=stack.ref("ScheduleGroup"))
    assert group["Arn"] == stack.attribute("ScheduleGroup", "Arn")
    assert stack.ref("ScheduleGroup") == "herald-dev"


# -- secrets, SES, SNS, alarms, logs, IAM --------------------------------------------------------


def test_provider_secrets_hold_the_sandbox_credentials(
    stack: StackDescription, sandbox: SandboxHost, aws: MotoServer
) -> None:
    sm = aws.client("secretsmanager")
    expected = sandbox.credentials.secrets()
    for lid, key in PROVIDER_SECRETS.items():
        secret = sm.get_secret_value(SecretId=stack.ref(lid))
        value = json.loads(secret["SecretString"])
        assert {k: v for k, v in value.items() if k != "webhook_public_key"} == expected[key], lid
        assert secret["Name"] == f"herald/dev/{key}"
    sendgrid = json.loads(sm.get_secret_value(SecretId=stack.ref("SendGridSecret"))["SecretString"])
    assert sendgrid["webhook_public_key"] == sandbox.credentials.sendgrid.event_webhook_public_key


def test_generated_secrets_get_a_random_value_of_the_requested_shape(
    stack: StackDescription, aws: MotoServer
) -> None:
    value = aws.client("secretsmanager").get_secret_value(SecretId=stack.ref("UnsubscribeSigningSecret"))[
        "SecretString"
    ]
    assert len(value) == 64
    assert value.isalnum()


def test_ses_configuration_set_exists_and_the_from_address_is_verified(
    stack: StackDescription, aws: MotoServer
) -> None:
    name = stack.ref("EmailConfigurationSet")
    assert (
        aws.client("sesv2").get_configuration_set(ConfigurationSetName=name)["ConfigurationSetName"] == name
    )
    sender = stack.parameters["EmailFromAddress"]
    assert sender in aws.client("ses").list_identities()["Identities"]
    identities = aws.client("sesv2").list_email_identities()["EmailIdentities"]
    assert {"IdentityName": sender, "VerificationStatus": "SUCCESS"}.items() <= next(
        i for i in identities if i["IdentityName"] == sender
    ).items()
    sent = aws.client("ses").send_email(
        Source=sender,
        Destination={"ToAddresses": ["success@simulator.amazonses.com"]},
        Message={"Subject": {"Data": "probe"}, "Body": {"Text": {"Data": "probe"}}},
    )
    assert sent["MessageId"]


def test_alarms_watch_every_dlq_and_notify_the_topic(
    cfn: dict[str, Any], stack: StackDescription, aws: MotoServer
) -> None:
    alarms = _of_type(cfn, "AWS::CloudWatch::Alarm")
    described = {
        a["AlarmName"]: a
        for a in aws.client("cloudwatch").describe_alarms(AlarmNames=[stack.ref(lid) for lid in alarms])[
            "MetricAlarms"
        ]
    }
    assert len(described) == len(alarms)
    topic = stack.ref("AlarmTopic")
    assert (
        aws.client("sns").get_topic_attributes(TopicArn=topic)["Attributes"]["DisplayName"]
        == "Herald dev alarms"
    )
    for lid, resource in alarms.items():
        alarm = described[stack.ref(lid)]
        watched = resource["Properties"]["Dimensions"][0]["Value"]
        if "Fn::GetAtt" in watched:  # a dead-letter queue's depth
            dlq = watched["Fn::GetAtt"][0]
            assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": stack.attribute(dlq, "QueueName")}]
        else:  # a scheduled function's errors (nothing else would notice a failing run)
            assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": stack.ref(watched["Ref"])}]
        assert alarm["AlarmActions"] == [topic]
        assert alarm["Threshold"] == 0
    # AlarmEmail is empty: the conditional subscription is not part of the stack.
    assert "AlarmEmailSubscription" not in stack.resources
    assert aws.client("sns").list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


def test_log_groups_have_their_retention(
    cfn: dict[str, Any], stack: StackDescription, aws: MotoServer
) -> None:
    logs = aws.client("logs")
    for lid in _of_type(cfn, "AWS::Logs::LogGroup"):
        name = stack.ref(lid)
        (group,) = [
            g
            for g in logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
            if g["logGroupName"] == name
        ]
        assert group["retentionInDays"] == 14, lid
    assert stack.ref("RouterFunctionLogGroup") == "/aws/lambda/herald-local-router"


def test_roles_carry_their_inline_policies(stack: StackDescription, aws: MotoServer) -> None:
    iam = aws.client("iam")
    role = stack.ref("RouterFunctionRole")
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    documents = [iam.get_role_policy(RoleName=role, PolicyName=n)["PolicyDocument"] for n in names]
    resources = json.dumps(documents)
    assert stack.attribute("UsersTable", "Arn") in resources
    assert stack.attribute("SchedulerRole", "Arn") in resources
    trust = iam.get_role(RoleName=stack.ref("SchedulerRole"))["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        stack.attribute("ScheduleGroup", "Arn"),
        stack.attribute("RecurringScheduleGroup", "Arn"),
    ]


# -- functions and the API ---------------------------------------------------------------------


def test_router_function_spec_has_its_queue_source_and_a_resolved_environment(
    cfn: dict[str, Any], stack: StackDescription, aws: MotoServer
) -> None:
    router = stack.functions["RouterFunction"]
    assert router.module == "functions.router.app"
    assert router.handler == "lambda_handler"
    assert router.code_uri == "functions/router/"
    props = cfn["Resources"]["RouterFunction"]["Properties"]
    assert router.timeout_seconds == props["Timeout"]
    assert router.memory_mb == props["MemorySize"]
    broadcasts, source = router.queue_sources  # in logical-id order
    assert (broadcasts.queue_logical_id, broadcasts.maximum_concurrency) == ("BroadcastQueue", 2)
    assert source.queue_logical_id == "IngestQueue"
    assert source.queue_url == stack.ref("IngestQueue")
    assert source.queue_arn == stack.attribute("IngestQueue", "Arn")
    assert source.batch_size == 100  # decision 030
    assert source.maximum_batching_window_seconds == 1
    assert source.report_batch_item_failures is True
    assert source.maximum_concurrency == 50

    env = router.environment
    assert env["INGEST_QUEUE_URL"] == stack.ref("IngestQueue")
    assert env["USERS_TABLE"] == stack.ref("UsersTable")
    assert env["ESCALATION_STATE_MACHINE_ARN"] == stack.ref("EscalationStateMachine")
    assert env["SCHEDULE_GROUP"] == "herald-dev"
    assert env["LOG_LEVEL"] == "DEBUG"
    assert env["FALLBACK_DELAY_SECONDS"] == "300"
    assert env["AWS_ENDPOINT_URL"] == aws.url
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == stack.ref("RouterFunction")
    assert env["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]


def test_every_function_environment_is_fully_resolved(cfn: dict[str, Any], stack: StackDescription) -> None:
    functions = _of_type(cfn, "AWS::Lambda::Function")
    assert set(stack.functions) == set(functions)
    for lid, spec in stack.functions.items():
        declared = functions[lid]["Properties"]["Environment"]["Variables"]
        assert set(declared) <= set(spec.environment), lid
        for key, value in spec.environment.items():
            assert isinstance(value, str), (lid, key, value)
            assert "${" not in value and "Fn::" not in value and "'Ref'" not in value, (lid, key, value)
        # something invokes it: a queue, a route, a schedule, or CloudFormation (a custom resource)
        custom = {c.function for c in stack.custom_resources.values()}
        assert spec.queue_sources or spec.http_routes or spec.schedules or lid in custom, lid
        assert all(q.report_batch_item_failures for q in spec.queue_sources), lid


def test_the_api_url_is_the_local_api(stack: StackDescription, sandbox: SandboxHost) -> None:
    assert stack.outputs["ApiUrl"] == API_ENDPOINT
    assert stack.functions["EmailSenderFunction"].environment["API_BASE_URL"] == API_ENDPOINT
    assert "execute-api" not in stack.to_json()
    authorizer = stack.authorizers["HeraldJwt"]
    assert authorizer.issuer == sandbox.credentials.jwt.issuer
    assert authorizer.audience == [sandbox.credentials.jwt.audience]
    assert stack.parameters["JwtIssuer"] == sandbox.credentials.jwt.issuer


def test_the_http_api_exists_in_moto(stack: StackDescription, aws: MotoServer) -> None:
    api = aws.client("apigatewayv2").get_api(ApiId=stack.ref("HttpApi"))
    assert api["ProtocolType"] == "HTTP"
    assert stack.attribute("HttpApi", "ApiEndpoint") == API_ENDPOINT


def test_the_description_round_trips_through_json(stack: StackDescription, sandbox: SandboxHost) -> None:
    assert StackDescription.from_json(stack.to_json()) == stack
    assert stack.sandbox_endpoint == sandbox.url
    assert stack.api_endpoint == API_ENDPOINT
    assert set(stack.outputs) == set(translate_template(TEMPLATE)["Outputs"])


# -- routes, schedules, conditions and errors on small templates ---------------------------------

API_TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  JwtIssuer: {Type: String, Default: "https://auth.example.com/", AllowedPattern: "^https://.+"}
  JwtAudience: {Type: CommaDelimitedList, Default: herald}
  AlarmEmail: {Type: String, Default: ""}
  Stage: {Type: String, Default: dev, AllowedValues: [dev, prod]}
Conditions:
  HasAlarmEmail: !Not [!Equals [!Ref AlarmEmail, ""]]
Globals:
  Function:
    Runtime: python3.13
    Handler: app.lambda_handler
Resources:
  Topic:
    Type: AWS::SNS::Topic
  Subscription:
    Type: AWS::SNS::Subscription
    Condition: HasAlarmEmail
    Properties: {TopicArn: !Ref Topic, Protocol: email, Endpoint: !Ref AlarmEmail}
  HttpApi:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: HeraldJwt
        Authorizers:
          HeraldJwt:
            IdentitySource: $request.header.Authorization
            JwtConfiguration: {issuer: !Ref JwtIssuer, audience: !Ref JwtAudience}
  ApiFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/api/
      Environment:
        Variables:
          TOPIC: !Ref Topic
      Events:
        Me:
          Type: HttpApi
          Properties: {ApiId: !Ref HttpApi, Method: ANY, Path: "/v1/me/{proxy+}"}
        Ack:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Method: POST
            Path: "/v1/me/notifications/{id}/ack"
            Auth: {AuthorizationScopes: [herald/ack]}
        Hook:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Method: POST
            Path: "/v1/webhooks/{provider}"
            Auth: {Authorizer: NONE}
        Tick:
          Type: Schedule
          Properties: {Schedule: rate(1 hour), Input: '{"a": 1}'}
        Tock:
          Type: ScheduleV2
          Properties: {ScheduleExpression: "cron(0 8 * * ? *)"}
        Disabled:
          Type: Schedule
          Properties: {Schedule: rate(1 day), Enabled: false}
  ClientFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/client/
      Handler: handlers/main.handle
      Environment:
        Variables:
          SELF_URL: !Sub https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/v1
"""


@pytest.fixture(scope="module")
def api_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "template.yaml"
    path.write_text(API_TEMPLATE)
    return path


def test_http_api_events_become_routes_and_jwt_authorizers(
    api_template: Path, aws: MotoServer, sandbox: SandboxHost
) -> None:
    stack = provision(
        api_template, aws_endpoint=aws.url, sandbox=sandbox, api_endpoint=API_ENDPOINT, stack_name="routes"
    )
    spec = stack.functions["ApiFunction"]
    assert spec.module == "functions.api.app"
    routes = {(r.method, r.path): r for r in spec.http_routes}
    assert set(routes) == {
        ("ANY", "/v1/me/{proxy+}"),
        ("POST", "/v1/me/notifications/{id}/ack"),
        ("POST", "/v1/webhooks/{provider}"),
    }
    assert routes[("ANY", "/v1/me/{proxy+}")].authorizer == "HeraldJwt"
    assert routes[("POST", "/v1/me/notifications/{id}/ack")].authorization_scopes == ["herald/ack"]
    assert routes[("POST", "/v1/webhooks/{provider}")].authorizer is None
    assert {r.api_logical_id for r in spec.http_routes} == {"HttpApi"}
    authorizer = stack.authorizers["HeraldJwt"]
    assert (authorizer.issuer, authorizer.audience) == (
        sandbox.credentials.jwt.issuer,
        [sandbox.credentials.jwt.audience],
    )
    client = stack.functions["ClientFunction"]
    assert client.environment["SELF_URL"] == f"{API_ENDPOINT}/v1"
    assert (client.module, client.handler) == ("functions.client.handlers.main", "handle")
    assert client.http_routes == [] and client.queue_sources == [] and client.schedules == []
    assert spec.environment["TOPIC"] == stack.ref("Topic")
    # Lambda permissions and the stage are SAM by-products the local stack does not need.
    not_emulated_types = {reason.split(": ", 1)[0] for reason in stack.not_emulated.values()}
    assert not_emulated_types == {"AWS::Lambda::Permission", "AWS::ApiGatewayV2::Stage"}

    schedules = {s.name: s for s in spec.schedules}
    assert set(schedules) == {"ApiFunctionTick", "ApiFunctionTock"}  # the disabled one is not fired
    assert (schedules["ApiFunctionTick"].expression, schedules["ApiFunctionTick"].input) == (
        "rate(1 hour)",
        '{"a": 1}',
    )
    assert schedules["ApiFunctionTock"].expression == "cron(0 8 * * ? *)"
    # A Lambda-target schedule is the runner's to fire: not created in moto's Scheduler.
    assert aws.client("scheduler").list_schedules()["Schedules"] == []
    assert "Subscription" not in stack.resources


def test_explicit_parameters_win_and_conditions_follow_them(
    api_template: Path, aws: MotoServer, sandbox: SandboxHost
) -> None:
    stack = provision(
        api_template,
        aws_endpoint=aws.url,
        sandbox=sandbox,
        parameters={"AlarmEmail": "ops@example.com", "JwtAudience": "a,b", "JwtIssuer": "https://x.example/"},
        stack_name="conditions",
    )
    subscription = stack.ref("Subscription")
    topic = aws.client("sns").get_subscription_attributes(SubscriptionArn=subscription)["Attributes"]
    assert topic["TopicArn"] == stack.ref("Topic")
    assert topic["Endpoint"] == "ops@example.com"
    assert stack.authorizers["HeraldJwt"].audience == ["a", "b"]
    assert stack.authorizers["HeraldJwt"].issuer == "https://x.example/"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"Stage": "qa"}, "not one of"),
        ({"JwtIssuer": "http://insecure.example/"}, "does not match"),
        ({"Nope": "x"}, "unknown template parameter"),
    ],
)
def test_parameters_are_validated_like_cloudformation(
    api_template: Path, aws: MotoServer, parameters: dict[str, str], message: str
) -> None:
    with pytest.raises(ProvisionError, match=message):
        provision(api_template, aws_endpoint=aws.url, parameters=parameters, stack_name="invalid")


def test_a_rule_targeting_a_function_by_pattern_is_refused(tmp_path: Path, aws: MotoServer) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        "AWSTemplateFormatVersion: '2010-09-09'\n"
        "Transform: AWS::Serverless-2016-10-31\n"
        "Resources:\n"
        "  Fn:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties:\n"
        "      CodeUri: functions/x/\n"
        "      Handler: app.lambda_handler\n"
        "      Runtime: python3.13\n"
        "      Events:\n"
        "        Pattern: {Type: EventBridgeRule, Properties: {Pattern: {source: [x]}}}\n"
    )
    with pytest.raises(ProvisionError, match="not an SQS queue"):
        provision(template, aws_endpoint=aws.url, stack_name="lambda-target")


# -- intrinsics --------------------------------------------------------------------------------


@pytest.fixture
def ctx() -> Context:
    return Context(
        parameters={"Stage": "dev", "Audience": ["a", "b"], "Email": "noreply@example.com", "Empty": ""},
        pseudo=pseudo_parameters("us-east-1", "123456789012", "herald-local"),
        resources={
            "Queue": PhysicalResource(
                "Queue", "AWS::SQS::Queue", "http://q/url", {"Arn": "arn:q", "QueueName": "q"}
            ),
            "Bus": PhysicalResource("Bus", "AWS::Events::EventBus", "herald-dev", {"Name": "herald-dev"}),
        },
        conditions={
            "IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
            "IsDev": {"Fn::Not": [{"Condition": "IsProd"}]},
            "HasEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Empty"}, ""]}]},
            "DevAndEmail": {"Fn::And": [{"Condition": "IsDev"}, {"Fn::Equals": ["1", 1]}]},
            "ProdOrEmail": {"Fn::Or": [{"Condition": "IsProd"}, {"Condition": "HasEmail"}]},
            "Loop": {"Fn::Not": [{"Condition": "Loop"}]},
        },
        mappings={"StageConfig": {"dev": {"LogLevel": "DEBUG", "Days": 14}}},
    )


def test_ref_resolves_parameters_pseudo_parameters_and_resources(ctx: Context) -> None:
    assert resolve({"Ref": "Stage"}, ctx) == "dev"
    assert resolve({"Ref": "Audience"}, ctx) == ["a", "b"]
    assert resolve({"Ref": "AWS::Region"}, ctx) == "us-east-1"
    assert resolve({"Ref": "AWS::AccountId"}, ctx) == "123456789012"
    assert resolve({"Ref": "AWS::Partition"}, ctx) == "aws"
    assert resolve({"Ref": "AWS::StackName"}, ctx) == "herald-local"
    assert resolve({"Ref": "AWS::URLSuffix"}, ctx) == "amazonaws.com"
    assert resolve({"Ref": "Queue"}, ctx) == "http://q/url"
    with pytest.raises(IntrinsicError, match="Missing"):
        resolve({"Ref": "Missing"}, ctx)


def test_no_value_removes_keys_and_list_items(ctx: Context) -> None:
    value = {"A": {"Ref": "AWS::NoValue"}, "B": [1, {"Ref": "AWS::NoValue"}, 2], "C": "c"}
    assert resolve(value, ctx) == {"B": [1, 2], "C": "c"}
    assert resolve({"Ref": "AWS::NoValue"}, ctx) is NO_VALUE


def test_get_att_in_both_forms(ctx: Context) -> None:
    assert resolve({"Fn::GetAtt": ["Queue", "Arn"]}, ctx) == "arn:q"
    assert resolve({"Fn::GetAtt": "Queue.QueueName"}, ctx) == "q"
    with pytest.raises(IntrinsicError, match="no attribute 'StreamArn'"):
        resolve({"Fn::GetAtt": ["Queue", "StreamArn"]}, ctx)


def test_sub_in_both_forms(ctx: Context) -> None:
    assert resolve({"Fn::Sub": "herald-${Stage}"}, ctx) == "herald-dev"
    assert (
        resolve(
            {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${Queue.QueueName}"}, ctx
        )
        == "arn:aws:sqs:us-east-1:123456789012:q"
    )
    assert resolve({"Fn::Sub": "${Queue} ${!Literal} ${ Stage }"}, ctx) == "http://q/url ${Literal} dev"
    assert (
        resolve(
            {
                "Fn::Sub": [
                    "${Domain}/${Stage}",
                    {"Domain": {"Fn::Select": [1, {"Fn::Split": ["@", {"Ref": "Email"}]}]}},
                ]
            },
            ctx,
        )
        == "example.com/dev"
    )
    with pytest.raises(IntrinsicError):
        resolve({"Fn::Sub": "${Audience}"}, ctx)


def test_join_select_split(ctx: Context) -> None:
    assert resolve({"Fn::Join": ["-", ["herald", {"Ref": "Stage"}]]}, ctx) == "herald-dev"
    assert resolve({"Fn::Join": [",", {"Ref": "Audience"}]}, ctx) == "a,b"
    assert resolve({"Fn::Select": ["1", {"Ref": "Audience"}]}, ctx) == "b"
    assert resolve({"Fn::Split": [",", "x,y"]}, ctx) == ["x", "y"]
    with pytest.raises(IntrinsicError, match="out of range"):
        resolve({"Fn::Select": [5, ["a"]]}, ctx)


def test_conditions_and_if(ctx: Context) -> None:
    assert ctx.condition("IsProd") is False
    assert ctx.condition("IsDev") is True
    assert ctx.condition("HasEmail") is False
    assert ctx.condition("DevAndEmail") is True
    assert ctx.condition("ProdOrEmail") is False
    assert evaluate_condition({"Fn::Equals": [{"Ref": "Audience"}, ["a", "b"]]}, ctx) is True
    assert resolve({"Fn::If": ["IsProd", True, False]}, ctx) is False
    assert resolve({"A": {"Fn::If": ["IsDev", {"Ref": "AWS::NoValue"}, "x"]}}, ctx) == {}
    with pytest.raises(IntrinsicError, match="itself"):
        ctx.condition("Loop")
    with pytest.raises(IntrinsicError, match="unknown condition"):
        resolve({"Fn::If": ["Nope", 1, 2]}, ctx)


def test_find_in_map_and_to_json_string(ctx: Context) -> None:
    assert resolve({"Fn::FindInMap": ["StageConfig", {"Ref": "Stage"}, "LogLevel"]}, ctx) == "DEBUG"
    assert resolve({"Fn::FindInMap": ["StageConfig", "dev", "Days"]}, ctx) == 14
    assert resolve({"Fn::FindInMap": ["StageConfig", "prod", "Days", {"DefaultValue": 7}]}, ctx) == 7
    with pytest.raises(IntrinsicError, match="prod"):
        resolve({"Fn::FindInMap": ["StageConfig", "prod", "Days"]}, ctx)
    assert resolve({"Fn::ToJsonString": {"bus": {"Ref": "Bus"}, "n": 1}}, ctx) == '{"bus":"herald-dev","n":1}'


def test_references_and_resource_order() -> None:
    resources = {
        "Rule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Targets": [{"Arn": {"Fn::GetAtt": ["Queue", "Arn"]}}],
                "Bus": {"Fn::Sub": "${Bus.Name}"},
            },
        },
        "Queue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"RedrivePolicy": {"dlq": {"Fn::GetAtt": "Dlq.Arn"}}},
        },
        "Dlq": {"Type": "AWS::SQS::Queue"},
        "Bus": {
            "Type": "AWS::Events::EventBus",
            "DependsOn": "Dlq",
            "Properties": {"Name": {"Ref": "Stage"}},
        },
    }
    assert references(resources["Rule"]["Properties"]) == {"Queue", "Bus"}
    assert references({"Fn::Sub": ["${X}-${Y}-${!Z}", {"X": {"Ref": "P"}}]}) == {"Y", "P"}
    order = resource_order(resources)
    assert order.index("Dlq") < order.index("Queue") < order.index("Rule")
    assert order.index("Dlq") < order.index("Bus") < order.index("Rule")
    resources["Dlq"]["Properties"] = {"X": {"Ref": "Rule"}}
    with pytest.raises(IntrinsicError, match="circular"):
        resource_order(resources)
