"""Provision template.yaml into a moto server and describe the result for the runner and the API.

    description = provision("template.yaml", aws_endpoint="http://127.0.0.1:4566", sandbox=host)

`aws_endpoint=None` provisions into moto's in-process `mock_aws` instead of a server (the
integration tests do): the same resources, and the functions' environment without
`AWS_ENDPOINT_URL` or credentials (boto3 finds the mock by itself).

The template goes through the SAM transform offline (`tools.sam_translate`), then every resource
of the translated template is handled in dependency order (Ref / Fn::GetAtt / Fn::Sub /
DependsOn):

- AWS resources moto emulates are created through its API (not moto's CloudFormation, which drops
  HttpApi, SES configuration sets, queue policies and state machine definitions);
- functions, their SQS event source mappings, schedules and HTTP API routes become `FunctionSpec`s,
  `QueueSource`s, `ScheduleSource`s, `HttpRoute`s and `JwtAuthorizer`s for the runner and the
  local HTTP API;
- resource types listed in `DELIBERATELY_NOT_EMULATED` are recorded in
  `StackDescription.not_emulated` with the reason;
- any other resource type raises `UnsupportedResourceType` before anything is created.

Local specifics: the provider secrets hold the sandbox credentials (`SandboxCredentials.secrets()`),
the JwtIssuer / JwtAudience parameters become the sandbox issuer's, the From address is verified in
SES, and the HTTP API's `https://<api-id>.execute-api.<region>.amazonaws.com` URL is rewritten to
the local API endpoint wherever it appears in resolved values.

`python -m local.provision` provisions into a server (or a throwaway one) and prints the JSON.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import re
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from local.intrinsics import (
    NO_VALUE,
    Context,
    IntrinsicError,
    pseudo_parameters,
    resolve,
    resource_order,
    scalar_string,
)
from local.model import (
    CustomResource,
    FunctionSpec,
    HttpRoute,
    JwtAuthorizer,
    PhysicalResource,
    QueueSource,
    ScheduleSource,
    StackDescription,
)
from local.moto_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, aws_client, client_config
from local.sandboxes.credentials import SandboxCredentials
from tools.cfn_yaml import load_template
from tools.sam_translate import PLACEHOLDER_BUCKET, translate_template

logger = logging.getLogger("local.provision")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_STACK_NAME = "herald-local"
DEFAULT_API_ENDPOINT = "http://127.0.0.1:3000"

# Provider secrets (logical id) -> key of `SandboxCredentials.secrets()` whose JSON they hold.
PROVIDER_SECRETS: dict[str, str] = {
    "SendGridSecret": "sendgrid",
    "TwilioSecret": "twilio",
    "FcmSecret": "fcm",
    "PusherSecret": "pusher",
}

# Settings only the local stack gives its functions (template.yaml never sets them): the webhook
# sender may call the sandbox receivers on loopback, over http too (decision 009).
LOCAL_ONLY_ENVIRONMENT = {"WEBHOOK_ALLOW_LOOPBACK": "true"}

# Parameters that name the SES sender identity: verified in SES (v1 and v2) after provisioning.
SES_SENDER_PARAMETERS = ("EmailFromAddress",)

# Parameters the provisioner sets from the sandbox JWT issuer (unless the caller overrides them);
# their AllowedPattern is not enforced (the local issuer is http://127.0.0.1, not https).
JWT_ISSUER_PARAMETER = "JwtIssuer"
JWT_AUDIENCE_PARAMETER = "JwtAudience"

# Resource types deliberately not emulated, with the reason (shown in `not_emulated`).
DELIBERATELY_NOT_EMULATED: dict[str, str] = {
    "AWS::Lambda::LayerVersion": (
        "the runner imports the layer's package from the working tree (layers/*/ on sys.path); "
        "nothing to publish"
    ),
    "AWS::Lambda::Permission": (
        "resource policies on functions are not enforced locally: only the runner and the local "
        "HTTP API invoke functions"
    ),
    "AWS::Lambda::Version": "the runner always invokes the code in the working tree ($LATEST)",
    "AWS::Lambda::Alias": "the runner always invokes the code in the working tree ($LATEST)",
    "AWS::ApiGatewayV2::Stage": (
        "the local HTTP API serves the API's routes as the single $default stage; access logs and "
        "throttling are not emulated"
    ),
    "AWS::SES::ConfigurationSetEventDestination": (
        "moto stores no EventBridge event destination (SES v1 has no such destination type, moto's "
        "SES v2 no event destinations) and never publishes SES events: the runner emits SES's "
        "events on the default bus itself"
    ),
}

_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_LIST_PARAMETER = re.compile(r"^(CommaDelimitedList|List<.+>)$")
_FUNCTION_IN_URI = re.compile(r"/functions/(.+?)/invocations$")


def _custom(rtype: str) -> bool:
    return rtype.startswith("Custom::") or rtype == "AWS::CloudFormation::CustomResource"


class ProvisionError(RuntimeError):
    """The template asks for something the local stack cannot provide faithfully."""


@functools.cache
def in_process_session() -> boto3.session.Session:
    """One boto3 session for every in-process provisioning: its loader keeps the service models
    between runs (`mock_aws` resets boto3's default session each time it starts)."""
    return boto3.session.Session(
        region_name=REGION, aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY
    )


@functools.cache
def _in_process_client(service: str, region: str) -> Any:
    """The provisioner's client of `service` for `mock_aws` (moto intercepts a client made before
    the mock starts, and each mock starts empty: reusing them across runs is safe)."""
    return in_process_session().client(service, region_name=region, config=client_config())


def _require_mock_aws() -> None:
    """Refuse in-process provisioning outside `mock_aws`: boto3 would aim at real AWS."""
    from moto.core.models import MockAWS

    if getattr(MockAWS, "_nested_count", 0) < 1:
        raise ProvisionError("aws_endpoint=None provisions into moto's mock_aws: start it first")


class UnsupportedResourceType(ProvisionError):
    """A resource type the provisioner neither creates nor lists in DELIBERATELY_NOT_EMULATED."""

    def __init__(self, unsupported: Mapping[str, list[str]]) -> None:
        self.resource_types = dict(unsupported)
        details = "; ".join(f"{rtype} ({', '.join(ids)})" for rtype, ids in sorted(unsupported.items()))
        super().__init__(
            f"unsupported resource type(s): {details}. Teach local/provision.py to create them, or add "
            "them to DELIBERATELY_NOT_EMULATED with the reason."
        )


# -- parameters --------------------------------------------------------------------------------


def _parameter_string(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(scalar_string(v, "parameter") for v in value)
    return scalar_string(value, "parameter")


def resolve_parameters(
    declared: Mapping[str, Any],
    overrides: Mapping[str, Any],
    *,
    unchecked_patterns: frozenset[str] = frozenset(),
) -> tuple[dict[str, str], dict[str, Any]]:
    """Validate parameter values like CloudFormation; returns (name -> string as given,
    name -> value `Ref` returns: str, or list[str] for list types)."""
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise ProvisionError(f"unknown template parameter(s): {', '.join(unknown)}")
    raw: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        ptype = str(spec.get("Type", "String"))
        if name in overrides:
            text = _parameter_string(overrides[name])
        elif "Default" in spec:
            text = _parameter_string(spec["Default"])
        else:
            raise ProvisionError(f"parameter {name} has no Default: pass a value")
        if ptype.startswith("AWS::SSM::Parameter"):
            raise ProvisionError(f"parameter {name}: SSM parameter types are not supported locally")
        is_list = bool(_LIST_PARAMETER.match(ptype))
        items = [item.strip() for item in text.split(",")] if is_list else [text]
        for item in items:
            _check_parameter(name, spec, ptype, item, check_pattern=name not in unchecked_patterns)
        raw[name] = text
        values[name] = items if is_list else text
    return raw, values


def _check_parameter(
    name: str, spec: Mapping[str, Any], ptype: str, value: str, *, check_pattern: bool
) -> None:
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [_parameter_string(a) for a in allowed]:
        raise ProvisionError(f"parameter {name}={value!r} is not one of {allowed}")
    if ptype in ("Number", "List<Number>"):
        try:
            number = float(value)
        except ValueError:
            raise ProvisionError(f"parameter {name}={value!r} is not a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise ProvisionError(f"parameter {name}={value} is below MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise ProvisionError(f"parameter {name}={value} is above MaxValue {spec['MaxValue']}")
        return
    if check_pattern and "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
        raise ProvisionError(f"parameter {name}={value!r} does not match {spec['AllowedPattern']}")
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        raise ProvisionError(f"parameter {name} is shorter than MinLength {spec['MinLength']}")
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        raise ProvisionError(f"parameter {name} is longer than MaxLength {spec['MaxLength']}")


# -- sandbox -----------------------------------------------------------------------------------


def sandbox_settings(sandbox: Any) -> tuple[dict[str, Any], tuple[str, str] | None, str]:
    """(provider secrets by key, (JWT issuer, audience) or None, sandbox base URL) of a
    `SandboxHost`, `SandboxCredentials` or a plain secrets dict ({"sendgrid": {...}, ...})."""
    if sandbox is None:
        return {}, None, ""
    credentials = getattr(sandbox, "credentials", None)
    if isinstance(credentials, SandboxCredentials):
        sandbox = credentials
    if isinstance(sandbox, SandboxCredentials):
        secrets = {key: dict(value) for key, value in sandbox.secrets().items()}
        # template.yaml documents the SendGrid secret's event webhook verification key.
        secrets.setdefault("sendgrid", {}).setdefault(
            "webhook_public_key", sandbox.sendgrid.event_webhook_public_key
        )
        return secrets, (sandbox.jwt.issuer, sandbox.jwt.audience), sandbox.base_url
    if isinstance(sandbox, Mapping):
        return {str(k): v for k, v in sandbox.items()}, None, ""
    raise TypeError(f"sandbox must be a SandboxHost, SandboxCredentials or a secrets dict, not {sandbox!r}")


# -- names -------------------------------------------------------------------------------------


def physical_name(stack_name: str, logical_id: str, max_length: int = 64, suffix: str = "") -> str:
    """`<stack>-<LogicalId><suffix>`, shortened with a hash when longer than `max_length`."""
    name = f"{stack_name}-{logical_id}"
    if len(name) + len(suffix) <= max_length:
        return name + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return name[: max_length - len(suffix) - 9] + "-" + digest + suffix


def _name_from_arn(value: str, marker: str) -> str:
    return value.split(marker, 1)[1] if value.startswith("arn:") and marker in value else value


def _bool_string(value: Any) -> str:
    return scalar_string(value, "attribute").lower() if isinstance(value, bool) else str(value)


def _pick(props: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: props[key] for key in keys if key in props}


def _tags_list(tags: Any) -> list[dict[str, str]]:
    if isinstance(tags, dict):
        return [{"Key": str(k), "Value": str(v)} for k, v in tags.items()]
    return [{"Key": str(t["Key"]), "Value": str(t["Value"])} for t in tags or []]


# -- the provisioner ---------------------------------------------------------------------------


class Provisioner:
    """Creates the resources of one translated (plain CloudFormation) template in moto."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        aws_endpoint: str | None,
        parameters: Mapping[str, str],
        parameter_values: Mapping[str, Any],
        secrets: Mapping[str, Any] | None = None,
        api_endpoint: str = DEFAULT_API_ENDPOINT,
        sandbox_endpoint: str = "",
        stack_name: str = DEFAULT_STACK_NAME,
        region: str = REGION,
    ) -> None:
        self.template = template
        if aws_endpoint is None:
            _require_mock_aws()
        # "" = moto in this process (mock_aws); otherwise a moto server's URL.
        self.aws_endpoint = (aws_endpoint or "").rstrip("/")
        self.api_endpoint = api_endpoint.rstrip("/")
        self.stack_name = stack_name
        self.region = region
        self.secrets = dict(secrets or {})
        self._clients: dict[str, Any] = {}
        self.account_id = self.client("sts").get_caller_identity()["Account"]
        self.pseudo = pseudo_parameters(region, self.account_id, stack_name)
        # Every handled resource, not-emulated placeholders included (Ref must resolve to them).
        self.resources: dict[str, PhysicalResource] = {}
        self.ctx = Context(
            parameters=dict(parameter_values),
            pseudo=self.pseudo,
            resources=self.resources,
            conditions=template.get("Conditions", {}) or {},
            mappings=template.get("Mappings", {}) or {},
        )
        self.description = StackDescription(
            region=region,
            aws_endpoint=self.aws_endpoint,
            api_endpoint=self.api_endpoint,
            sandbox_endpoint=sandbox_endpoint,
            parameters=dict(parameters),
        )
        self._url_rewrites: dict[str, str] = {}
        self._functions_by_ref: dict[str, str] = {}  # function name / ARN -> logical id
        self._queues_by_arn: dict[str, str] = {}  # queue ARN -> logical id

    # -- plumbing ------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = (
                aws_client(service, self.aws_endpoint, region=self.region)
                if self.aws_endpoint
                else _in_process_client(service, self.region)
            )
        return self._clients[service]

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        partition = self.pseudo["AWS::Partition"]
        return (
            f"arn:{partition}:{service}:{self.region if region else ''}:"
            f"{self.account_id if account else ''}:{resource}"
        )

    def resolve(self, value: Any) -> Any:
        """Resolve intrinsics, then point the HTTP API's execute-api URLs at the local API."""
        return self._rewrite_urls(resolve(value, self.ctx))

    def _rewrite_urls(self, value: Any) -> Any:
        if not self._url_rewrites:
            return value
        if isinstance(value, str):
            for remote, local in self._url_rewrites.items():
                value = value.replace(remote, local)
            return value
        if isinstance(value, dict):
            return {key: self._rewrite_urls(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._rewrite_urls(item) for item in value]
        return value

    def _add(self, logical_id: str, rtype: str, physical_id: str, **attributes: Any) -> PhysicalResource:
        resource = PhysicalResource(
            logical_id=logical_id,
            type=rtype,
            physical_id=physical_id,
            attributes={k: _bool_string(v) for k, v in attributes.items() if v is not None},
        )
        self.resources[logical_id] = resource
        self.description.resources[logical_id] = resource
        return resource

    def record_custom_resource(self, logical_id: str, props: dict[str, Any]) -> None:
        """A `Custom::*` resource: its function runs once the stack's functions are up
        (local.stack.run_custom_resources, CloudFormation's request and response protocol)."""
        function = self._function(props.get("ServiceToken", ""), f"{logical_id} ServiceToken")
        rtype = str(self.template["Resources"][logical_id]["Type"])
        properties = {k: v for k, v in props.items() if k != "ServiceToken"}
        self.description.custom_resources[logical_id] = CustomResource(
            logical_id, rtype, function.logical_id, properties
        )
        self._add(logical_id, rtype, physical_name(self.stack_name, logical_id))

    def _function(self, reference: str, where: str) -> FunctionSpec:
        reference = str(reference)
        logical_id = self._functions_by_ref.get(reference)
        if logical_id is None and reference.startswith("arn:"):
            # arn:aws:lambda:region:account:function:name[:qualifier]
            parts = reference.split(":")
            logical_id = self._functions_by_ref.get(":".join(parts[:7]))
        if logical_id is None:
            logical_id = self._functions_by_ref.get(reference.split(":", 1)[0])
        if logical_id is None:
            raise ProvisionError(f"{where}: {reference!r} is not a function of this template")
        return self.description.functions[logical_id]

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> StackDescription:
        resources: Mapping[str, Any] = self.template.get("Resources", {})
        unsupported: dict[str, list[str]] = {}
        for logical_id, resource in resources.items():
            rtype = resource.get("Type", "")
            if rtype not in CREATORS and rtype not in DELIBERATELY_NOT_EMULATED and not _custom(rtype):
                unsupported.setdefault(rtype, []).append(logical_id)
        if unsupported:
            raise UnsupportedResourceType(unsupported)
        try:
            order = resource_order(resources)
        except IntrinsicError as error:
            raise ProvisionError(str(error)) from error

        for logical_id in order:
            resource = resources[logical_id]
            rtype = resource["Type"]
            condition = resource.get("Condition")
            if condition is not None and not self.ctx.condition(condition):
                logger.debug("skip %s: condition %s is false", logical_id, condition)
                continue
            if rtype in DELIBERATELY_NOT_EMULATED:
                self._not_emulated(logical_id, rtype, resource)
                continue
            try:
                props = self.resolve(resource.get("Properties", {}) or {})
            except IntrinsicError as error:
                raise ProvisionError(f"{logical_id} ({rtype}): {error}") from error
            logger.debug("create %s (%s)", logical_id, rtype)
            try:
                (Provisioner.record_custom_resource if _custom(rtype) else CREATORS[rtype])(
                    self, logical_id, props
                )
            except ClientError as error:
                raise ProvisionError(f"{logical_id} ({rtype}): moto refused it: {error}") from error

        self._verify_ses_identities()
        self._outputs()
        return self.description

    def _not_emulated(self, logical_id: str, rtype: str, resource: Mapping[str, Any]) -> None:
        self.description.not_emulated[logical_id] = f"{rtype}: {DELIBERATELY_NOT_EMULATED[rtype]}"
        physical_id = physical_name(self.stack_name, logical_id)
        if rtype == "AWS::Lambda::LayerVersion":
            name = resolve(resource.get("Properties", {}).get("LayerName", physical_id), self.ctx)
            physical_id = self.arn("lambda", f"layer:{name}:1")
        elif rtype == "AWS::ApiGatewayV2::Stage":
            physical_id = str(resolve(resource.get("Properties", {}).get("StageName", "$default"), self.ctx))
        # Only Ref resolves to a placeholder (not listed in the description's resources).
        self.resources[logical_id] = PhysicalResource(logical_id, rtype, physical_id)

    def _verify_ses_identities(self) -> None:
        for name in SES_SENDER_PARAMETERS:
            address = self.description.parameters.get(name, "")
            if not address:
                continue
            self.client("ses").verify_email_identity(EmailAddress=address)
            try:
                self.client("sesv2").create_email_identity(EmailIdentity=address)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "AlreadyExistsException":
                    raise

    def _outputs(self) -> None:
        for name, output in (self.template.get("Outputs") or {}).items():
            condition = output.get("Condition")
            if condition is not None and not self.ctx.condition(condition):
                continue
            try:
                value = self.resolve(output["Value"])
            except IntrinsicError as error:
                raise ProvisionError(f"output {name}: {error}") from error
            if value is NO_VALUE:
                continue
            self.description.outputs[name] = (
                ",".join(scalar_string(v, name) for v in value)
                if isinstance(value, list)
                else scalar_string(value, f"output {name}")
            )

    # -- DynamoDB ------------------------------------------------------------------------------

    def create_table(self, logical_id: str, props: dict[str, Any]) -> None:
        ddb = self.client("dynamodb")
        name = props.get("TableName") or physical_name(self.stack_name, logical_id, 255)
        billing = props.get("BillingMode", "PROVISIONED")
        kwargs: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": billing,
        }
        if billing == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = props.get(
                "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
            )
        index_keys = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput")
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(key):
                indexes = [_pick(index, index_keys) for index in props[key]]
                if billing == "PAY_PER_REQUEST" or key == "LocalSecondaryIndexes":
                    for index in indexes:
                        index.pop("ProvisionedThroughput", None)
                kwargs[key] = indexes
        if "StreamSpecification" in props:
            kwargs["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": props["StreamSpecification"]["StreamViewType"],
            }
        sse = props.get("SSESpecification")
        if sse:
            kwargs["SSESpecification"] = {
                "Enabled": bool(sse.get("SSEEnabled", False)),
                **({"SSEType": sse["SSEType"]} if "SSEType" in sse else {}),
                **({"KMSMasterKeyId": sse["KMSMasterKeyId"]} if "KMSMasterKeyId" in sse else {}),
            }
        kwargs.update(_pick(props, ("TableClass", "DeletionProtectionEnabled")))
        if props.get("Tags"):
            kwargs["Tags"] = _tags_list(props["Tags"])
        table = ddb.create_table(**kwargs)["TableDescription"]

        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        pitr = props.get("PointInTimeRecoverySpecification")
        if pitr and pitr.get("PointInTimeRecoveryEnabled"):
            ddb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        self._add(
            logical_id,
            "AWS::DynamoDB::Table",
            name,
            Arn=table["TableArn"],
            StreamArn=table.get("LatestStreamArn"),
        )

    # -- SQS -----------------------------------------------------------------------------------

    _QUEUE_ATTRIBUTES = (
        "ContentBasedDeduplication",
        "DeduplicationScope",
        "DelaySeconds",
        "FifoQueue",
        "FifoThroughputLimit",
        "KmsDataKeyReusePeriodSeconds",
        "KmsMasterKeyId",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds",
        "SqsManagedSseEnabled",
        "VisibilityTimeout",
    )

    def create_queue(self, logical_id: str, props: dict[str, Any]) -> None:
        sqs = self.client("sqs")
        fifo = str(props.get("FifoQueue", "false")).lower() == "true"
        name = props.get("QueueName") or physical_name(
            self.stack_name, logical_id, 80, ".fifo" if fifo else ""
        )
        attributes = {key: _bool_string(props[key]) for key in self._QUEUE_ATTRIBUTES if key in props}
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if key in props:
                value = props[key]
                attributes[key] = value if isinstance(value, str) else json.dumps(value)
        kwargs: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
        if props.get("Tags"):
            kwargs["tags"] = {t["Key"]: str(t["Value"]) for t in _tags_list(props["Tags"])}
        url = sqs.create_queue(**kwargs)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self._queues_by_arn[arn] = logical_id
        self._add(logical_id, "AWS::SQS::Queue", url, Arn=arn, QueueName=name, QueueUrl=url)

    def create_queue_policy(self, logical_id: str, props: dict[str, Any]) -> None:
        sqs = self.client("sqs")
        document = props["PolicyDocument"]
        policy = document if isinstance(document, str) else json.dumps(document)
        for url in props["Queues"]:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": policy})
        self._add(logical_id, "AWS::SQS::QueuePolicy", physical_name(self.stack_name, logical_id))

    # -- EventBridge ---------------------------------------------------------------------------

    def create_event_bus(self, logical_id: str, props: dict[str, Any]) -> None:
        events = self.client("events")
        name = props["Name"]
        if name == "default":
            arn = self.arn("events", "event-bus/default")
        else:
            kwargs = {"Name": name, **_pick(props, ("EventSourceName", "Description"))}
            if props.get("Tags"):
                kwargs["Tags"] = _tags_list(props["Tags"])
            arn = events.create_event_bus(**kwargs)["EventBusArn"]
        if props.get("Policy"):
            policy = props["Policy"]
            events.put_permission(
                EventBusName=name, Policy=policy if isinstance(policy, str) else json.dumps(policy)
            )
        self._add(logical_id, "AWS::Events::EventBus", name, Arn=arn, Name=name)

    _TARGET_KEYS = (
        "Id",
        "Arn",
        "Input",
        "InputPath",
        "InputTransformer",
        "SqsParameters",
        "RetryPolicy",
        "DeadLetterConfig",
        "RoleArn",
    )

    def create_rule(self, logical_id: str, props: dict[str, Any]) -> None:
        events = self.client("events")
        name = props.get("Name") or physical_name(self.stack_name, logical_id)
        bus = _name_from_arn(str(props.get("EventBusName") or "default"), "event-bus/")
        state = props.get("State", "ENABLED")
        kwargs: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": state}
        pattern = props.get("EventPattern")
        if pattern is not None:
            kwargs["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        kwargs.update(_pick(props, ("ScheduleExpression", "Description", "RoleArn")))
        arn = events.put_rule(**kwargs)["RuleArn"]

        queue_targets = []
        for target in props.get("Targets", []):
            target_arn = str(target["Arn"])
            if target_arn.startswith(f"arn:{self.pseudo['AWS::Partition']}:sqs:"):
                queue_targets.append(_pick(target, self._TARGET_KEYS))
            elif ":lambda:" in target_arn and "ScheduleExpression" in props:
                if "InputPath" in target or "InputTransformer" in target:
                    raise ProvisionError(
                        f"{logical_id}: schedule targets with InputPath / InputTransformer are not "
                        "supported locally (use Input)"
                    )
                if state == "ENABLED":
                    self._function(target_arn, logical_id).schedules.append(
                        ScheduleSource(
                            name=logical_id, expression=props["ScheduleExpression"], input=target.get("Input")
                        )
                    )
            else:
                raise ProvisionError(
                    f"{logical_id}: target {target_arn} is not an SQS queue. moto delivers rule events "
                    "only to SQS targets (Lambda, SNS and Step Functions targets break put_events): route "
                    "every rule to a queue (DESIGN.md §10)"
                )
        if queue_targets:
            result = events.put_targets(Rule=name, EventBusName=bus, Targets=queue_targets)
            if result.get("FailedEntryCount"):
                raise ProvisionError(f"{logical_id}: put_targets failed: {result['FailedEntries']}")
        physical_id = name if bus == "default" else f"{bus}|{name}"
        self._add(logical_id, "AWS::Events::Rule", physical_id, Arn=arn)

    # -- Step Functions ------------------------------------------------------------------------

    def create_state_machine(self, logical_id: str, props: dict[str, Any]) -> None:
        sfn = self.client("stepfunctions")
        name = props.get("StateMachineName") or physical_name(self.stack_name, logical_id, 80)
        if "DefinitionString" in props:
            definition = props["DefinitionString"]
        elif "Definition" in props:
            definition = json.dumps(props["Definition"])
        else:
            raise ProvisionError(
                f"{logical_id}: no inline definition (DefinitionS3Location is not supported locally)"
            )
        for key, value in (props.get("DefinitionSubstitutions") or {}).items():
            definition = definition.replace("${" + key + "}", scalar_string(value, f"substitution {key}"))
        try:
            json.loads(definition)
        except ValueError as error:
            raise ProvisionError(f"{logical_id}: the definition is not valid JSON: {error}") from None
        kwargs: dict[str, Any] = {
            "name": name,
            "definition": definition,
            "roleArn": props["RoleArn"],
            "type": props.get("StateMachineType", "STANDARD"),
        }
        logging_config = props.get("LoggingConfiguration")
        if logging_config:
            kwargs["loggingConfiguration"] = {
                "level": logging_config.get("Level", "OFF"),
                "includeExecutionData": bool(logging_config.get("IncludeExecutionData", False)),
                "destinations": [
                    {"cloudWatchLogsLogGroup": {"logGroupArn": d["CloudWatchLogsLogGroup"]["LogGroupArn"]}}
                    for d in logging_config.get("Destinations", [])
                ],
            }
        if "TracingConfiguration" in props:
            kwargs["tracingConfiguration"] = {
                "enabled": bool(props["TracingConfiguration"].get("Enabled", False))
            }
        if props.get("Tags"):
            kwargs["tags"] = [{"key": t["Key"], "value": t["Value"]} for t in _tags_list(props["Tags"])]
        arn = sfn.create_state_machine(**kwargs)["stateMachineArn"]
        self._add(logical_id, "AWS::StepFunctions::StateMachine", arn, Arn=arn, Name=name)

    # -- EventBridge Scheduler -----------------------------------------------------------------

    def create_schedule_group(self, logical_id: str, props: dict[str, Any]) -> None:
        name = props.get("Name") or physical_name(self.stack_name, logical_id)
        kwargs: dict[str, Any] = {"Name": name}
        if props.get("Tags"):
            kwargs["Tags"] = _tags_list(props["Tags"])
        arn = self.client("scheduler").create_schedule_group(**kwargs)["ScheduleGroupArn"]
        self._add(logical_id, "AWS::Scheduler::ScheduleGroup", name, Arn=arn)

    def create_schedule(self, logical_id: str, props: dict[str, Any]) -> None:
        name = props.get("Name") or physical_name(self.stack_name, logical_id)
        group = props.get("GroupName", "default")
        target = props["Target"]
        state = props.get("State", "ENABLED")
        arn = self.arn("scheduler", f"schedule/{group}/{name}")
        if ":lambda:" in str(target["Arn"]):
            # The runner fires it (moto's Scheduler never fires): not created in moto, so the
            # runner's one-time-schedule delivery never sees it.
            timezone = props.get("ScheduleExpressionTimezone", "UTC")
            if timezone not in ("UTC", "Etc/UTC"):
                raise ProvisionError(f"{logical_id}: ScheduleExpressionTimezone {timezone} is not supported")
            if state == "ENABLED":
                self._function(target["Arn"], logical_id).schedules.append(
                    ScheduleSource(
                        name=logical_id, expression=props["ScheduleExpression"], input=target.get("Input")
                    )
                )
        else:
            kwargs: dict[str, Any] = {
                "Name": name,
                "GroupName": group,
                "ScheduleExpression": props["ScheduleExpression"],
                "FlexibleTimeWindow": props.get("FlexibleTimeWindow", {"Mode": "OFF"}),
                "Target": target,
                "State": state,
                **_pick(
                    props,
                    ("ScheduleExpressionTimezone", "Description", "StartDate", "EndDate", "KmsKeyArn"),
                ),
            }
            arn = self.client("scheduler").create_schedule(**kwargs)["ScheduleArn"]
        self._add(logical_id, "AWS::Scheduler::Schedule", name, Arn=arn)

    # -- Secrets Manager -----------------------------------------------------------------------

    def create_secret(self, logical_id: str, props: dict[str, Any]) -> None:
        sm = self.client("secretsmanager")
        name = props.get("Name") or physical_name(self.stack_name, logical_id, 512)
        kwargs: dict[str, Any] = {"Name": name, **_pick(props, ("Description", "KmsKeyId"))}
        if props.get("Tags"):
            kwargs["Tags"] = _tags_list(props["Tags"])
        provider = PROVIDER_SECRETS.get(logical_id)
        if provider is not None and provider in self.secrets:
            value = self.secrets[provider]
            kwargs["SecretString"] = value if isinstance(value, str) else json.dumps(value)
        elif "SecretString" in props:
            kwargs["SecretString"] = props["SecretString"]
        elif "GenerateSecretString" in props:
            kwargs["SecretString"] = self._generate_secret(props["GenerateSecretString"])
        arn = sm.create_secret(**kwargs)["ARN"]
        self._add(logical_id, "AWS::SecretsManager::Secret", arn, Id=arn, Arn=arn, Name=name)

    def _generate_secret(self, spec: Mapping[str, Any]) -> str:
        options = _pick(
            spec,
            (
                "PasswordLength",
                "ExcludeCharacters",
                "ExcludeNumbers",
                "ExcludePunctuation",
                "ExcludeUppercase",
                "ExcludeLowercase",
                "IncludeSpace",
                "RequireEachIncludedType",
            ),
        )
        if "PasswordLength" in options:
            options["PasswordLength"] = int(options["PasswordLength"])
        password = self.client("secretsmanager").get_random_password(**options)["RandomPassword"]
        if "SecretStringTemplate" in spec:
            document = json.loads(spec["SecretStringTemplate"])
            document[spec.get("GenerateStringKey", "password")] = password
            return json.dumps(document)
        return password

    # -- SES -----------------------------------------------------------------------------------

    def create_configuration_set(self, logical_id: str, props: dict[str, Any]) -> None:
        name = props.get("Name") or physical_name(self.stack_name, logical_id)
        options = _pick(
            props,
            (
                "TrackingOptions",
                "DeliveryOptions",
                "ReputationOptions",
                "SendingOptions",
                "SuppressionOptions",
                "VdmOptions",
            ),
        )
        self.client("sesv2").create_configuration_set(ConfigurationSetName=name, **options)
        self._add(logical_id, "AWS::SES::ConfigurationSet", name)

    # -- SNS -----------------------------------------------------------------------------------

    def create_topic(self, logical_id: str, props: dict[str, Any]) -> None:
        sns = self.client("sns")
        fifo = str(props.get("FifoTopic", "false")).lower() == "true"
        suffix = ".fifo" if fifo else ""
        name = props.get("TopicName") or physical_name(self.stack_name, logical_id, 256, suffix)
        attributes = {
            key: _bool_string(props[key])
            for key in ("DisplayName", "KmsMasterKeyId", "FifoTopic", "ContentBasedDeduplication")
            if key in props
        }
        kwargs: dict[str, Any] = {"Name": name, "Attributes": attributes}
        if props.get("Tags"):
            kwargs["Tags"] = _tags_list(props["Tags"])
        arn = sns.create_topic(**kwargs)["TopicArn"]
        for subscription in props.get("Subscription", []):
            sns.subscribe(TopicArn=arn, Protocol=subscription["Protocol"], Endpoint=subscription["Endpoint"])
        self._add(logical_id, "AWS::SNS::Topic", arn, TopicArn=arn, TopicName=name)

    def create_subscription(self, logical_id: str, props: dict[str, Any]) -> None:
        attributes = {}
        for key in ("FilterPolicy", "RedrivePolicy", "DeliveryPolicy"):
            if key in props:
                value = props[key]
                attributes[key] = value if isinstance(value, str) else json.dumps(value)
        for key in ("RawMessageDelivery", "FilterPolicyScope", "SubscriptionRoleArn"):
            if key in props:
                attributes[key] = _bool_string(props[key])
        arn = self.client("sns").subscribe(
            TopicArn=props["TopicArn"],
            Protocol=props["Protocol"],
            Endpoint=props.get("Endpoint", ""),
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        self._add(logical_id, "AWS::SNS::Subscription", arn, Arn=arn)

    # -- CloudWatch / Logs ---------------------------------------------------------------------

    _ALARM_KEYS = (
        "ActionsEnabled",
        "AlarmActions",
        "AlarmDescription",
        "ComparisonOperator",
        "DatapointsToAlarm",
        "Dimensions",
        "EvaluateLowSampleCountPercentile",
        "EvaluationPeriods",
        "ExtendedStatistic",
        "InsufficientDataActions",
        "MetricName",
        "Metrics",
        "Namespace",
        "OKActions",
        "Period",
        "Statistic",
        "Threshold",
        "ThresholdMetricId",
        "TreatMissingData",
        "Unit",
    )

    def create_alarm(self, logical_id: str, props: dict[str, Any]) -> None:
        name = props.get("AlarmName") or physical_name(self.stack_name, logical_id, 255)
        kwargs: dict[str, Any] = {"AlarmName": name, **_pick(props, self._ALARM_KEYS)}
        for key in ("EvaluationPeriods", "Period", "DatapointsToAlarm"):
            if key in kwargs:
                kwargs[key] = int(kwargs[key])
        if "Threshold" in kwargs:
            kwargs["Threshold"] = float(kwargs["Threshold"])
        if props.get("Tags"):
            kwargs["Tags"] = _tags_list(props["Tags"])
        self.client("cloudwatch").put_metric_alarm(**kwargs)
        self._add(logical_id, "AWS::CloudWatch::Alarm", name, Arn=self.arn("cloudwatch", f"alarm:{name}"))

    def create_log_group(self, logical_id: str, props: dict[str, Any]) -> None:
        logs = self.client("logs")
        name = props.get("LogGroupName") or physical_name(self.stack_name, logical_id, 512)
        kwargs: dict[str, Any] = {"logGroupName": name}
        if props.get("Tags"):
            kwargs["tags"] = {t["Key"]: t["Value"] for t in _tags_list(props["Tags"])}
        logs.create_log_group(**kwargs)
        if "RetentionInDays" in props:
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
        self._add(logical_id, "AWS::Logs::LogGroup", name, Arn=self.arn("logs", f"log-group:{name}:*"))

    # -- IAM -----------------------------------------------------------------------------------

    def create_role(self, logical_id: str, props: dict[str, Any]) -> None:
        iam = self.client("iam")
        name = props.get("RoleName") or physical_name(self.stack_name, logical_id, 64)
        document = props["AssumeRolePolicyDocument"]
        kwargs: dict[str, Any] = {
            "RoleName": name,
            "AssumeRolePolicyDocument": document if isinstance(document, str) else json.dumps(document),
            **_pick(props, ("Path", "Description", "MaxSessionDuration", "PermissionsBoundary")),
        }
        if props.get("Tags"):
            kwargs["Tags"] = _tags_list(props["Tags"])
        role = iam.create_role(**kwargs)["Role"]
        for policy in props.get("Policies", []):
            body = policy["PolicyDocument"]
            if isinstance(body, str):
                body = json.loads(body)
            # IAM takes a document without Version (SAM's policy templates have none); moto
            # insists on one.
            body = {"Version": "2012-10-17", **body}
            iam.put_role_policy(
                RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(body)
            )
        for policy_arn in props.get("ManagedPolicyArns", []):
            try:
                iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)
            except ClientError as error:
                # moto does not load AWS managed policies by default: nothing to attach.
                if error.response.get("Error", {}).get("Code") != "NoSuchEntity":
                    raise
                logger.debug("%s: managed policy %s unknown to moto, not attached", logical_id, policy_arn)
        self._add(logical_id, "AWS::IAM::Role", name, Arn=role["Arn"], RoleId=role["RoleId"])

    # -- Lambda --------------------------------------------------------------------------------

    def create_function(self, logical_id: str, props: dict[str, Any]) -> None:
        name = props.get("FunctionName") or physical_name(self.stack_name, logical_id, 64)
        arn = self.arn("lambda", f"function:{name}")
        code = props.get("Code") or {}
        if code.get("S3Bucket") != PLACEHOLDER_BUCKET or not code.get("S3Key"):
            raise ProvisionError(
                f"{logical_id}: only functions with a local CodeUri can run locally (got Code {code!r})"
            )
        code_dir = "" if code["S3Key"] == "root" else str(code["S3Key"]).strip("/")
        handler = str(props.get("Handler", ""))
        module_file, _, attribute = handler.rpartition(".")
        if not module_file or not attribute:
            raise ProvisionError(f"{logical_id}: Handler {handler!r} is not 'module.function'")
        module = ".".join(part for part in (*code_dir.split("/"), *module_file.split("/")) if part)

        environment: dict[str, str] = {}
        for key, value in ((props.get("Environment") or {}).get("Variables") or {}).items():
            if isinstance(value, dict | list):
                raise ProvisionError(f"{logical_id}: environment variable {key} resolved to {value!r}")
            environment[key] = scalar_string(value, f"{logical_id} environment {key}")
        memory = int(props.get("MemorySize", 128))
        log_group = (props.get("LoggingConfig") or {}).get("LogGroup") or f"/aws/lambda/{name}"
        if self.aws_endpoint:
            environment.update(
                {
                    "AWS_ENDPOINT_URL": self.aws_endpoint,
                    "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
                    "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
                }
            )
        environment.update(
            {
                "AWS_DEFAULT_REGION": self.region,
                "AWS_REGION": self.region,
                "AWS_LAMBDA_FUNCTION_NAME": name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": str(log_group),
                "POWERTOOLS_TRACE_DISABLED": "true",
                **LOCAL_ONLY_ENVIRONMENT,
            }
        )
        self.description.functions[logical_id] = FunctionSpec(
            logical_id=logical_id,
            code_uri=f"{code_dir}/" if code_dir else "",
            module=module,
            handler=attribute,
            timeout_seconds=int(props.get("Timeout", 3)),
            memory_mb=memory,
            environment=environment,
        )
        self._functions_by_ref[name] = logical_id
        self._functions_by_ref[arn] = logical_id
        self._add(logical_id, "AWS::Lambda::Function", name, Arn=arn)

    def create_event_source_mapping(self, logical_id: str, props: dict[str, Any]) -> None:
        function = self._function(props["FunctionName"], logical_id)
        source_arn = str(props.get("EventSourceArn", ""))
        queue_id = self._queues_by_arn.get(source_arn)
        if queue_id is None:
            raise ProvisionError(
                f"{logical_id}: only SQS queues of this template are supported as event sources "
                f"locally, not {source_arn!r}"
            )
        enabled = props.get("Enabled", True) not in (False, "false", "False")
        if enabled:
            queue = self.resources[queue_id]
            function.queue_sources.append(
                QueueSource(
                    queue_logical_id=queue_id,
                    queue_url=queue.physical_id,
                    queue_arn=source_arn,
                    batch_size=int(props.get("BatchSize", 10)),
                    maximum_batching_window_seconds=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (props.get("FunctionResponseTypes") or []),
                    maximum_concurrency=(
                        int(props["ScalingConfig"]["MaximumConcurrency"])
                        if (props.get("ScalingConfig") or {}).get("MaximumConcurrency") is not None
                        else None
                    ),
                )
            )
        else:
            self.description.not_emulated[logical_id] = (
                "AWS::Lambda::EventSourceMapping: disabled (Enabled: false)"
            )
        mapping_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.stack_name}/{logical_id}"))
        self._add(logical_id, "AWS::Lambda::EventSourceMapping", mapping_id, Id=mapping_id)

    # -- API Gateway v2 (HTTP API) -------------------------------------------------------------

    def create_http_api(self, logical_id: str, props: dict[str, Any]) -> None:
        body = props.get("Body")
        if not isinstance(body, dict):
            raise ProvisionError(f"{logical_id}: only HTTP APIs with an inline OpenAPI Body are supported")
        if props.get("ProtocolType", "HTTP") != "HTTP":
            raise ProvisionError(f"{logical_id}: only HTTP APIs are supported, not {props['ProtocolType']}")
        title = (body.get("info") or {}).get("title")
        name = props.get("Name") or title or physical_name(self.stack_name, logical_id, 128)
        api = self.client("apigatewayv2").create_api(
            Name=str(name), ProtocolType="HTTP", **_pick(props, ("Description",))
        )
        api_id = api["ApiId"]
        remote = f"https://{api_id}.execute-api.{self.region}.{self.pseudo['AWS::URLSuffix']}"
        self._url_rewrites[remote] = self.api_endpoint

        schemes = (body.get("components") or {}).get("securitySchemes") or {}
        for scheme_name, scheme in schemes.items():
            authorizer = scheme.get("x-amazon-apigateway-authorizer")
            if not authorizer:
                continue
            if authorizer.get("type") != "jwt":
                raise ProvisionError(
                    f"{logical_id}: authorizer {scheme_name} is {authorizer.get('type')!r}; only JWT "
                    "authorizers are emulated"
                )
            config = authorizer.get("jwtConfiguration") or {}
            audience = config.get("audience") or []
            identity = authorizer.get("identitySource", "$request.header.Authorization")
            if isinstance(identity, list):
                identity = ",".join(identity)
            jwt_authorizer = JwtAuthorizer(
                name=scheme_name,
                issuer=str(config.get("issuer", "")),
                audience=[str(a) for a in (audience if isinstance(audience, list) else [audience])],
                identity_source=str(identity),
            )
            existing = self.description.authorizers.get(scheme_name)
            if existing is not None and existing != jwt_authorizer:
                raise ProvisionError(f"{logical_id}: two different authorizers are named {scheme_name}")
            self.description.authorizers[scheme_name] = jwt_authorizer

        cors = body.get("x-amazon-apigateway-cors")
        if isinstance(cors, dict):
            self.description.cors[logical_id] = cors  # answered by the local HTTP API, as API Gateway does

        default_security = body.get("security")
        for path, item in (body.get("paths") or {}).items():
            for key, operation in item.items():
                if key == "x-amazon-apigateway-any-method":
                    method = "ANY"
                elif key.lower() in _HTTP_METHODS:
                    method = key.upper()
                else:
                    continue
                self._add_route(logical_id, path, method, operation, default_security)
        self._add(logical_id, "AWS::ApiGatewayV2::Api", api_id, ApiId=api_id, ApiEndpoint=self.api_endpoint)

    def _add_route(
        self, api_id: str, path: str, method: str, operation: Mapping[str, Any], default_security: Any
    ) -> None:
        where = f"{api_id} {method} {path}"
        integration = operation.get("x-amazon-apigateway-integration") or {}
        if integration.get("type", "").lower() != "aws_proxy":
            raise ProvisionError(f"{where}: only Lambda proxy integrations are emulated")
        if str(integration.get("payloadFormatVersion", "2.0")) != "2.0":
            raise ProvisionError(f"{where}: the local HTTP API speaks payload format 2.0 only")
        match = _FUNCTION_IN_URI.search(str(integration.get("uri", "")))
        if not match:
            raise ProvisionError(f"{where}: integration uri {integration.get('uri')!r} names no function")
        function = self._function(match.group(1), where)
        authorizer: str | None = None
        scopes: list[str] = []
        for requirement in operation.get("security", default_security) or []:
            for scheme_name, scheme_scopes in requirement.items():
                if scheme_name == "NONE":
                    continue
                if scheme_name not in self.description.authorizers:
                    raise ProvisionError(f"{where}: unknown authorizer {scheme_name}")
                authorizer = scheme_name
                scopes = [str(scope) for scope in scheme_scopes or []]
        function.http_routes.append(
            HttpRoute(
                method=method,
                path=path,
                authorizer=authorizer,
                api_logical_id=api_id,
                authorization_scopes=scopes,
            )
        )


CREATORS: dict[str, Callable[[Provisioner, str, dict[str, Any]], None]] = {
    "AWS::DynamoDB::Table": Provisioner.create_table,
    "AWS::SQS::Queue": Provisioner.create_queue,
    "AWS::SQS::QueuePolicy": Provisioner.create_queue_policy,
    "AWS::Events::EventBus": Provisioner.create_event_bus,
    "AWS::Events::Rule": Provisioner.create_rule,
    "AWS::StepFunctions::StateMachine": Provisioner.create_state_machine,
    "AWS::Scheduler::ScheduleGroup": Provisioner.create_schedule_group,
    "AWS::Scheduler::Schedule": Provisioner.create_schedule,
    "AWS::SecretsManager::Secret": Provisioner.create_secret,
    "AWS::SES::ConfigurationSet": Provisioner.create_configuration_set,
    "AWS::SNS::Topic": Provisioner.create_topic,
    "AWS::SNS::Subscription": Provisioner.create_subscription,
    "AWS::CloudWatch::Alarm": Provisioner.create_alarm,
    "AWS::Logs::LogGroup": Provisioner.create_log_group,
    "AWS::IAM::Role": Provisioner.create_role,
    "AWS::Lambda::Function": Provisioner.create_function,
    "AWS::Lambda::EventSourceMapping": Provisioner.create_event_source_mapping,
    "AWS::ApiGatewayV2::Api": Provisioner.create_http_api,
}

HANDLED_TYPES = frozenset(CREATORS) | frozenset(DELIBERATELY_NOT_EMULATED)


def unhandled_types(template: Mapping[str, Any]) -> dict[str, list[str]]:
    """Resource types of a (translated) template that are neither created nor deliberately not
    emulated, with their logical ids (empty when the provisioner can take the template)."""
    found: dict[str, list[str]] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") not in HANDLED_TYPES and not _custom(str(resource.get("Type"))):
            found.setdefault(str(resource.get("Type")), []).append(logical_id)
    return found


def provision(
    template_path: str | Path = DEFAULT_TEMPLATE,
    *,
    aws_endpoint: str | None,
    sandbox: Any = None,
    parameters: Mapping[str, Any] | None = None,
    api_endpoint: str = DEFAULT_API_ENDPOINT,
    stack_name: str = DEFAULT_STACK_NAME,
    region: str = REGION,
    translate: Callable[..., dict[str, Any]] = translate_template,
) -> StackDescription:
    """Create every resource of the SAM template at `template_path` in the moto server at
    `aws_endpoint` (None: moto's `mock_aws` in this process) and describe the stack.

    `sandbox` (a `SandboxHost`, `SandboxCredentials` or a dict of provider secrets) supplies the
    provider secrets' values and, unless `parameters` set them, the JwtIssuer / JwtAudience
    parameters. `api_endpoint` is where the local HTTP API will listen (its execute-api URL is
    rewritten to it). `translate` is `tools.sam_translate.translate_template` or a cached
    equivalent (the tests translate once per process). Raises `UnsupportedResourceType` or
    `ProvisionError`.
    """
    template_path = Path(template_path)
    secrets, jwt, sandbox_endpoint = sandbox_settings(sandbox)
    declared = load_template(template_path).get("Parameters", {}) or {}
    overrides: dict[str, Any] = {}
    local_overrides: set[str] = set()
    if jwt is not None:
        for name, value in ((JWT_ISSUER_PARAMETER, jwt[0]), (JWT_AUDIENCE_PARAMETER, jwt[1])):
            if name in declared and name not in (parameters or {}):
                overrides[name] = value
                local_overrides.add(name)
    overrides.update(parameters or {})
    raw, values = resolve_parameters(declared, overrides, unchecked_patterns=frozenset(local_overrides))
    # SAM resolves a few parameter references itself: give it the final values.
    template = translate(template_path, region=region, parameter_values=raw)
    provisioner = Provisioner(
        template,
        aws_endpoint=aws_endpoint,
        parameters=raw,
        parameter_values=values,
        secrets=secrets,
        api_endpoint=api_endpoint,
        sandbox_endpoint=sandbox_endpoint,
        stack_name=stack_name,
        region=region,
    )
    return provisioner.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.provision",
        description="Provision template.yaml into moto and print the stack description as JSON.",
    )
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument(
        "--aws-endpoint",
        help="a running moto server (default: start a throwaway one on a free port, and stop it)",
    )
    parser.add_argument(
        "--sandbox-credentials",
        type=Path,
        help="credentials JSON of a running sandbox host (python -m local.sandboxes --credentials); "
        "default: fresh credentials for a throwaway host",
    )
    parser.add_argument("--api-endpoint", default=DEFAULT_API_ENDPOINT)
    parser.add_argument("--stack-name", default=DEFAULT_STACK_NAME)
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    try:
        parameters = dict(item.split("=", 1) for item in args.parameter)
    except ValueError:
        parser.error("--parameter takes NAME=VALUE")

    from local.moto_server import MotoServer

    if args.sandbox_credentials:
        credentials = SandboxCredentials.from_dict(json.loads(args.sandbox_credentials.read_text()))
    else:
        credentials = SandboxCredentials.generate("http://127.0.0.1:4010")

    def run(aws_endpoint: str) -> StackDescription:
        return provision(
            args.template,
            aws_endpoint=aws_endpoint,
            sandbox=credentials,
            parameters=parameters,
            api_endpoint=args.api_endpoint,
            stack_name=args.stack_name,
        )

    try:
        if args.aws_endpoint:
            description = run(args.aws_endpoint)
        else:
            with MotoServer(port=0) as aws:
                description = run(aws.url)
    except ProvisionError as error:
        print(f"provision: {error}", file=sys.stderr)
        return 1
    print(description.to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
