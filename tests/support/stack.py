"""Herald's stack in moto in-process (`mock_aws`), provisioned from template.yaml by the local
stack's own provisioner (`local.provision`): every table, queue, DLQ, state machine, schedule
group, secret, role... the template declares, and each function's environment as the template
wires it. Nothing here lists resources: one added to template.yaml shows up in the tests.

    with mock_aws(config=MOTO_CONFIG):
        stack = provision(sandbox=host)      # sandbox: provider secrets aimed at the sandboxes
        for name, value in stack.env.items():
            monkeypatch.setenv(name, value)

The SAM translation (offline, no AWS call) runs once per process; provisioning runs per test.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from local import provision as provisioner
from local.intrinsics import Context, pseudo_parameters, resolve
from local.model import FunctionSpec, StackDescription
from local.moto_server import MOTO_CONFIG, REGION
from tools.sam_translate import translate_template

__all__ = [
    "ACCOUNT",
    "API_ENDPOINT",
    "MOTO_CONFIG",
    "REGION",
    "STACK_NAME",
    "MotoStack",
    "fresh_function_module",
    "provision",
    "provisioned_environment",
]

ACCOUNT = DEFAULT_ACCOUNT_ID
STACK_NAME = "herald-test"
# The HTTP API's public URL as the functions see it (API_BASE_URL, Twilio's status callback).
API_ENDPOINT = "https://api.example.com"
# Set by the Lambda runtime per function, so left out of the shared `env`.
_PER_FUNCTION_PREFIX = "AWS_LAMBDA_"

_Parameters = tuple[tuple[str, str], ...]  # template parameters, sorted (a cache key)


@dataclass
class MotoStack:
    """The provisioned stack, with the names tests reach for.

    `queue_urls` / `dlq_urls` are keyed by the queue's logical id without `Queue` ("Email",
    "Ingest"); a queue named as another's `deadLetterTargetArn` is that queue's DLQ. `tables` is
    keyed by logical id. `env` holds every function's environment variables at once (the tests
    import several handlers in one process); `function_env()` is one function's own.
    """

    description: StackDescription
    env: dict[str, str] = field(default_factory=dict)
    queue_urls: dict[str, str] = field(default_factory=dict)
    dlq_urls: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    state_machines: dict[str, str] = field(default_factory=dict)  # logical id -> ARN
    secrets: dict[str, str] = field(default_factory=dict)  # logical id -> ARN

    @property
    def functions(self) -> dict[str, FunctionSpec]:
        return self.description.functions

    @property
    def state_machine_arn(self) -> str:
        """The template's state machine (an error once it declares more than one)."""
        if len(self.state_machines) != 1:
            raise LookupError(f"the template declares {len(self.state_machines)} state machines: pick one")
        return next(iter(self.state_machines.values()))

    def function_env(self, logical_id: str) -> dict[str, str]:
        return dict(self.functions[logical_id].environment)

    def client(self, service: str) -> Any:
        return provisioner.in_process_session().client(service, region_name=REGION)

    def drain(self, queue: str, max_messages: int = 100) -> list[dict[str, Any]]:
        """Receive (and delete) every visible message of a queue ("Email", or "EmailDeadLetter"
        for its DLQ); message attributes included."""
        sqs = self.client("sqs")
        url = self.queue_urls.get(queue) or self.dlq_urls[queue.removesuffix("DeadLetter")]
        messages: list[dict[str, Any]] = []
        while len(messages) < max_messages:
            batch = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
            ).get("Messages", [])
            if not batch:
                break
            for message in batch:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            messages.extend(batch)
        return messages


@cache
def _translated(path: str, region: str, parameters: _Parameters) -> str:
    return json.dumps(translate_template(path, region=region, parameter_values=dict(parameters)))


def cached_translate(path: str | Path, *, region: str, parameter_values: Mapping[str, Any]) -> dict[str, Any]:
    """`translate_template`, translated once per (template, region, parameters) in this process;
    every call gets its own copy."""
    key = tuple(sorted((name, str(value)) for name, value in parameter_values.items()))
    return json.loads(_translated(str(Path(path).resolve()), region, key))


@cache
def _queue_redrive_policies(path: str, region: str, parameters: _Parameters) -> dict[str, Any]:
    """Queue logical id -> its RedrivePolicy as the translated template writes it."""
    resources = json.loads(_translated(path, region, parameters)).get("Resources", {})
    return {
        logical_id: resource["Properties"]["RedrivePolicy"]
        for logical_id, resource in resources.items()
        if resource.get("Type") == "AWS::SQS::Queue" and "RedrivePolicy" in (resource.get("Properties") or {})
    }


def provision(
    template: str | Path = provisioner.DEFAULT_TEMPLATE,
    *,
    sandbox: Any = None,
    parameters: Mapping[str, Any] | None = None,
    stack_name: str = STACK_NAME,
    api_endpoint: str = API_ENDPOINT,
) -> MotoStack:
    """Provision `template` (template.yaml) into the running `mock_aws` (start it with
    `MOTO_CONFIG`).

    `sandbox` (a `SandboxHost` or its credentials) fills the provider secrets and the JWT
    issuer, as on the local stack; `parameters` override template parameters.
    """
    description = provisioner.provision(
        template,
        aws_endpoint=None,
        sandbox=sandbox,
        parameters=parameters,
        api_endpoint=api_endpoint,
        stack_name=stack_name,
        region=REGION,
        translate=cached_translate,
    )
    stack = MotoStack(description=description, env=_shared_environment(description.functions))
    by_type: dict[str, dict[str, str]] = {}
    for logical_id, resource in description.resources.items():
        by_type.setdefault(resource.type, {})[logical_id] = resource.physical_id
    stack.tables = by_type.get("AWS::DynamoDB::Table", {})
    stack.state_machines = by_type.get("AWS::StepFunctions::StateMachine", {})
    stack.secrets = by_type.get("AWS::SecretsManager::Secret", {})
    _split_queues(stack, description, Path(template), stack_name)
    return stack


def _split_queues(stack: MotoStack, description: StackDescription, template: Path, stack_name: str) -> None:
    """queue_urls / dlq_urls from the template's queues and their RedrivePolicy (resolved
    against what was provisioned, so no call to SQS)."""
    queues = {
        logical_id: resource
        for logical_id, resource in description.resources.items()
        if resource.type == "AWS::SQS::Queue"
    }
    url_by_arn = {resource.attributes["Arn"]: resource.physical_id for resource in queues.values()}
    parameters = tuple(sorted(description.parameters.items()))
    policies = _queue_redrive_policies(str(template.resolve()), description.region, parameters)
    context = Context(
        parameters=description.parameters,
        pseudo=pseudo_parameters(description.region, ACCOUNT, stack_name),
        resources=description.resources,
    )
    dead_letter_urls: dict[str, str] = {}  # source logical id -> its DLQ's URL
    for logical_id, policy in policies.items():
        if logical_id not in queues:  # a queue whose Condition is false
            continue
        redrive = resolve(policy, context)
        if isinstance(redrive, str):
            redrive = json.loads(redrive)
        dead_letter_urls[logical_id] = url_by_arn[redrive["deadLetterTargetArn"]]
    targets = set(dead_letter_urls.values())
    for logical_id, resource in queues.items():
        if resource.physical_id in targets:
            continue
        name = logical_id.removesuffix("Queue")
        stack.queue_urls[name] = resource.physical_id
        if logical_id in dead_letter_urls:
            stack.dlq_urls[name] = dead_letter_urls[logical_id]


def _shared_environment(functions: Mapping[str, FunctionSpec]) -> dict[str, str]:
    """Every function's environment in one mapping, without the runtime's per-function
    AWS_LAMBDA_* variables. Two functions giving one variable different values is an error: a
    test of either needs `function_env()`."""
    shared: dict[str, str] = {}
    owner: dict[str, str] = {}
    for logical_id, spec in sorted(functions.items()):
        for name, value in spec.environment.items():
            if name.startswith(_PER_FUNCTION_PREFIX):
                continue
            if name in shared and shared[name] != value:
                raise ValueError(
                    f"{name} is {shared[name]!r} for {owner[name]} but {value!r} for {logical_id}: "
                    "use MotoStack.function_env() for these functions"
                )
            shared[name] = value
            owner[name] = logical_id
    return shared


@contextmanager
def provisioned_environment(monkeypatch: pytest.MonkeyPatch, *, sandbox: Any = None) -> Iterator[MotoStack]:
    """moto in this process with template.yaml provisioned, and every function's environment set
    in the process (as the handler modules read it at import). `sandbox`: as for `provision`."""
    with mock_aws(config=MOTO_CONFIG):
        stack = provision(sandbox=sandbox)
        for name, value in stack.env.items():
            monkeypatch.setenv(name, value)
        yield stack


def fresh_function_module(name: str) -> Any:
    """A function's `app` module imported anew inside moto (its clients are module-scoped)."""
    sys.modules.pop(name, None)
    return importlib.import_module(name)
