"""What a deployed function sees in its environment, without deploying: the template's environment
variables (Globals + function) with every intrinsic resolved to a plausible placeholder (an ARN, a
queue URL, a physical name), plus the variables the Lambda service itself sets.

Only the intrinsics the template uses are supported; anything else fails loudly rather than leave a
`{"Ref": ...}` dict where a string is expected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "herald-dev"
PSEUDO_PARAMETERS: dict[str, str] = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": STACK,
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/0f1e2d3c-4b5a-6978-8796",
}
# Properties that name a resource (otherwise CloudFormation generates "<stack>-<logical id>-<suffix>").
NAME_PROPERTIES = ("Name", "TableName", "QueueName", "FunctionName", "RoleName", "TopicName", "LogGroupName")
SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


class UnsupportedIntrinsic(ValueError):
    """The template uses an intrinsic (or a Ref/GetAtt target) this resolver does not know."""


class Placeholders:
    """Resolves CloudFormation intrinsics (long form, as tools.cfn_yaml loads them) to the values a
    stack deployed with the parameters' defaults would plausibly give."""

    def __init__(self, template: Mapping[str, Any]) -> None:
        self.template = template
        self.resources: Mapping[str, Any] = template.get("Resources", {})
        self.parameters: Mapping[str, Any] = template.get("Parameters", {})

    # ------------------------------------------------------------------------------ resolution
    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) != 1 or not next(iter(node)).startswith(("Fn::", "Ref", "Condition")):
            return {key: self.resolve(value) for key, value in node.items()}
        ((name, argument),) = node.items()
        if name == "Ref":
            return self.ref(argument)
        if name == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.get_att(logical_id, attribute)
        if name == "Fn::Sub":
            return self.sub(argument)
        if name == "Fn::FindInMap":
            mapping, first, second = (self.resolve(part) for part in argument)
            return self.template["Mappings"][mapping][first][second]
        if name == "Fn::Join":
            delimiter, items = argument
            return str(delimiter).join(str(item) for item in self.resolve(items))
        if name == "Fn::Select":
            index, items = argument
            return self.resolve(items)[int(self.resolve(index))]
        if name == "Fn::Split":
            delimiter, text = argument
            return str(self.resolve(text)).split(delimiter)
        if name == "Fn::If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self.condition(condition) else when_false)
        raise UnsupportedIntrinsic(f"cannot resolve {node!r}")

    def condition(self, name: str) -> bool:
        return self._truth(self.template["Conditions"][name])

    def _truth(self, node: Any) -> bool:
        ((name, argument),) = node.items()
        if name == "Fn::Equals":
            left, right = (self.resolve(part) for part in argument)
            return str(left) == str(right)
        if name == "Fn::Not":
            return not self._truth(argument[0])
        if name == "Fn::And":
            return all(self._truth(part) for part in argument)
        if name == "Fn::Or":
            return any(self._truth(part) for part in argument)
        if name == "Condition":
            return self.condition(argument)
        raise UnsupportedIntrinsic(f"cannot evaluate condition {node!r}")

    def sub(self, argument: str | list[Any]) -> str:
        text, local = (
            (argument[0], self.resolve(argument[1])) if isinstance(argument, list) else (argument, {})
        )

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return SUB_VARIABLE.sub(value, text)

    # ------------------------------------------------------------------------------ Ref / GetAtt
    def ref(self, name: str) -> Any:
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self.parameters:
            default = self.parameters[name].get("Default")
            if default is None:
                raise UnsupportedIntrinsic(f"parameter {name} has no Default to stand in for its value")
            return default
        resource_type = self._type(name)
        physical = self.physical_name(name)
        by_type = {
            "AWS::SQS::Queue": lambda: f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{physical}",
            "AWS::SNS::Topic": lambda: self.arn(name),
            "AWS::SecretsManager::Secret": lambda: self.arn(name),
            "AWS::Serverless::StateMachine": lambda: self.arn(name),
            "AWS::StepFunctions::StateMachine": lambda: self.arn(name),
            "AWS::Serverless::LayerVersion": lambda: self.arn(name),
            "AWS::Serverless::HttpApi": lambda: "a1b2c3d4e5",
        }
        return by_type.get(resource_type, lambda: physical)()

    def get_att(self, name: str, attribute: str) -> str:
        resource_type = self._type(name)
        if attribute == "Arn":
            return self.arn(name)
        if attribute in ("Name", "QueueName") or (attribute == "TableName" and "DynamoDB" in resource_type):
            return self.physical_name(name)
        if attribute == "QueueUrl":
            return self.ref(name)
        raise UnsupportedIntrinsic(f"GetAtt {name}.{attribute} ({resource_type}) is not known here")

    def physical_name(self, name: str) -> str:
        properties = self.resources[name].get("Properties") or {}
        for key in NAME_PROPERTIES:
            if key in properties:
                return str(self.resolve(properties[key]))
        if self._type(name) == "AWS::Serverless::LayerVersion" and "LayerName" in properties:
            return str(self.resolve(properties["LayerName"]))
        return f"{STACK}-{name}-1A2B3C4D5E6F"

    def arn(self, name: str) -> str:
        resource_type, physical = self._type(name), self.physical_name(name)
        prefix = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:"
        arns = {
            "AWS::SQS::Queue": prefix.format("sqs") + physical,
            "AWS::SNS::Topic": prefix.format("sns") + physical,
            "AWS::DynamoDB::Table": prefix.format("dynamodb") + f"table/{physical}",
            "AWS::SecretsManager::Secret": prefix.format("secretsmanager") + f"secret:{physical}-AbCdEf",
            "AWS::Serverless::StateMachine": prefix.format("states") + f"stateMachine:{physical}",
            "AWS::StepFunctions::StateMachine": prefix.format("states") + f"stateMachine:{physical}",
            "AWS::Serverless::Function": prefix.format("lambda") + f"function:{physical}",
            "AWS::Serverless::LayerVersion": prefix.format("lambda") + f"layer:{physical}:1",
            "AWS::Events::EventBus": prefix.format("events") + f"event-bus/{physical}",
            "AWS::Events::Rule": prefix.format("events") + f"rule/{physical}",
            "AWS::Logs::LogGroup": prefix.format("logs") + f"log-group:{physical}:*",
            "AWS::Scheduler::ScheduleGroup": prefix.format("scheduler") + f"schedule-group/{physical}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{physical}",
        }
        if resource_type not in arns:
            raise UnsupportedIntrinsic(f"no ARN form known for {name} ({resource_type})")
        return arns[resource_type]

    def _type(self, name: str) -> str:
        if name not in self.resources:
            raise UnsupportedIntrinsic(f"{name} is neither a parameter, a pseudo parameter nor a resource")
        return self.resources[name]["Type"]


def as_environment_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise UnsupportedIntrinsic(f"an environment variable resolved to {value!r}, not a scalar")


def function_property(template: Mapping[str, Any], logical_id: str, key: str) -> Any:
    """A function's property, falling back to Globals.Function (as SAM does)."""
    properties = template["Resources"][logical_id].get("Properties") or {}
    if key in properties:
        return properties[key]
    return template.get("Globals", {}).get("Function", {}).get(key)


def template_variables(template: Mapping[str, Any], logical_id: str) -> dict[str, str]:
    """Globals.Function.Environment.Variables overlaid with the function's own, resolved."""
    placeholders = Placeholders(template)
    merged: dict[str, Any] = {}
    global_environment = template.get("Globals", {}).get("Function", {}).get("Environment") or {}
    merged.update(global_environment.get("Variables") or {})
    own_environment = (template["Resources"][logical_id].get("Properties") or {}).get("Environment") or {}
    merged.update(own_environment.get("Variables") or {})
    return {key: as_environment_value(placeholders.resolve(value)) for key, value in merged.items()}


def lambda_environment(
    template: Mapping[str, Any],
    logical_id: str,
    *,
    task_root: Path,
    opt: Path,
    runtime_dir: Path,
    tracing_active: bool,
) -> dict[str, str]:
    """The whole environment of `logical_id`'s execution environment, built from nothing (no
    variable of the test process leaks in: no POWERTOOLS_TRACE_DISABLED, no AWS_ENDPOINT_URL)."""
    placeholders = Placeholders(template)
    name = f"{STACK}-{logical_id}-1A2B3C4D5E6F"
    log_group = (function_property(template, logical_id, "LoggingConfig") or {}).get("LogGroup")
    environment = {
        # Set by the Lambda service for every python3.13 function.
        "PATH": "/usr/local/bin:/usr/bin/:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LD_LIBRARY_PATH": f"{task_root}:{task_root}/lib:{opt}/lib",
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(runtime_dir),
        "_HANDLER": str(function_property(template, logical_id, "Handler")),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function_property(template, logical_id, "MemorySize") or 128),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": str(placeholders.resolve(log_group or f"/aws/lambda/{name}")),
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/30/[$LATEST]0123456789abcdef0123456789abcdef",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "ASIAEXAMPLEEXAMPLE00",
        "AWS_SECRET_ACCESS_KEY": "example-secret-access-key-for-the-import-test",
        "AWS_SESSION_TOKEN": "example-session-token",
        # Not Lambda's, but keep the host's AWS configuration out and never wait on instance metadata.
        "AWS_CONFIG_FILE": str(runtime_dir / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(runtime_dir / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if tracing_active:  # what Lambda adds with Tracing: Active
        environment |= {
            "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
            "_AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129",
            "_AWS_XRAY_DAEMON_PORT": "2000",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "_X_AMZN_TRACE_ID": "Root=1-67a1b2c3-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=1",
        }
    return environment | template_variables(template, logical_id)
