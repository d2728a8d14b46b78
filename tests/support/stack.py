"""Herald's stack in moto in-process (`mock_aws`), provisioned from template.yaml by the local
stack's own provisioner (`local.provision`): every table, queue, DLQ, state machine, schedule
group, secret, role... the template declares, and each function's environment as the template
wires it. Nothing here lists resources: one added to template.yaml shows up in the tests.

    with mock_aws(config=MOTO_CONFIG):
        stack = provision(sandbox=host)      # sandbox: provider secrets aimed at the sandboxes
        for name, value in stack.env.items():
            monkeypatch.setenv(name, value)

The SAM translation (offline, no AWS call) runs once per process.

Provisioning takes a few hundred milliseconds, so a test module (or package) provisions once
(`SharedStack`) and each test checks the stack out in its freshly-provisioned state (`reset`):

    @pytest.fixture(scope="module")
    def _provisioned() -> Iterator[SharedStack]:
        with SharedStack(sandbox=host) as shared:
            yield shared

    @pytest.fixture
    def stack(_provisioned: SharedStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoStack]:
        with _provisioned.checkout(monkeypatch) as provisioned:
            yield provisioned

moto and the environment are active only while a test holds the stack, as with a stack of its
own; a test that changes more than data (a queue's attributes, a secret deleted, a resource
added or removed) gets the next test a stack provisioned anew.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.handlers import BUILTIN_HANDLERS
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends
from moto.sns.models import sns_backends
from moto.sqs.models import sqs_backends
from moto.stepfunctions.models import stepfunctions_backends
from moto.stepfunctions.parser.models import stepfunctions_parser_backends

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
    "SharedStack",
    "StackChanged",
    "fresh_function_module",
    "provision",
    "provisioned_environment",
    "reset",
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
    # What `reset` returns the stack to: taken when it was provisioned.
    baseline: _Baseline | None = field(default=None, repr=False)

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
    inventory = _inventory(stack)
    dynamodb = _client("dynamodb")
    table_keys = {
        name: [key["AttributeName"] for key in dynamodb.describe_table(TableName=name)["Table"]["KeySchema"]]
        for name in inventory["tables"]
    }
    stack.baseline = _Baseline(
        inventory=inventory,
        table_keys=table_keys,
        secret_values={arn: _secret_value(arn) for arn, _ in inventory["secrets"]},
    )
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


# -- one stack per module, fresh for each test ---------------------------------------------------


@cache
def _client(service: str) -> Any:
    """A client of moto in this process for the helpers below, made once (making one takes ~10 ms;
    moto intercepts it whenever a mock runs)."""
    return provisioner.in_process_session().client(service, region_name=REGION)


class StackChanged(Exception):
    """The stack differs from its provisioned state in more than data: `reset` cannot undo it."""


@dataclass(frozen=True)
class _Baseline:
    inventory: dict[str, list[Any]]  # `_inventory()` as provisioned
    table_keys: dict[str, list[str]]  # table name -> its key attributes
    secret_values: dict[str, str | None]  # secret ARN -> its SecretString (None: no value)


def _inventory(stack: MotoStack) -> dict[str, list[Any]]:
    """The account's resources that tests could add or remove, by name (cheap: one call each)."""
    scheduler = _client("scheduler")
    secrets = _client("secretsmanager").list_secrets(IncludePlannedDeletion=True)["SecretList"]
    return {
        "tables": sorted(_client("dynamodb").list_tables()["TableNames"]),
        "queues": sorted(_client("sqs").list_queues().get("QueueUrls", [])),
        "state machines": sorted(
            machine["stateMachineArn"]
            for machine in _client("stepfunctions").list_state_machines()["stateMachines"]
        ),
        "schedule groups": sorted(
            group["Name"] for group in scheduler.list_schedule_groups()["ScheduleGroups"]
        ),
        "secrets": sorted((secret["ARN"], "DeletedDate" in secret) for secret in secrets),
    }


def _secret_value(arn: str) -> str | None:
    secrets = _client("secretsmanager")
    try:
        return secrets.get_secret_value(SecretId=arn).get("SecretString")
    except (secrets.exceptions.ResourceNotFoundException, secrets.exceptions.InvalidRequestException):
        return None  # no value, or deleted


def _stop_executions(stack: MotoStack) -> None:
    """Stop every running execution of the stack's state machines (their workers stop sending)."""
    sfn = _client("stepfunctions")
    for arn in stack.state_machines.values():
        for execution in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]:
            # One that ends meanwhile is refused, or trips moto (AttributeError: its worker is gone).
            with suppress(ClientError, AttributeError):
                sfn.stop_execution(executionArn=execution["executionArn"])


def reset(stack: MotoStack) -> None:
    """Return a provisioned stack's data (inside its `mock_aws`) to what `provision` left.

    Forgotten: every item of every table, every message of every queue (in flight and delayed
    ones too), every execution of the state machines (running ones stopped first), every
    schedule, every email SES was asked to send (and SNS notification published), every secret
    created since; a provisioned secret's value is put back. A resource added or removed
    otherwise (a provisioned secret deleted too) raises `StackChanged`: provision a new stack
    then. Settings (a queue's attributes, a table's TTL...) are not compared: `SharedStack`
    provisions anew after a test whose calls could change them.

    moto has no API to forget executions, sent emails or notifications, nor to purge a queue
    twice within 60 s (SQS's rule): those are cleared in its backends.
    """
    if stack.baseline is None:
        raise ValueError("this stack has no baseline: provision it with tests.support.stack.provision")
    try:
        _forget_executions(stack)
        _forget_schedules(stack)
        _forget_items(stack)
        _restore_secrets(stack.baseline.secret_values)
    except ClientError as error:  # a resource is gone (moto reset by another mock_aws...)
        raise StackChanged(f"the stack cannot be reset: {error}") from error
    _forget_messages()
    ses = ses_backends[ACCOUNT][REGION]
    ses.sent_messages.clear()
    ses.sent_message_count = 0
    sns = sns_backends[ACCOUNT][REGION]
    sns.sms_messages.clear()
    for topic in sns.topics.values():
        topic.sent_notifications.clear()
    inventory = _inventory(stack)
    changed = [kind for kind, names in inventory.items() if names != stack.baseline.inventory[kind]]
    if changed:
        raise StackChanged(f"the stack's {' and '.join(changed)} changed since it was provisioned")


def _restore_secrets(provisioned: Mapping[str, str | None]) -> None:
    """Secrets added since are deleted; a provisioned one whose value changed gets it back (as
    its current version: the previous versions are not compared). A value given to a secret
    provisioned without one cannot be taken back: `StackChanged`."""
    secrets = _client("secretsmanager")
    for secret in secrets.list_secrets(IncludePlannedDeletion=True)["SecretList"]:
        arn = secret["ARN"]
        if arn not in provisioned:
            secrets.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
            continue
        if "DeletedDate" in secret:
            continue  # the inventory tells
        value, current = provisioned[arn], _secret_value(arn)
        if value is None and current is not None:
            raise StackChanged(f"secret {secret['Name']} was given a value")
        if current != value:
            secrets.put_secret_value(SecretId=arn, SecretString=value)


def _forget_executions(stack: MotoStack) -> None:
    _stop_executions(stack)
    # The parser's backend when MOTO_CONFIG executes state machines, the plain one otherwise.
    for backends in (stepfunctions_parser_backends, stepfunctions_backends):
        for machine in backends[ACCOUNT][REGION].state_machines:
            machine.executions.clear()


def _forget_schedules(stack: MotoStack) -> None:
    scheduler = _client("scheduler")
    for group in scheduler.list_schedule_groups()["ScheduleGroups"]:
        for schedule in scheduler.list_schedules(GroupName=group["Name"])["Schedules"]:
            scheduler.delete_schedule(Name=schedule["Name"], GroupName=group["Name"])


def _forget_items(stack: MotoStack) -> None:
    dynamodb = _client("dynamodb")
    assert stack.baseline is not None
    for name, keys in stack.baseline.table_keys.items():
        names = {f"#k{i}": key for i, key in enumerate(keys)}
        pages = dynamodb.get_paginator("scan").paginate(
            TableName=name, ProjectionExpression=", ".join(names), ExpressionAttributeNames=names
        )
        items = [item for page in pages for item in page["Items"]]
        for start in range(0, len(items), 25):
            requests: Any = {name: [{"DeleteRequest": {"Key": item}} for item in items[start : start + 25]]}
            while requests:
                requests = dynamodb.batch_write_item(RequestItems=requests).get("UnprocessedItems")


def _forget_messages() -> None:
    for queue in sqs_backends[ACCOUNT][REGION].queues.values():
        with queue._messages_lock:
            queue._messages = []
            queue._pending_messages = set()
            queue.deleted_messages = set()
            queue.last_purged_at = None


# Operations whose effects `reset` undoes (or that read): a test calling any other (a secret's new
# value, a queue's attributes, a table's settings, a resource created or deleted...) gets the next
# test a stack provisioned anew.
_READ_PREFIXES = ("Get", "List", "Describe", "BatchGet", "Head")
_DATA_OPERATIONS = frozenset(
    {
        # DynamoDB items
        "Query",
        "Scan",
        "TransactGetItems",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
        # SQS messages
        "ReceiveMessage",
        "SendMessage",
        "SendMessageBatch",
        "DeleteMessage",
        "DeleteMessageBatch",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
        "PurgeQueue",
        # Step Functions executions
        "StartExecution",
        "StopExecution",
        "SendTaskSuccess",
        "SendTaskFailure",
        "SendTaskHeartbeat",
        # EventBridge Scheduler schedules
        "CreateSchedule",
        "UpdateSchedule",
        "DeleteSchedule",
        # SES sends (and the SNS notifications of their feedback)
        "SendEmail",
        "SendRawEmail",
        "SendTemplatedEmail",
        # secrets: reset deletes those a test adds and puts back the provisioned values
        "CreateSecret",
        "PutSecretValue",
    }
)


class _CallLog:
    """The AWS operations boto3 clients call while `recording` (every client: a botocore handler
    registered for every session, as moto registers its own)."""

    def __init__(self) -> None:
        self.recording = False
        self.operations: set[str] = set()

    def __call__(self, model: Any, **_: Any) -> None:
        if self.recording:
            self.operations.add(f"{model.service_model.service_name}:{model.name}")

    def changes(self) -> set[str]:
        """Operations recorded that `reset` cannot undo."""
        return {
            operation
            for operation in self.operations
            if not (name := operation.split(":", 1)[1]).startswith(_READ_PREFIXES)
            and name not in _DATA_OPERATIONS
        }


_calls = _CallLog()
BUILTIN_HANDLERS.append(("before-call", _calls))


class SharedStack:
    """template.yaml provisioned once (for a test module or package) and checked out by each test
    as if provisioned for it alone: `reset` between tests, provisioned anew after a test that changed
    more than data. moto runs, and the environment is set, only while a test holds the stack.

    `environment` adds variables the template does not set (test settings)."""

    def __init__(
        self,
        *,
        sandbox: Any = None,
        parameters: Mapping[str, Any] | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self._sandbox = sandbox
        self._parameters = parameters
        self._environment = dict(environment or {})
        # boto3's default session is kept from one test to the next (a new one loads every
        # service model again: half of a handler module's import), but only while a test holds
        # the stack: `checkout` puts the one it found back.
        core = {**MOTO_CONFIG.get("core", {}), "reset_boto3_session": False}
        self._mock = mock_aws(config={**MOTO_CONFIG, "core": core})
        self._session: boto3.session.Session | None = None
        self._stack: MotoStack | None = None
        self._used = False  # a test has held the stack since it was provisioned
        self._changed = False  # ... and called an operation `reset` cannot undo
        self.provisioned = 0  # how many times the template was provisioned

    def __enter__(self) -> SharedStack:
        self._mock.start()
        try:
            self._provision()
        finally:
            self._mock.stop(remove_data=False)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._mock.start(reset=False)
        self._mock.stop()  # forgets every resource, as a stack of one's own would

    def _provision(self) -> None:
        # A session made before this module was imported lacks the call log: the provisioner's
        # (MotoStack.client's too) gets it here.
        provisioner.in_process_session().events.register("before-call", _calls, unique_id="herald-call-log")
        self._stack = provision(sandbox=self._sandbox, parameters=self._parameters)
        self._used = self._changed = False
        self.provisioned += 1

    def _fresh(self) -> MotoStack:
        assert self._stack is not None, "use SharedStack as a context manager"
        if self._used:
            try:
                if self._changed:
                    raise StackChanged("the last test called an operation reset cannot undo")
                reset(self._stack)
            except StackChanged:
                self._mock.stop()  # forget everything, then a new stack
                self._mock.start()
                self._provision()
        return self._stack

    @contextmanager
    def checkout(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoStack]:
        """The stack in its provisioned state, moto running and the functions' environment set
        (undone by `monkeypatch`) while the caller holds it."""
        self._mock.start(reset=False)
        previous_session, boto3.DEFAULT_SESSION = boto3.DEFAULT_SESSION, self._session
        try:
            stack = self._fresh()
            self._used = True
            for name, value in {**stack.env, **self._environment}.items():
                monkeypatch.setenv(name, value)
            _calls.operations.clear()
            _calls.recording = True
            try:
                yield stack
            finally:
                _calls.recording = False
                self._changed = bool(_calls.changes())
                with suppress(ClientError):  # the state machine may be gone: reset will tell
                    _stop_executions(stack)  # no worker keeps sending while moto is off
        finally:
            self._session, boto3.DEFAULT_SESSION = boto3.DEFAULT_SESSION, previous_session
            self._mock.stop(remove_data=False)
