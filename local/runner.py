"""The local Lambda runtime: Herald's real handlers, invoked in-process as Lambda would invoke them,
wired from the translated template (`StackDescription`, written by local/provision.py).

- `invoke(function, event)`: one invocation, as Lambda's Invoke (used by the local HTTP API for
  routes, by the schedules, by tests). The event and the result go through JSON like Lambda's.
- SQS event sources: one poller thread per `QueueSource` (long polls of at most 1 s, so `stop()`
  is prompt), `BatchSize` and `MaximumBatchingWindowInSeconds` respected, the exact Lambda SQS
  event. With `ReportBatchItemFailures` the messages not listed in `batchItemFailures` are
  deleted and the listed ones are left to come back after the visibility timeout (moto redrives
  them to the DLQ after `maxReceiveCount`), with Lambda's rules for a malformed response; without
  it all are deleted on success. When the handler raises (or overruns its timeout) nothing is
  deleted. `force_redelivery(queues)` makes SQS's at-least-once delivery happen on purpose: each
  processed message comes back once more (the reliability suite, local/soak.py).
- What moto never does by itself: EventBridge Scheduler schedules and scheduled rules
  (`local/schedules.py`), DynamoDB TTL (`local/ttl.py`), SES mailbox-simulator feedback
  (`local/ses_feedback.py`). The runner starts them too.

Lambda isolates functions in processes; here they share one. A function's module is imported
afresh (a cold start) with `os.environ` set to that function's environment, and every
invocation runs with that environment; since `os.environ` is process-wide and modules read their
configuration at import, invocations are serialised by one global lock, the environment swapped
in before and restored after. Shared libraries (the `herald` layer) are imported once for all.
Everything is logged to the `local.*` loggers.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from local.model import FunctionSpec, QueueSource, StackDescription
from local.schedules import Schedules, TargetDelivery
from local.ses_feedback import SesFeedback, moto_sent_mail
from local.ttl import TtlReaper

logger = logging.getLogger("local.runner")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ACCOUNT = "123456789012"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Never in a Lambda environment; a developer's profile must not leak into the functions.
NOT_IN_LAMBDA = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")

# os.environ is process-wide: one invocation (or import) at a time, in the whole process.
INVOCATION_LOCK = threading.Lock()
_LOCK_WARNING_SECONDS = 30.0


class FunctionError(Exception):
    """An invocation failed the way Lambda reports it (errorType / errorMessage)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.error_message = message


@dataclass(frozen=True)
class Invocation:
    function: str
    trigger: str  # a queue's logical id, "invoke", a schedule
    records: int  # the SQS records of the batch (0 for other events)
    seconds: float


class InvocationLog:
    """What the functions did while it was open (`with runner.measured() as log:`): each invocation
    (its function, trigger, batch size, duration) and each AWS API call made with their handler
    modules' clients (found at each cold start in the module's globals and two levels into them:
    the clients a handler builds then), from any thread. The runner's own polling and deleting (Lambda's
    event source mappings) and a test's calls use other clients and are not counted."""

    def __init__(self) -> None:
        self.invocations: list[Invocation] = []
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def count(self, function: str, operation: str) -> None:
        with self._lock:
            self.calls[(function, operation)] += 1

    def calls_of(self, function: str) -> Counter[str]:
        return Counter({op: n for (fn, op), n in self.calls.items() if fn == function})


def _clients_in(namespace: Mapping[str, Any], depth: int = 2) -> list[BaseClient]:
    """The botocore clients among these values and, `depth` levels down, their attributes."""
    found: dict[int, BaseClient] = {}
    pending = deque((value, 0) for name, value in namespace.items() if not name.startswith("__"))
    seen: set[int] = set()
    while pending:  # breadth first: a value is expanded at the shallowest depth it is met
        value, level = pending.popleft()
        if id(value) in seen or isinstance(value, type | ModuleType):
            continue
        seen.add(id(value))
        if isinstance(value, BaseClient):
            found[id(value)] = value
        elif level < depth and hasattr(value, "__dict__"):
            pending.extend((attribute, level + 1) for attribute in vars(value).values())
    return list(found.values())


class LambdaContext:
    """The context object of the Python runtime (awslambdaric's attributes)."""

    def __init__(
        self,
        *,
        function_name: str,
        invoked_function_arn: str,
        memory_limit_in_mb: int,
        timeout_seconds: float,
        log_group_name: str,
        log_stream_name: str,
        function_version: str = "$LATEST",
    ) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = invoked_function_arn
        # The runtime reads it from AWS_LAMBDA_FUNCTION_MEMORY_SIZE: a string, as in Lambda.
        self.memory_limit_in_mb = str(memory_limit_in_mb)
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def log(self, message: str) -> None:
        sys.stdout.write(message)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):  # the runtime's serializer accepts Decimal
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def marshal(value: Any) -> Any:
    """What the caller of a Lambda function receives: the JSON round trip of the result."""
    try:
        return json.loads(json.dumps(value, default=_json_default))
    except (TypeError, ValueError) as error:
        raise FunctionError("Runtime.MarshalError", f"Unable to marshal response: {error}") from error


# ---------------------------------------------------------------------------------------------
# The SQS event and the partial batch response (pure)
# ---------------------------------------------------------------------------------------------


def lambda_message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """SQS's `{"StringValue", "DataType"}` -> the Lambda event's `{"stringValue", ..., "dataType"}`."""
    attribute: dict[str, Any] = {}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        raw = value["BinaryValue"]
        attribute["binaryValue"] = base64.b64encode(raw if isinstance(raw, bytes) else raw.encode()).decode()
    attribute["stringListValues"] = list(value.get("StringListValues", []))
    attribute["binaryListValues"] = [
        base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode()
        for v in value.get("BinaryListValues", [])
    ]
    attribute["dataType"] = value["DataType"]
    return attribute


def sqs_record(message: Mapping[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    """One record of the Lambda SQS event for a message from ReceiveMessage."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: lambda_message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record |= {
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    return record


def batch_item_failures(response: Any, message_ids: Collection[str]) -> set[str] | None:
    """The message ids a `ReportBatchItemFailures` response says failed; None when Lambda treats
    the whole batch as failed (a malformed response or an identifier not in the batch)."""
    if response is None:
        return set()
    if not isinstance(response, Mapping):
        return None
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    failed: set[str] = set()
    for item in failures:
        if not isinstance(item, Mapping):
            return None
        identifier = item.get("itemIdentifier")
        if not isinstance(identifier, str) or not identifier or identifier not in message_ids:
            return None
        failed.add(identifier)
    return failed


# ---------------------------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------------------------


@dataclass
class _Function:
    spec: FunctionSpec
    name: str  # the physical function name
    arn: str
    environment: dict[str, str]  # Lambda's variables + the function's own
    module: ModuleType | None = None
    handler: Callable[[Any, Any], Any] | None = None
    previous_module: ModuleType | None = None
    replaced_module: bool = False

    def context(self) -> LambdaContext:
        return LambdaContext(
            function_name=self.name,
            invoked_function_arn=self.arn,
            memory_limit_in_mb=self.spec.memory_mb,
            timeout_seconds=self.spec.timeout_seconds,
            log_group_name=self.environment["AWS_LAMBDA_LOG_GROUP_NAME"],
            log_stream_name=self.environment["AWS_LAMBDA_LOG_STREAM_NAME"],
        )


def _account_of(description: StackDescription) -> str:
    for resource in description.resources.values():
        for value in (resource.physical_id, *resource.attributes.values()):
            if match := re.match(r"^arn:aws[\w-]*:[\w-]+:[\w-]*:(\d{12}):", str(value)):
                return match.group(1)
    for spec in description.functions.values():
        for source in spec.queue_sources:
            if match := re.match(r"^arn:aws[\w-]*:sqs:[\w-]*:(\d{12}):", source.queue_arn):
                return match.group(1)
    return DEFAULT_ACCOUNT


def lambda_environment(
    spec: FunctionSpec, *, function_name: str, region: str, aws_endpoint: str
) -> dict[str, str]:
    """The variables Lambda (as `sam local`) sets, then the function's own (which win)."""
    module_file = spec.module.rsplit(".", 1)[-1]
    environment = {
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout_seconds),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_SAM_LOCAL": "true",  # as `sam local`: powertools' Tracer stays off (no X-Ray daemon)
        "LAMBDA_TASK_ROOT": str((REPO_ROOT / spec.code_uri).resolve()),
        "_HANDLER": f"{module_file}.{spec.handler}",
        "AWS_ENDPOINT_URL": aws_endpoint,  # never real AWS
        **LOCAL_CREDENTIALS,
    }
    environment.update({k: str(v) for k, v in spec.environment.items()})
    return environment


@contextmanager
def swapped_environment(overlay: Mapping[str, str], remove: Collection[str] = ()) -> Iterator[None]:
    """`os.environ` with `overlay` (and without `remove`) inside; exactly as before afterwards.

    Keys are set and restored one by one (never cleared), so other threads reading their own
    variables (moto's, the runner's) never see them missing.
    """
    saved = dict(os.environ)
    try:
        for key in remove:
            if key not in overlay:
                os.environ.pop(key, None)
        os.environ.update(overlay)
        yield
    finally:
        for key in [k for k in os.environ if k not in saved]:
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


@contextmanager
def _invocation_slot(label: str) -> Iterator[None]:
    waited = 0.0
    while not INVOCATION_LOCK.acquire(timeout=_LOCK_WARNING_SECONDS):
        waited += _LOCK_WARNING_SECONDS
        logger.warning("%s has waited %.0fs for another invocation to finish", label, waited)
    try:
        yield
    finally:
        INVOCATION_LOCK.release()


# ---------------------------------------------------------------------------------------------
# SQS event source mapping
# ---------------------------------------------------------------------------------------------


class _QueuePoller:
    def __init__(
        self, runner: Runner, function: _Function, source: QueueSource, sqs: Any, wait_seconds: int
    ) -> None:
        self._runner = runner
        self._function = function
        self._source = source
        self._sqs = sqs
        self._wait = max(0, min(1, wait_seconds))
        self._stop = runner._stopping
        region = source.queue_arn.split(":")[3] if source.queue_arn.count(":") >= 5 else ""
        self._region = region or runner.description.region
        self._label = f"{function.spec.logical_id} <- {source.queue_logical_id}"
        self._failing = False
        self.thread = threading.Thread(
            target=self._run,
            name=f"local-sqs-{source.queue_logical_id}-{function.spec.logical_id}",
            daemon=True,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
                if self._failing:
                    logger.info("%s: queue reachable again", self._label)
                    self._failing = False
            except Exception as error:
                if not self._failing:
                    logger.warning("%s: polling failed (%s); retrying", self._label, error)
                    self._failing = True
                self._stop.wait(1.0)

    def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=self._source.queue_url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return response.get("Messages", [])

    def poll_once(self) -> bool:
        """Receive one batch (waiting at most 1 s for its first message) and invoke; False if empty."""
        size = max(1, self._source.batch_size)
        batch = self._receive(size, self._wait)
        if not batch:
            return False
        window = self._source.maximum_batching_window_seconds or 0
        deadline = time.monotonic() + window
        while len(batch) < size and window and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = self._receive(size - len(batch), 1 if remaining >= 1 else 0)
            batch = _merge(batch, more)
            if not more and remaining < 1:
                self._stop.wait(min(0.05, remaining))
        self._process(batch)
        return True

    def _process(self, messages: list[dict[str, Any]]) -> None:
        source = self._source
        event = {
            "Records": [sqs_record(m, queue_arn=source.queue_arn, region=self._region) for m in messages]
        }
        ids = [m["MessageId"] for m in messages]
        try:
            response, elapsed = self._runner._invoke(self._function, event, trigger=source.queue_logical_id)
        except Exception as error:
            logger.error(
                "%s: %d record(s) FAILED (%s); none deleted: they return after the visibility timeout",
                self._label,
                len(messages),
                _short(error),
            )
            return
        elapsed_ms = elapsed * 1000
        failed: set[str] | None = set()
        if source.report_batch_item_failures:
            failed = batch_item_failures(response, ids)
            if failed is None:
                logger.error(
                    "%s: %d record(s) in %.0f ms, but the batch response is invalid (%s): the whole "
                    "batch failed; none deleted",
                    self._label,
                    len(messages),
                    elapsed_ms,
                    _short(response),
                )
                return
        done = [m for m in messages if m["MessageId"] not in failed]
        again = self._runner._take_forced_redeliveries(source.queue_logical_id, done)
        if again:  # Runner.force_redelivery: processed, yet made visible again instead of deleted
            self._make_visible(again)
            done = [m for m in done if m not in again]
        self._delete(done)
        if failed:
            logger.warning(
                "%s: %d record(s) in %.0f ms, %d failed (left to retry: %s), %d deleted",
                self._label,
                len(messages),
                elapsed_ms,
                len(failed),
                ", ".join(sorted(failed)),
                len(done),
            )
        else:
            logger.info("%s: %d record(s) in %.0f ms, all succeeded", self._label, len(messages), elapsed_ms)

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            response = self._sqs.delete_message_batch(
                QueueUrl=self._source.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
            for failure in response.get("Failed", []):
                logger.error("%s: could not delete a processed message: %s", self._label, failure)

    def _make_visible(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            self._sqs.change_message_visibility_batch(
                QueueUrl=self._source.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(chunk)
                ],
            )
        logger.info(
            "%s: %d processed record(s) left undeleted: forced redelivery", self._label, len(messages)
        )


def _merge(batch: list[dict[str, Any]], more: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add `more` to `batch`; a message received again (its visibility timeout ran out during the
    batching window) keeps its place, with its newest receipt handle (the one that deletes it)."""
    merged = {m["MessageId"]: m for m in batch}
    for message in more:
        merged[message["MessageId"]] = message
    return list(merged.values())


def _short(value: Any, limit: int = 300) -> str:
    text = f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------------


class Runner:
    """Runs the functions of `description` in this process as Lambda would (see the module doc).

    `clock` (epoch seconds) drives the schedules and TTL, so tests can fast-forward; SQS and
    invocation timing always use real time.
    """

    def __init__(
        self,
        description: StackDescription,
        *,
        clock: Callable[[], float] = time.time,
        preload: bool = True,
        emulate_scheduler: bool = True,
        emulate_ttl: bool = True,
        emulate_ses_feedback: bool = True,
        ses_event_types: Collection[str] | None = None,
        poll_wait_seconds: int = 1,
        schedule_interval_seconds: float = 0.5,
        ttl_interval_seconds: float = 1.0,
        ses_interval_seconds: float = 0.5,
    ) -> None:
        self.description = description
        self._logs: list[InvocationLog] = []
        self.account = _account_of(description)
        self._clock = clock
        self._preload = preload
        self._emulate_scheduler = emulate_scheduler
        self._emulate_ttl = emulate_ttl
        self._emulate_ses = emulate_ses_feedback
        self._ses_event_types = ses_event_types
        self._poll_wait = poll_wait_seconds
        self._schedule_interval = schedule_interval_seconds
        self._ttl_interval = ttl_interval_seconds
        self._ses_interval = ses_interval_seconds
        self._functions: dict[str, _Function] = {}
        for logical_id, spec in description.functions.items():
            resource = description.resources.get(logical_id)
            name = resource.physical_id if resource is not None and resource.physical_id else logical_id
            self._functions[logical_id] = _Function(
                spec=spec,
                name=name,
                arn=f"arn:aws:lambda:{description.region}:{self.account}:function:{name}",
                environment=lambda_environment(
                    spec, function_name=name, region=description.region, aws_endpoint=description.aws_endpoint
                ),
            )
        self._stopping = threading.Event()
        self._pollers: list[_QueuePoller] = []
        self._schedules: Schedules | None = None
        self._ttl: TtlReaper | None = None
        self._ses: SesFeedback | None = None
        self._added_paths: list[str] = []
        self._started = False
        self._lifecycle = threading.Lock()
        self._redeliver_queues: frozenset[str] = frozenset()
        self._redelivered: set[str] = set()
        self._redeliver_lock = threading.Lock()

    # -- AWS clients of the runner itself (not the functions') -------------------------------
    def client(self, service: str, *, read_timeout: float = 30.0) -> Any:
        credentials = next(
            (
                (f.environment["AWS_ACCESS_KEY_ID"], f.environment["AWS_SECRET_ACCESS_KEY"])
                for f in self._functions.values()
            ),
            (LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"], LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]),
        )
        session = boto3.session.Session(
            aws_access_key_id=credentials[0],
            aws_secret_access_key=credentials[1],
            region_name=self.description.region,
        )
        return session.client(
            service,
            endpoint_url=self.description.aws_endpoint,
            config=Config(
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=5,
                read_timeout=read_timeout,
                max_pool_connections=4,
            ),
        )

    # -- functions ---------------------------------------------------------------------------
    @property
    def functions(self) -> dict[str, FunctionSpec]:
        return {logical_id: f.spec for logical_id, f in self._functions.items()}

    def function_arn(self, function_logical_id: str) -> str:
        return self._functions[function_logical_id].arn

    def function_for_arn(self, arn: str) -> str | None:
        """The logical id of the function a Lambda ARN (or name) names."""
        name = arn.split(":function:", 1)[-1].split(":", 1)[0]
        for logical_id, function in self._functions.items():
            if name in (function.name, logical_id):
                return logical_id
        return None

    def module(self, function_logical_id: str) -> ModuleType | None:
        """The function's module as imported by this runner (None before its cold start)."""
        return self._functions[function_logical_id].module

    def _load(self, function: _Function) -> Callable[[Any, Any], Any]:
        """Import the function's module afresh (its cold start); call with the environment set."""
        if function.handler is not None:
            return function.handler
        spec = function.spec
        started = time.monotonic()
        if not function.replaced_module:
            function.previous_module = sys.modules.get(spec.module)
            function.replaced_module = True
        sys.modules.pop(spec.module, None)
        try:
            module = importlib.import_module(spec.module)
            handler = getattr(module, spec.handler)
        except Exception:
            sys.modules.pop(spec.module, None)
            logger.error(
                "%s: init failed importing %s:\n%s", spec.logical_id, spec.module, traceback.format_exc()
            )
            raise
        function.module, function.handler = module, handler
        count = self._call_counter(spec.logical_id)
        for client in _clients_in(vars(module)):  # every call counts into the open measurements
            client.meta.events.register("before-call.*.*", count)
        logger.info(
            "%s: cold start, imported %s in %.0f ms",
            spec.logical_id,
            spec.module,
            (time.monotonic() - started) * 1000,
        )
        return handler

    def _invoke(self, function: _Function, event: Any, *, trigger: str) -> tuple[Any, float]:
        """Invoke; returns the marshalled result and the handler's duration (seconds, without the
        wait for the invocation lock). Raises what the handler raised, or FunctionError."""
        payload = marshal(event)
        spec = function.spec
        with _invocation_slot(spec.logical_id), swapped_environment(function.environment, NOT_IN_LAMBDA):
            handler = self._load(function)
            context = function.context()
            started = time.monotonic()
            try:
                result = handler(payload, context)
            except Exception:
                logger.error(
                    "%s (%s) raised after %.0f ms:\n%s",
                    spec.logical_id,
                    trigger,
                    (time.monotonic() - started) * 1000,
                    traceback.format_exc().rstrip(),
                )
                raise
            elapsed = time.monotonic() - started
        for log in list(self._logs):
            records = len(event.get("Records") or []) if isinstance(event, dict) else 0
            log.invocations.append(Invocation(spec.logical_id, trigger, records, elapsed))
        if elapsed > spec.timeout_seconds:
            logger.error(
                "%s (%s): Task timed out after %.2f seconds (it ran %.2f s): failed, as in Lambda",
                spec.logical_id,
                trigger,
                spec.timeout_seconds,
                elapsed,
            )
            raise FunctionError(
                "Sandbox.Timedout", f"Task timed out after {spec.timeout_seconds:.2f} seconds"
            )
        return marshal(result), elapsed

    @contextmanager
    def measured(self) -> Iterator[InvocationLog]:
        """Record the functions' invocations and AWS calls while the block runs (InvocationLog)."""
        log = InvocationLog()
        self._logs.append(log)
        try:
            yield log
        finally:
            self._logs.remove(log)

    def _call_counter(self, function: str) -> Callable[..., None]:
        """The hook a function's clients carry from its cold start: each call counts into every
        open measurement (none open: nothing to do)."""

        def count(model: Any, **_: Any) -> None:
            for log in list(self._logs):
                log.count(function, f"{model.service_model.service_name}:{model.name}")

        return count

    def invoke(self, function_logical_id: str, event: Any) -> Any:
        """Invoke a function synchronously, as Lambda's Invoke; returns its (JSON) result.

        Raises the handler's own exception when it raises, `FunctionError` on a timeout or an
        unserialisable result, KeyError for an unknown function.
        """
        function = self._functions.get(function_logical_id)
        if function is None:
            raise KeyError(f"no function {function_logical_id!r} in the stack")
        result, elapsed = self._invoke(function, event, trigger="invoke")
        logger.info("%s: invoked in %.0f ms", function_logical_id, elapsed * 1000)
        return result

    # -- forced redelivery (the reliability suite, local/soak.py) -----------------------------
    def force_redelivery(self, queue_logical_ids: Collection[str]) -> None:
        """SQS delivers at least once: from now on, each message of these queues whose record
        succeeded is not deleted the first time but made visible again at once, so its function
        receives it a second time (as after a lost DeleteMessage). An empty list turns it off."""
        with self._redeliver_lock:
            self._redeliver_queues = frozenset(queue_logical_ids)

    @property
    def forced_redeliveries(self) -> int:
        """How many messages `force_redelivery` has handed back so far."""
        with self._redeliver_lock:
            return len(self._redelivered)

    def _take_forced_redeliveries(
        self, queue_logical_id: str, done: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        with self._redeliver_lock:
            if queue_logical_id not in self._redeliver_queues:
                return []
            again = [m for m in done if m["MessageId"] not in self._redelivered]
            self._redelivered.update(m["MessageId"] for m in again)
            return again

    # -- lifecycle ---------------------------------------------------------------------------
    def _ensure_import_paths(self) -> None:
        paths = [REPO_ROOT, *sorted(p for p in (REPO_ROOT / "layers").glob("*") if p.is_dir())]
        for path in paths:
            text = str(path)
            if text not in sys.path:
                sys.path.append(text)
                self._added_paths.append(text)

    def start(self) -> None:
        with self._lifecycle:
            if self._started:
                return
            self._started = True
            self._stopping.clear()
            self._ensure_import_paths()
            if self._emulate_ses:
                # Before any function is imported: the send capture must be on boto3's default
                # session when the email sender creates its SES client.
                self._ses = SesFeedback(
                    events=self.client("events"),
                    sesv2=self.client("sesv2"),
                    source=moto_sent_mail(
                        self.description.aws_endpoint, account=self.account, region=self.description.region
                    ),
                    account=self.account,
                    region=self.description.region,
                    clock=self._clock,
                    interval_seconds=self._ses_interval,
                    event_types=self._ses_event_types,
                )
                self._ses.start()
            if self._preload:
                for function in self._functions.values():
                    try:
                        with (
                            _invocation_slot(function.spec.logical_id),
                            swapped_environment(function.environment, NOT_IN_LAMBDA),
                        ):
                            self._load(function)
                    except Exception:
                        pass  # logged by _load; the first invocation tries again, as Lambda does
            if self._emulate_scheduler:
                self._schedules = Schedules(
                    scheduler=self.client("scheduler"),
                    delivery=TargetDelivery(
                        sqs=self.client("sqs"),
                        stepfunctions=self.client("stepfunctions"),
                        events=self.client("events"),
                        sns=self.client("sns"),
                        invoke=self.invoke,
                        function_for_arn=self.function_for_arn,
                    ),
                    account=self.account,
                    region=self.description.region,
                    function_schedules=[
                        (logical_id, source)
                        for logical_id, f in self._functions.items()
                        for source in f.spec.schedules
                    ],
                    invoke=self.invoke,
                    clock=self._clock,
                    interval_seconds=self._schedule_interval,
                )
                self._schedules.start()
            if self._emulate_ttl:
                self._ttl = TtlReaper(
                    self.client("dynamodb"), clock=self._clock, interval_seconds=self._ttl_interval
                )
                self._ttl.start()
            for function in self._functions.values():
                for source in function.spec.queue_sources:
                    poller = _QueuePoller(
                        self, function, source, self.client("sqs", read_timeout=20), self._poll_wait
                    )
                    self._pollers.append(poller)
                    poller.thread.start()
                    logger.info(
                        "%s: polling %s (batch %d, window %ss, %s)",
                        function.spec.logical_id,
                        source.queue_logical_id,
                        source.batch_size,
                        source.maximum_batching_window_seconds,
                        "partial batch responses" if source.report_batch_item_failures else "whole batches",
                    )
            logger.info(
                "runner: %d function(s), %d queue event source(s) on %s",
                len(self._functions),
                len(self._pollers),
                self.description.aws_endpoint,
            )

    def stop(self) -> None:
        """Stop every thread (waiting for invocations in progress) and undo the process changes."""
        with self._lifecycle:
            if not self._started:
                return
            self._stopping.set()
            longest = max((f.spec.timeout_seconds for f in self._functions.values()), default=0)
            for poller in self._pollers:
                poller.thread.join(longest + 5)
                if poller.thread.is_alive():
                    logger.warning("runner: %s did not stop", poller.thread.name)
            self._pollers.clear()
            for component in (self._schedules, self._ttl, self._ses):
                if component is not None:
                    component.stop()
            self._schedules = self._ttl = self._ses = None
            with INVOCATION_LOCK:
                for function in self._functions.values():
                    if function.replaced_module:
                        if function.previous_module is not None:
                            sys.modules[function.spec.module] = function.previous_module
                        elif sys.modules.get(function.spec.module) is function.module:
                            del sys.modules[function.spec.module]
                    function.replaced_module = False
                    function.previous_module = None
            for path in self._added_paths:
                if path in sys.path:
                    sys.path.remove(path)
            self._added_paths.clear()
            self._started = False
            logger.info("runner: stopped")

    def __enter__(self) -> Runner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
