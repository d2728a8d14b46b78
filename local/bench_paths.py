"""Herald's full paths, measured side by side on the local stack (issue 13 items 1 and 5).

Ten paths, each end to end — the router, the senders, the escalation, the feedback loop, every
function the path runs — on the local stack (local/stack.py: moto on loopback as AWS, Step Functions
executing, the provider sandboxes, every function of template.yaml invoked in-process by the
runner exactly as the template wires it). Each path is played with batches of N notifications (10
and 100 by default): N people seeded as the path needs, N `NotificationRequested` events put on the
bus by a producer, then whatever the path needs after (an acknowledgement in the app, the fallback
delay, the digest run), until every queue is empty and every escalation has ended.

What is counted, per notification (the batch's figures divided by N):

- AWS calls by API, per function and in total: botocore event hooks on each function's own clients
  (`Runner.measured()`); what Lambda's SQS event source mapping, EventBridge and Step Functions do
  on Herald's behalf is priced too (receives and deletes per batch, the messages they send), but not
  counted as the functions' calls;
- Step Functions state transitions, from the execution history of every execution the path started;
- provider calls: what the sandboxes accepted (FCM, Twilio, Pusher, webhook receivers) and the SES
  sends (SES is priced as a provider, apart);
- Lambda CPU time per function: each invocation's own thread CPU clock plus the CPU of the thread
  pool work it hands out (the senders run a batch's records in a thread pool; FCM sends from another)
  — thread clocks, so moto's and the sandboxes' threads in the same process never count;
- DynamoDB request units from the items themselves: each write's item size (1 KB steps, x2 in a
  transaction), index writes (LSI/GSI entries the write creates, changes or removes), each read's
  size (4 KB steps, eventually consistent reads half);
- USD per million notifications at the list prices of `local/prices.json` (`cost_breakdown`), and
  the hosted platforms' list prices beside it as a ratio.

`python -m local.bench_paths --out FILE` writes the report as JSON (every figure `value`, `unit`,
`how`); `make bench` (local/bench.py) runs it in a fresh interpreter and prints the table. What the
handlers print (their logs and EMF metrics, counted as CloudWatch Logs bytes) goes to the log file.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import itertools
import json
import logging
import math
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import thread as futures_thread
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PRICES_FILE = REPO / "local" / "prices.json"
DEFAULT_SIZES = (10, 100)
SMOKE_SIZES = (2,)
# The stack as a production deployment runs it (Stage prod: INFO logs, the state machine logs errors
# only), with the waits of the escalation and the digest short enough to measure: the fallback delay
# at the template's minimum, the digest due a second after the notification, and the recurring
# digest run left to the bench (it invokes it as the schedule would).
STACK_PARAMETERS = {
    "Stage": "prod",
    "FallbackDelaySeconds": "30",
    "DigestDelaySeconds": "1",
    "DigestMinIntervalSeconds": "0",
    "DigestSchedule": "rate(1 day)",
}
RUNNER_OPTIONS = {"ttl_interval_seconds": 30.0}  # nothing the bench makes expires within a run
WORK_QUEUES = (
    "IngestQueue",
    "EmailQueue",
    "PushQueue",
    "SmsQueue",
    "RealtimeQueue",
    "WebhookQueue",
    "FeedbackQueue",
)
PUT_BATCH = 10  # PutEvents takes at most 10 entries
DEVICE = {"platform": "android", "registered_at": "2026-01-01T00:00:00Z"}
WEBHOOK_RECEIVER = "bench"
SQS_CHUNK = 64 * 1024
EVENT_CHUNK = 64 * 1024
SQS_BATCH_MAX = 10  # ReceiveMessage and DeleteMessageBatch: at most 10 messages a request
PARALLEL_FUNCTIONS_SUFFIX = "SenderFunction"  # channel senders settle a batch's records in parallel
SES_SEND_OPERATIONS = {("sesv2", "SendEmail"), ("ses", "SendEmail"), ("ses", "SendRawEmail")}

logger = logging.getLogger("local.bench_paths")


# ---------------------------------------------------------------------------------------------
# The paths
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathSpec:
    """One path: the catalog type sent, the person who makes the router take it, what it delivers.

    `deliveries`: provider -> deliveries per notification ("ses" counts the SES sends).
    `then`: what happens after the first deliveries — "ack" (the app acknowledges the push),
    "timeout" (nobody does: the email follows FallbackDelaySeconds later), "digest" (the digest run
    finds the notification unread) — or None.
    """

    name: str
    type: str
    summary: str
    deliveries: Mapping[str, int]
    device: bool = False
    email: str | None = "success"  # the SES mailbox-simulator scenario of the person's address
    phone: bool = False
    online: bool = False
    marketing_opt_in: bool = False
    webhook: bool = False
    then: str | None = None


PATHS: tuple[PathSpec, ...] = (
    # The digest first: its run digests every medium notification due, and the later paths' medium
    # notifications become due a second after they are created.
    PathSpec(
        "digest",
        "order_shipped",
        "medium, pushed, still unread: the digest run emails it (SES delivery event back)",
        {"fcm": 1, "ses": 1},
        device=True,
        then="digest",
    ),
    PathSpec("medium_push", "order_shipped", "medium, offline, a device: push", {"fcm": 1}, device=True),
    PathSpec(
        "medium_online_realtime",
        "comment_reply",
        "medium, online (Pusher channel occupied): in-app",
        {"pusher": 1},
        device=True,
        online=True,
    ),
    PathSpec(
        "medium_no_device_email",
        "order_shipped",
        "medium, no device: email (SES delivery event back)",
        {"ses": 1},
    ),
    PathSpec(
        "high_acked",
        "payment_receipt",
        "high: escalation, push, acknowledged in the app (POST .../ack)",
        {"fcm": 1},
        device=True,
        then="ack",
    ),
    PathSpec(
        "high_timeout_email",
        "payment_receipt",
        "high: escalation, push not acknowledged, email after the fallback delay",
        {"fcm": 1, "ses": 1},
        device=True,
        then="timeout",
    ),
    PathSpec(
        "critical",
        "security_alert",
        "critical: push + SMS + email at once (Twilio status callbacks, SES delivery event back)",
        {"fcm": 1, "twilio": 1, "ses": 1},
        device=True,
        phone=True,
    ),
    PathSpec(
        "low_email",
        "marketing_promo",
        "low, marketing opt-in: email (SES delivery event back)",
        {"ses": 1},
        marketing_opt_in=True,
    ),
    PathSpec(
        "system_webhook",
        "order_webhook",
        "system: HMAC-signed webhook POST",
        {"webhook": 1},
        email=None,
        webhook=True,
    ),
    PathSpec(
        "ses_bounce_feedback",
        "order_shipped",
        "medium email to a bouncing address: SES bounce event, address suppressed",
        {"ses": 1},
        email="bounce",
    ),
)
PATH_NAMES = tuple(p.name for p in PATHS)


# ---------------------------------------------------------------------------------------------
# Prices and the cost model (pure)
# ---------------------------------------------------------------------------------------------


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def cost_breakdown(usage: Mapping[str, float], prices: Mapping[str, Any]) -> dict[str, float]:
    """USD per million notifications, by AWS price, from `usage` (each price's unit per
    notification). Every usage key must be one of the file's AWS prices: a provider fee or a
    vendor's price is never part of Herald's own cost."""
    aws = prices["aws"]
    unknown = sorted(set(usage) - set(aws))
    if unknown:
        raise KeyError(f"no AWS price for {unknown} in the price file")
    return {key: float(amount) * float(aws[key]["usd"]) * 1e6 for key, amount in usage.items() if amount}


# Each provider the sandboxes (or SES) count, and its fee in the price file (None: no fee).
PROVIDER_FEES: dict[str, str | None] = {
    "ses": "ses_email",
    "sendgrid": "sendgrid_email",
    "twilio": "twilio_sms_us",
    "fcm": "fcm_push",
    "pusher": "pusher_message",
    "webhook": None,  # a POST to the subscriber's own endpoint
}


def provider_fees(provider_calls: Mapping[str, float], prices: Mapping[str, Any]) -> dict[str, float]:
    """The providers' own fees, USD per million notifications (apart from Herald's cost)."""
    fees = prices["providers"]
    return {
        provider: count * float(fees[PROVIDER_FEES[provider]]["usd"]) * 1e6
        for provider, count in provider_calls.items()
        if PROVIDER_FEES[provider] is not None and count
    }


def vendor_costs(messages: float, prices: Mapping[str, Any]) -> dict[str, float]:
    """The hosted platforms' list price, USD per million notifications: Knock per channel message,
    Novu per workflow run (one a notification)."""
    vendors = prices["vendors"]
    return {
        "knock": messages * float(vendors["knock"]["usd"]) * 1e6,
        "novu": 1.0 * float(vendors["novu"]["usd"]) * 1e6,
    }


def lambda_billed_seconds(
    *,
    cpu_seconds: float,
    memory_mb: int,
    aws_calls: int,
    provider_calls: int,
    concurrency: int,
    assumptions: Mapping[str, Any],
) -> float:
    """One invocation's billed duration, modelled: the CPU time measured here stretched to the
    function's share of a vCPU (Lambda gives a full one at 1,769 MB), plus the waits of its calls
    at the assumed latencies, divided by the calls it makes at once (a sender settles its batch's
    records in parallel)."""
    full = float(assumptions["lambda_vcpu_full_memory_mb"]["value"])
    stretch = max(1.0, full / memory_mb)
    waits_ms = aws_calls * float(assumptions["aws_call_ms"]["value"]) + provider_calls * float(
        assumptions["provider_call_ms"]["value"]
    )
    return cpu_seconds * stretch + waits_ms / 1000 / max(1, concurrency)


# ---------------------------------------------------------------------------------------------
# DynamoDB request units from item sizes (pure)
# ---------------------------------------------------------------------------------------------


def attribute_value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one typed attribute value, by DynamoDB's rules (Item sizes and formats)."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        return _number_size(str(data))
    if kind == "B":
        return len(data) if isinstance(data, bytes | bytearray) else len(str(data).encode())
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode()) for s in data)
    if kind == "NS":
        return sum(_number_size(str(n)) for n in data)
    if kind == "BS":
        return sum(len(b) if isinstance(b, bytes | bytearray) else len(str(b).encode()) for b in data)
    if kind == "L":
        return 3 + sum(1 + attribute_value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_value_size(v) for k, v in data.items())
    raise ValueError(f"unknown attribute type {kind!r}")


def _number_size(text: str) -> int:
    digits = text.lstrip("+-").replace(".", "").lower().split("e")[0].strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes of an item: each attribute's name plus its value."""
    return sum(len(name.encode()) + attribute_value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: int, *, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


@dataclass(frozen=True)
class IndexSpec:
    name: str
    keys: tuple[str, ...]
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    include: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    keys: tuple[str, ...]
    indexes: tuple[IndexSpec, ...] = ()


def tables_from_template(template: Mapping[str, Any]) -> dict[str, TableSpec]:
    """Each DynamoDB table of the template: its key and its indexes (local and global)."""
    tables = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        properties = resource["Properties"]
        indexes = []
        for index in [
            *properties.get("LocalSecondaryIndexes", []),
            *properties.get("GlobalSecondaryIndexes", []),
        ]:
            if "IndexName" not in index:
                continue  # a conditional (Fn::If) index, absent with the default parameters (decision 033)
            projection = index.get("Projection", {})
            indexes.append(
                IndexSpec(
                    name=index["IndexName"],
                    keys=tuple(k["AttributeName"] for k in index["KeySchema"]),
                    projection=projection.get("ProjectionType", "KEYS_ONLY"),
                    include=frozenset(projection.get("NonKeyAttributes", [])),
                )
            )
        tables[logical_id] = TableSpec(
            logical_id, tuple(k["AttributeName"] for k in properties["KeySchema"]), tuple(indexes)
        )
    return tables


def index_writes(
    table: TableSpec, *, size: int, attributes: set[str], touched: set[str] | None
) -> dict[str, int]:
    """WRU of the index entries one write creates, changes or removes, by index: an item is in an
    index when it has the index's key attributes; an ALL projection rewrites the entry whenever the
    item changes, KEYS_ONLY and INCLUDE ones only when the write touches the index's keys or included
    attributes (`touched` None: a whole-item Put)."""
    units: dict[str, int] = {}
    for index in table.indexes:
        if not set(index.keys) <= attributes:
            continue
        if index.projection == "ALL":
            units[index.name] = write_units(size)
        elif touched is None or touched & (set(index.keys) | index.include):
            units[index.name] = 1
    return units


def index_write_units(table: TableSpec, *, size: int, attributes: set[str], touched: set[str] | None) -> int:
    return sum(index_writes(table, size=size, attributes=attributes, touched=touched).values())


_UPDATE_KEYWORDS = {"set", "remove", "add", "delete", "and", "if_not_exists", "list_append", "size"}
_NAME = re.compile(r"(?<![:\w#.])(#?[A-Za-z_]\w*+)(?!\s*\()")  # a path's first name only


def updated_attributes(expression: str, names: Mapping[str, str] | None) -> set[str]:
    """The top-level attributes an UpdateExpression sets, removes, adds to or deletes from."""
    found = set()
    for token in _NAME.findall(expression or ""):
        if token.lower() in _UPDATE_KEYWORDS:
            continue
        found.add((names or {}).get(token, token) if token.startswith("#") else token)
    return found


@dataclass
class Units:
    """DynamoDB request units of one call: reads, writes (the table's, x2 in a transaction) and the
    index writes they cause."""

    read: float = 0.0
    write: float = 0.0
    index_write: float = 0.0
    by_index: Counter[str] = field(default_factory=Counter)  # "Table.Index" -> WRU

    def __iadd__(self, other: Units) -> Units:
        self.read += other.read
        self.write += other.write
        self.index_write += other.index_write
        self.by_index += other.by_index
        return self

    @classmethod
    def of_write(cls, table: TableSpec | None, units: int, indexes: Mapping[str, int]) -> Units:
        prefix = table.logical_id if table else "?"
        return cls(
            write=units,
            index_write=sum(indexes.values()),
            by_index=Counter({f"{prefix}.{name}": n for name, n in indexes.items()}),
        )


def _key_of(table: TableSpec, item_or_key: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(json.dumps(item_or_key.get(k), sort_keys=True, default=str) for k in table.keys)


def dynamodb_units(
    operation: str,
    params: Mapping[str, Any],
    response: Mapping[str, Any],
    *,
    tables: Mapping[str, TableSpec],
    final_items: Mapping[tuple[str, tuple[Any, ...]], Mapping[str, Any]],
) -> Units:
    """Request units of one DynamoDB call from its request, its response and the items as they are
    after the run (`final_items`, by (table name, key)). `tables` is by physical table name.

    Approximations (stated in the report): a Put is sized by its new item (the larger image unless it
    overwrites a bigger one); an Update by the item as it ends the run (items only grow on Herald's
    paths); a Query or a GetItem by what it returned."""
    failed = "Error" in response

    def final(table: str, key: Mapping[str, Any]) -> Mapping[str, Any]:
        spec = tables.get(table)
        return final_items.get((table, _key_of(spec, key)), {}) if spec else {}

    def put(table: str, item: Mapping[str, Any], factor: int) -> Units:
        size = item_size(item)
        spec = tables.get(table)
        indexes = (
            {}
            if failed or spec is None
            else index_writes(spec, size=size, attributes=set(item), touched=None)
        )
        return Units.of_write(spec, factor * write_units(size), indexes)

    def update(table: str, request: Mapping[str, Any], factor: int) -> Units:
        after = final(table, request["Key"])
        touched = updated_attributes(
            request.get("UpdateExpression", ""), request.get("ExpressionAttributeNames")
        )
        size = max(item_size(after), item_size(request["Key"])) if after else item_size(request["Key"])
        spec = tables.get(table)
        indexes = (
            {}
            if failed or spec is None
            else index_writes(
                spec, size=size, attributes=set(after) | touched | set(request["Key"]), touched=touched
            )
        )
        return Units.of_write(spec, factor * write_units(size), indexes)

    def delete(table: str, key: Mapping[str, Any], factor: int) -> Units:
        old = response.get("Attributes") or final(table, key)
        return Units(write=factor * write_units(item_size(old) if old else 0))

    table = params.get("TableName", "")
    if operation == "PutItem":
        return put(table, params["Item"], 1)
    if operation == "UpdateItem":
        return update(table, params, 1)
    if operation == "DeleteItem":
        return delete(table, params["Key"], 1)
    if operation == "GetItem":
        return Units(
            read=read_units(
                item_size(response.get("Item") or {}), consistent=bool(params.get("ConsistentRead"))
            )
        )
    if operation in ("Query", "Scan"):
        items = response.get("Items")
        size = (
            sum(item_size(i) for i in items)
            if items is not None
            else int(response.get("ScannedCount", 0)) * 1024
        )
        return Units(read=read_units(size, consistent=bool(params.get("ConsistentRead"))))
    if operation == "BatchGetItem":
        units = Units()
        for name, request in params.get("RequestItems", {}).items():
            found = (
                {_key_of(tables[name], i): i for i in response.get("Responses", {}).get(name, [])}
                if name in tables
                else {}
            )
            for key in request.get("Keys", []):
                got = found.get(_key_of(tables[name], key), {}) if name in tables else {}
                units.read += read_units(item_size(got), consistent=bool(request.get("ConsistentRead")))
        return units
    if operation == "BatchWriteItem":
        units = Units()
        for name, requests in params.get("RequestItems", {}).items():
            for request in requests:
                if "PutRequest" in request:
                    units += put(name, request["PutRequest"]["Item"], 1)
                elif "DeleteRequest" in request:
                    units += delete(name, request["DeleteRequest"]["Key"], 1)
        return units
    if operation == "TransactWriteItems":
        units = Units()
        for action in params.get("TransactItems", []):
            ((kind, request),) = action.items()
            if kind == "Put":
                units += put(request["TableName"], request["Item"], 2)
            elif kind == "Update":
                units += update(request["TableName"], request, 2)
            elif kind == "Delete":
                units += delete(request["TableName"], request["Key"], 2)
            elif kind == "ConditionCheck":  # billed as a transactional write of the item checked
                checked = final(request["TableName"], request["Key"])
                units.write += 2 * write_units(item_size(checked) if checked else 0)
        return units
    if operation == "TransactGetItems":
        units = Units()
        for action in params.get("TransactItems", []):
            request = action["Get"]
            got = final(request["TableName"], request["Key"])
            units.read += 2 * read_units(item_size(got), consistent=True)
        return units
    return Units()  # DescribeTable and the like: not billed per request


# ---------------------------------------------------------------------------------------------
# Measuring on the stack: CPU, calls, output
# ---------------------------------------------------------------------------------------------


@dataclass
class InvocationCost:
    seq: int
    function: str
    records: int
    event_kind: str  # "sqs" | "http" | "scheduled" | "other"
    cpu_seconds: float  # without full garbage collections
    gc_seconds: float  # full garbage collections in its threads (this process's heap, not Lambda's)
    wall_seconds: float
    sandbox_deliveries: int


class CpuLedger:
    """Each invocation's CPU time: its own thread's CPU clock plus the CPU of the thread-pool work it
    hands out (`concurrent.futures` work items submitted while it runs, at any depth), so the
    senders' per-record threads and the FCM pool count, and moto's and the sandboxes' threads (in
    the same process) never do. Invocations are serialised by the runner (one at a time).

    Full (generation 2) garbage collections that run in an invocation's threads are taken out and
    reported apart: their cost here is the size of this process's heap — moto's whole state, the
    sandboxes, every function's modules — which a Lambda container does not hold."""

    def __init__(self, outbox_seq: Callable[[], int]) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pool_cpu: Counter[str] = Counter()
        self._gc_cpu: Counter[str] = Counter()
        self._outbox_seq = outbox_seq
        self.invocations: list[InvocationCost] = []
        self.current = 0  # the sequence number of the invocation running (0: none)
        self._seq = 0
        self._restore: Callable[[], None] | None = None

    def _collecting(self, phase: str, info: Mapping[str, Any]) -> None:
        function = self.function()
        if function is None or info.get("generation") != 2:
            return
        if phase == "start":
            self._local.gc_started = time.thread_time()
        elif (started := getattr(self._local, "gc_started", None)) is not None:
            self._local.gc_started = None
            with self._lock:
                self._gc_cpu[function] += time.thread_time() - started

    def function(self) -> str | None:
        return getattr(self._local, "function", None)

    def install(self) -> None:
        """Tag `concurrent.futures` work items with the function whose thread submitted them."""
        work_item = futures_thread._WorkItem
        original_init, original_run = work_item.__init__, work_item.run
        ledger = self

        def init(item: Any, *args: Any, **kwargs: Any) -> None:
            original_init(item, *args, **kwargs)
            item._bench_function = ledger.function()

        def run(item: Any) -> None:
            function = getattr(item, "_bench_function", None)
            if function is None:
                original_run(item)
                return
            previous = ledger.function()
            ledger._local.function = function
            started = time.thread_time()
            try:
                original_run(item)
            finally:
                spent = time.thread_time() - started
                ledger._local.function = previous
                with ledger._lock:
                    ledger._pool_cpu[function] += spent

        work_item.__init__ = init  # type: ignore[method-assign]
        work_item.run = run  # type: ignore[method-assign]

        gc.callbacks.append(self._collecting)

        def restore() -> None:
            work_item.__init__ = original_init  # type: ignore[method-assign]
            work_item.run = original_run  # type: ignore[method-assign]
            gc.callbacks.remove(self._collecting)

        self._restore = restore

    def uninstall(self) -> None:
        if self._restore is not None:
            self._restore()
            self._restore = None

    def wrap(self, function: str, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def measured(event: Any, context: Any) -> Any:
            self._seq += 1
            seq = self.current = self._seq
            before_pool, before_gc = self._pool_cpu[function], self._gc_cpu[function]
            before_outbox = self._outbox_seq()
            wall = time.perf_counter()
            self._local.function = function
            started = time.thread_time()
            try:
                return handler(event, context)
            finally:
                own = time.thread_time() - started
                self._local.function = None
                wall = time.perf_counter() - wall
                self.current = 0
                with self._lock:
                    pool = self._pool_cpu[function] - before_pool
                    collected = self._gc_cpu[function] - before_gc
                self.invocations.append(
                    InvocationCost(
                        seq=seq,
                        function=function,
                        records=len(event.get("Records") or []) if isinstance(event, dict) else 0,
                        event_kind=_event_kind(event),
                        cpu_seconds=max(0.0, own + pool - collected),
                        gc_seconds=collected,
                        wall_seconds=wall,
                        sandbox_deliveries=self._outbox_seq() - before_outbox,
                    )
                )

        measured.__wrapped__ = handler  # type: ignore[attr-defined]
        return measured


def _event_kind(event: Any) -> str:
    if not isinstance(event, dict):
        return "other"
    records = event.get("Records") or []
    if records and records[0].get("eventSource") == "aws:sqs":
        return "sqs"
    if "requestContext" in event and "routeKey" in event:
        return "http"
    if event.get("detail-type") == "Scheduled Event":
        return "scheduled"
    return "other"


@dataclass
class Call:
    function: str
    service: str
    operation: str
    params: Mapping[str, Any]
    response: Mapping[str, Any]
    invocation: int


class CallRecorder:
    """Every AWS call of the functions' clients with its parameters and its response (botocore
    `before-parameter-build` and `after-call` hooks), for what the call counts cannot tell: item
    sizes, batch entries, execution ARNs."""

    KEY = "herald_bench_params"

    def __init__(self, ledger: CpuLedger) -> None:
        self.calls: list[Call] = []
        self._ledger = ledger

    def attach(self, function: str, clients: Iterable[Any]) -> None:
        for client in clients:
            client.meta.events.register("before-parameter-build", self._keep_params)
            client.meta.events.register("after-call", self._recorder(function))

    def _keep_params(self, params: Any, context: Any = None, **_: Any) -> None:
        if context is not None:
            context[self.KEY] = params

    def _recorder(self, function: str) -> Callable[..., None]:
        def record(model: Any, parsed: Any = None, context: Any = None, **_: Any) -> None:
            self.calls.append(
                Call(
                    function,
                    model.service_model.service_name,
                    model.name,
                    (context or {}).get(self.KEY) or {},
                    parsed or {},
                    self._ledger.current,
                )
            )

        return record


class CountingStream(io.TextIOBase):
    """stdout for the handlers: counts the bytes (CloudWatch Logs would ingest them) and writes them
    to the log file."""

    def __init__(self, sink: io.TextIOBase) -> None:
        self._sink = sink
        self.bytes = 0
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self.bytes += len(text.encode())
            self._sink.write(text)
        return len(text)

    def flush(self) -> None:
        self._sink.flush()


# ---------------------------------------------------------------------------------------------
# Playing the paths
# ---------------------------------------------------------------------------------------------


class PathIncomplete(RuntimeError):
    pass


@dataclass
class Window:
    """What one path's batch did, measured: the raw material of its figures."""

    path: str
    size: int
    seconds: float
    calls: Counter[tuple[str, str]]  # (function, "service:Operation") -> count (Runner.measured)
    recorded: list[Call]
    invocations: list[InvocationCost]
    sandbox: Counter[str]  # provider -> deliveries accepted
    transitions: int
    executions: int
    log_bytes: int
    final_items: dict[tuple[str, tuple[Any, ...]], dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def daytime_zone() -> str:
    """A fixed-offset zone where it is now about noon (inside the digest's 09:00-21:00 window)."""
    offset = (12 - datetime.now(UTC).hour) % 24
    offset = offset - 24 if offset > 12 else offset
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-3 is UTC+3


class PathBench:
    """Plays the paths on a running local stack and measures each batch."""

    def __init__(self, stack: Any, stream: CountingStream, progress: Callable[[str], None]) -> None:
        from herald.catalog import load_catalog
        from herald.stores.presence import PresenceStore
        from herald.stores.users import UserStore
        from local.app_client import AppClient
        from tools.cfn_yaml import load_template

        assert stack.description and stack.sandbox and stack.runner and stack.api
        self.stack = stack
        self.description = stack.description
        self.sandbox = stack.sandbox
        self.runner = stack.runner
        self.stream = stream
        self.say = progress
        self.catalog = load_catalog()
        self.events = stack.client("events")
        self.sqs = stack.client("sqs")
        self.dynamodb = stack.client("dynamodb")
        self.sfn = stack.client("stepfunctions")
        self.users = UserStore(self.dynamodb, self.description.ref("UsersTable"))
        self.presence = PresenceStore(self.dynamodb, self.description.ref("PresenceTable"))
        self.app = AppClient(stack.api.url, self.sandbox.url, timeout=30)
        self.template = load_template(REPO / "template.yaml")
        by_logical = tables_from_template(self.template)
        self.tables = {
            self.description.ref(lid): spec
            for lid, spec in by_logical.items()
            if lid in self.description.resources
        }
        self.queue_urls = {q: self.description.ref(q) for q in WORK_QUEUES}
        self.source_queue_urls = {
            source.queue_url for spec in self.description.functions.values() for source in spec.queue_sources
        }
        self.memory = {lid: spec.memory_mb for lid, spec in self.description.functions.items()}
        self.fallback_seconds = float(self.description.parameters.get("FallbackDelaySeconds", 300))
        self.digest_delay = float(self.description.parameters.get("DigestDelaySeconds", 86400))
        self.retention_days = float(self.description.parameters.get("NotificationRetentionDays", 90))
        self.ledger = CpuLedger(lambda: self.sandbox.outbox.last_seq)
        self.recorder = CallRecorder(self.ledger)
        self._instrument()
        self._phones = itertools.count(1)  # a number of its own for every person seeded
        self._webhook_secret = "whsec_bench_" + "0" * 24
        prefix = self.description.functions["WebhookSenderFunction"].environment["WEBHOOK_SECRET_PREFIX"]
        stack.client("secretsmanager").create_secret(
            Name=prefix + WEBHOOK_RECEIVER, SecretString=json.dumps({"secret": self._webhook_secret})
        )
        self.sandbox.receivers.add(WEBHOOK_RECEIVER, self._webhook_secret)
        self.sandbox.twilio.callback_rules.enabled = True  # Twilio posts `sent` then `delivered`
        self.sandbox.twilio.callback_rules.delay_seconds = 0.2

    def _instrument(self) -> None:
        """Wrap each function's handler (CPU) and hook its clients (calls with their sizes). The
        runner imported every module at start (its cold starts) and counts the same clients."""
        from local.runner import _clients_in

        self.ledger.install()
        functions = self.runner._functions  # the runner's loaded handlers (private: the bench's own use)
        for logical_id, function in functions.items():
            if function.handler is None or function.module is None:
                raise RuntimeError(f"{logical_id} was not imported at the stack's start: cannot measure it")
            function.handler = self.ledger.wrap(logical_id, function.handler)
            self.recorder.attach(logical_id, _clients_in(vars(function.module)))

    def close(self) -> None:
        self.ledger.uninstall()

    # -- seeding ---------------------------------------------------------------------------------
    def seed(self, spec: PathSpec, prefix: str, size: int) -> list[str]:
        from herald.users import UserProfile

        user_ids = [f"{prefix}-{i}" for i in range(size)]
        profiles = []
        for user_id in user_ids:
            email = f"{spec.email}+{user_id}@simulator.amazonses.com" if spec.email else None
            profiles.append(
                UserProfile.model_validate(
                    {
                        "user_id": user_id,
                        "email": email,
                        "phone": f"+1415{next(self._phones):07d}" if spec.phone else None,
                        "time_zone": daytime_zone() if spec.then == "digest" else "UTC",
                        "devices": {f"tok-{user_id}": DEVICE} if spec.device else {},
                        "preferences": {"marketing_opt_in": spec.marketing_opt_in},
                        "webhook": (
                            {
                                "url": f"{self.sandbox.url}/receivers/{WEBHOOK_RECEIVER}",
                                "secret_name": WEBHOOK_RECEIVER,
                            }
                            if spec.webhook
                            else None
                        ),
                    }
                )
            )
        self.users.put_profiles(profiles)
        if spec.online:
            for user_id in user_ids:  # a client subscribes: Pusher's signed webhook reaches the API
                delivery = self.sandbox.pusher.occupy(f"private-user-{user_id}")
                if delivery is None or delivery.status != 200:
                    raise PathIncomplete(f"the presence webhook for {user_id} was not accepted: {delivery}")
        return user_ids

    # -- one batch ---------------------------------------------------------------------------------
    def play(self, spec: PathSpec, size: int, *, label: str, measure: bool = True) -> Window | None:
        prefix = f"{label}-{spec.name}-{size}"
        user_ids = self.seed(spec, prefix, size)
        data = dict(self.catalog.entry(spec.type).sample_data)
        details = [
            {"event_id": f"{prefix}-e{i}", "type": spec.type, "user_id": user_id, "data": data}
            for i, user_id in enumerate(user_ids)
        ]
        gc.collect()
        gc.freeze()  # what exists now (moto's state so far) is never traversed again by a collection
        outbox_before = self.sandbox.outbox.last_seq
        recorded_before = len(self.recorder.calls)
        invocations_before = len(self.ledger.invocations)
        bytes_before = self.stream.bytes
        started = time.monotonic()
        with self.runner.measured() as log:
            self._put(details)
            notes = self._settle(spec, size, user_ids, outbox_before, recorded_before, log)
        seconds = time.monotonic() - started
        if not measure:
            return None
        recorded = self.recorder.calls[recorded_before:]
        executions = [
            c.response["executionArn"]
            for c in recorded
            if c.operation == "StartExecution" and "executionArn" in c.response
        ]
        sandbox = Counter(e.provider for e in self.sandbox.outbox.entries(since=outbox_before))
        window = Window(
            path=spec.name,
            size=size,
            seconds=seconds,
            calls=Counter(log.calls),
            recorded=recorded,
            invocations=self.ledger.invocations[invocations_before:],
            sandbox=sandbox,
            transitions=sum(self._transitions(arn) for arn in executions),
            executions=len(executions),
            log_bytes=self.stream.bytes - bytes_before,
            notes=notes,
        )
        window.final_items = self._final_items(recorded)
        return window

    def _put(self, details: Sequence[dict[str, Any]]) -> None:
        bus = self.description.attribute("HeraldBus", "Name")
        for start in range(0, len(details), PUT_BATCH):
            chunk = details[start : start + PUT_BATCH]
            answer = self.events.put_events(
                Entries=[
                    {
                        "EventBusName": bus,
                        "Source": "bench.producer",
                        "DetailType": "NotificationRequested",
                        "Detail": json.dumps(d),
                    }
                    for d in chunk
                ]
            )
            if answer["FailedEntryCount"]:
                raise PathIncomplete(f"PutEvents refused entries: {answer['Entries']}")

    def _settle(
        self,
        spec: PathSpec,
        size: int,
        user_ids: list[str],
        outbox_before: int,
        recorded_before: int,
        log: Any,
    ) -> list[str]:
        """Wait for the path's deliveries, do what it does next, then wait until everything is still."""
        deadline = (
            time.monotonic() + 120 + size * 2 + (self.fallback_seconds if spec.then == "timeout" else 0)
        )

        def delivered(provider: str) -> int:
            if provider == "ses":
                return sum(
                    1
                    for c in self.recorder.calls[recorded_before:]
                    if (c.service, c.operation) in SES_SEND_OPERATIONS and "Error" not in c.response
                )
            return len(self.sandbox.outbox.entries(since=outbox_before, provider=provider))

        first = {
            p: n * size
            for p, n in spec.deliveries.items()
            if not (p == "ses" and spec.then in ("timeout", "digest"))
        }
        self._wait(
            lambda: all(delivered(p) >= n for p, n in first.items()),
            deadline,
            f"{spec.name}: first deliveries {first}",
        )
        if spec.then == "ack":
            for user_id in user_ids:
                for notification_id in self._notification_ids(user_id):
                    answer = self.app.post(f"/v1/me/notifications/{notification_id}/ack", user=user_id)
                    if answer.status != 200:
                        raise PathIncomplete(
                            f"{spec.name}: the ack of {notification_id} answered {answer.status}"
                        )
        elif spec.then == "digest":
            time.sleep(self.digest_delay + 0.5)  # the notifications are due
            from local.schedules import scheduled_event

            self.runner.invoke(
                "DigestFunction",
                scheduled_event(
                    account=self.runner.account,
                    region=self.description.region,
                    rule_name="bench-digest",
                    time=time.time(),
                ),
            )
        every = {p: n * size for p, n in spec.deliveries.items()}
        self._wait(
            lambda: all(delivered(p) >= n for p, n in every.items()),
            deadline,
            f"{spec.name}: deliveries {every}",
        )
        # SES's events (delivery or bounce) for each email, and Twilio's two status callbacks per SMS
        emails = delivered("ses")

        def events_applied() -> int:
            return sum(i.records for i in log.invocations if i.function == "FeedbackFunction")

        notes = []
        if not self._wait(
            lambda: events_applied() >= emails, min(deadline, time.monotonic() + 30), "", soft=True
        ):
            notes.append(
                f"{emails - events_applied()} of {emails} SES event(s) never came from the local SES "
                "emulation (local/ses_feedback.py found no configuration set on those sends); their "
                "feedback is not counted"
            )
        self.sandbox.twilio.wait_idle(timeout=max(1.0, deadline - time.monotonic()))
        self._wait(
            lambda: self._executions_done(recorded_before), deadline, f"{spec.name}: escalations ending"
        )
        self._wait(self._still, deadline, f"{spec.name}: queues emptying")
        if spec.then == "ack" and delivered("ses"):
            raise PathIncomplete(
                f"{spec.name}: {delivered('ses')} email(s) went: acknowledged after the fallback delay"
            )
        return notes

    def _wait(self, probe: Callable[[], bool], deadline: float, what: str, *, soft: bool = False) -> bool:
        """Wait until `probe()`; past the deadline raise PathIncomplete, or return False if `soft`."""
        while not probe():
            if time.monotonic() > deadline:
                if soft:
                    return False
                raise PathIncomplete(f"timed out waiting for {what}")
            time.sleep(0.2)
        return True

    def _still(self) -> bool:
        """Every work queue empty (visible, in flight, delayed), twice a second apart."""
        for attempt in range(2):
            for url in self.queue_urls.values():
                attributes = self.sqs.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                        "ApproximateNumberOfMessagesDelayed",
                    ],
                )["Attributes"]
                if any(int(v) for v in attributes.values()):
                    return False
            if attempt == 0:
                time.sleep(1.0)
        return True

    def _executions_done(self, recorded_before: int) -> bool:
        arns = [
            c.response["executionArn"]
            for c in self.recorder.calls[recorded_before:]
            if c.operation == "StartExecution" and "executionArn" in c.response
        ]
        return all(self.sfn.describe_execution(executionArn=arn)["status"] != "RUNNING" for arn in arns)

    def _transitions(self, arn: str) -> int:
        history = self.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        return sum(1 for event in history if event["type"].endswith("StateEntered"))

    def _notification_ids(self, user_id: str) -> list[str]:
        items = self.dynamodb.query(
            TableName=self.description.ref("NotificationsTable"),
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": {"S": user_id}},
            ProjectionExpression="notification_id",
            ConsistentRead=True,
        )["Items"]
        return [item["notification_id"]["S"] for item in items]

    def _final_items(self, recorded: Sequence[Call]) -> dict[tuple[str, tuple[Any, ...]], dict[str, Any]]:
        """Every item the batch wrote or checked, as it is now (one uncounted BatchGetItem per 100)."""
        wanted: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = defaultdict(dict)

        def want(table: str, key_or_item: Mapping[str, Any]) -> None:
            if table in self.tables:
                spec = self.tables[table]
                wanted[table][_key_of(spec, key_or_item)] = {k: key_or_item[k] for k in spec.keys}

        for call in recorded:
            if call.service != "dynamodb":
                continue
            if call.operation in ("UpdateItem", "DeleteItem"):
                want(call.params.get("TableName", ""), call.params["Key"])
            elif call.operation == "PutItem":
                want(call.params.get("TableName", ""), call.params["Item"])
            elif call.operation in ("TransactWriteItems", "TransactGetItems"):
                for action in call.params.get("TransactItems", []):
                    ((_, request),) = action.items()
                    if "Key" in request or "Item" in request:
                        want(request["TableName"], request.get("Key") or request["Item"])
            elif call.operation == "BatchWriteItem":
                for table, requests in call.params.get("RequestItems", {}).items():
                    for request in requests:
                        if "PutRequest" in request:
                            want(table, request["PutRequest"]["Item"])
        found: dict[tuple[str, tuple[Any, ...]], dict[str, Any]] = {}
        for table, keys in wanted.items():
            spec = self.tables[table]
            pending = list(keys.values())
            while pending:
                chunk, pending = pending[:100], pending[100:]
                request: dict[str, Any] = {table: {"Keys": chunk, "ConsistentRead": True}}
                while request:
                    answer = self.dynamodb.batch_get_item(RequestItems=request)
                    for item in answer.get("Responses", {}).get(table, []):
                        found[(table, _key_of(spec, item))] = item
                    request = answer.get("UnprocessedKeys") or {}
        return found


# ---------------------------------------------------------------------------------------------
# Figures of a window (pure, given the window)
# ---------------------------------------------------------------------------------------------


def figure(value: Any, unit: str, how: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "how": how}


HOW = {
    "aws_calls": (
        "botocore event hooks on each function's own clients (Runner.measured), divided by the "
        "notifications of the batch; not counted: what AWS does on Herald's behalf (Lambda's SQS "
        "polling and deletes, EventBridge's and Step Functions' sends), priced in the cost instead"
    ),
    "transitions": (
        "StateEntered events of each execution the batch started (get_execution_history), divided by N"
    ),
    "provider_calls": (
        "deliveries the provider sandboxes accepted (FCM, Twilio, Pusher, webhook receivers) and SES sends "
        "(sesv2 SendEmail), divided by N"
    ),
    "cpu": (
        "thread CPU clocks of each invocation plus the thread-pool work it submitted (so moto's and the "
        "sandboxes' threads in this process never count), on this machine's core, divided by N"
    ),
    "cost": (
        "USD per million notifications at the list prices of local/prices.json: the functions' AWS calls "
        "(DynamoDB by request units from item sizes, index writes included; SQS per 64 KB chunk), SQS "
        "receives and deletes of Lambda's event source mappings (one each per batch of up to 10), messages "
        "EventBridge / Step Functions send, the producer's PutEvents, state transitions, HTTP API requests, "
        "Lambda requests and duration (modelled: CPU stretched to the memory's vCPU share plus assumed call "
        "latencies), CloudWatch Logs bytes (the handlers' output plus Lambda's START/END/REPORT lines), "
        "X-Ray traces at the default sampling, and the notification records' storage (and point-in-time "
        "backup) for NotificationRetentionDays; provider fees apart. Not counted: Lambda's idle SQS polling "
        "and the monthly fixed costs (alarms, metrics, secrets), Secrets Manager reads (cached per "
        "container), data transfer"
    ),
}


def window_figures(
    window: Window,
    bench_tables: Mapping[str, TableSpec],
    memory: Mapping[str, int],
    source_queue_urls: set[str],
    retention_days: float,
    prices: Mapping[str, Any],
) -> dict[str, Any]:
    """Every figure of one batch, per notification, each with its unit and how it was measured."""
    n = window.size
    assumptions = prices["assumptions"]
    by_function: dict[str, Counter[str]] = defaultdict(Counter)
    for (function, operation), count in window.calls.items():
        by_function[function][operation] += count
    total_calls = sum(window.calls.values())
    by_api: Counter[str] = Counter()
    for (_, operation), count in window.calls.items():
        by_api[operation] += count

    # DynamoDB units, SQS requests and messages, EventBridge events, per invocation calls
    units = Units()
    sqs_requests = 0.0
    sent_to_sources = 0
    function_events = 0
    schedules_created = 0
    ses_sends = 0
    calls_per_invocation: Counter[int] = Counter()
    provider_per_invocation: Counter[int] = Counter()
    for call in window.recorded:
        calls_per_invocation[call.invocation] += 1
        if call.service == "dynamodb":
            units += dynamodb_units(
                call.operation,
                call.params,
                call.response,
                tables=bench_tables,
                final_items=window.final_items,
            )
        elif call.service == "sqs":
            payload = _sqs_payload_bytes(call)
            sqs_requests += max(1, math.ceil(payload / SQS_CHUNK))
            if call.params.get("QueueUrl") in source_queue_urls:
                if call.operation == "SendMessage":
                    sent_to_sources += 1
                elif call.operation == "SendMessageBatch":
                    sent_to_sources += len(call.params.get("Entries", []))
        elif call.service == "events" and call.operation == "PutEvents":
            function_events += sum(
                max(1, math.ceil(len(json.dumps(e).encode()) / EVENT_CHUNK))
                for e in call.params.get("Entries", [])
            )
        elif call.service == "scheduler" and call.operation == "CreateSchedule":
            schedules_created += 1
        if (call.service, call.operation) in SES_SEND_OPERATIONS:
            ses_sends += 1
            provider_per_invocation[call.invocation] += 1
            calls_per_invocation[call.invocation] -= 1  # an SES send waits like a provider call

    # Lambda: invocations, event source mappings, HTTP API, duration
    received = 0
    esm_requests = 0
    http_requests = 0
    gb_seconds = 0.0
    cpu_by_function: Counter[str] = Counter()
    gc_seconds = 0.0
    wall_by_function: Counter[str] = Counter()
    invocations_by_function: Counter[str] = Counter()
    records_by_function: Counter[str] = Counter()
    for invocation in window.invocations:
        function = invocation.function
        invocations_by_function[function] += 1
        records_by_function[function] += invocation.records
        cpu_by_function[function] += invocation.cpu_seconds
        gc_seconds += invocation.gc_seconds
        wall_by_function[function] += invocation.wall_seconds
        if invocation.event_kind == "sqs":
            received += invocation.records
            esm_requests += 2 * max(1, math.ceil(invocation.records / SQS_BATCH_MAX))  # receive + delete
        elif invocation.event_kind == "http":
            http_requests += 1
        concurrency = (
            min(invocation.records, 10)
            if function.endswith(PARALLEL_FUNCTIONS_SUFFIX) and invocation.records
            else 1
        )
        billed = lambda_billed_seconds(
            cpu_seconds=invocation.cpu_seconds,
            memory_mb=memory.get(function, 512),
            aws_calls=max(0, calls_per_invocation[invocation.seq]),
            provider_calls=invocation.sandbox_deliveries + provider_per_invocation[invocation.seq],
            concurrency=concurrency,
            assumptions=assumptions,
        )
        gb_seconds += billed * memory.get(function, 512) / 1024
    external_sends = max(0, received - sent_to_sources)  # EventBridge rules, Step Functions tasks
    invocations = len(window.invocations)

    # Notification records stored for the retention period (table + index copies)
    notification_tables = {
        name for name, spec in bench_tables.items() if spec.logical_id == "NotificationsTable"
    }
    stored_bytes = 0
    stored_bytes_plain = 0
    stored_items = 0
    for (table, _), item in window.final_items.items():
        if table in notification_tables:
            stored_items += 1
            stored_bytes_plain += item_size(item)
            spec = bench_tables[table]
            copies = 1 + sum(1 for i in spec.indexes if i.projection == "ALL" and set(i.keys) <= set(item))
            stored_bytes += (item_size(item) + 100) * copies  # 100 bytes of overhead per item (and copy)
    months = retention_days / 30.4
    stored_gb_months = stored_bytes / 1024**3 * months

    log_bytes = window.log_bytes + invocations * float(assumptions["lambda_platform_log_bytes"]["value"])
    sampling = float(assumptions["xray_sampling"]["value"])
    usage = {
        "lambda_request": invocations / n,
        "lambda_gb_second_arm64": gb_seconds / n,
        "sqs_request": (sqs_requests + esm_requests + external_sends) / n,
        "dynamodb_write_request_unit": (units.write + units.index_write) / n,
        "dynamodb_read_request_unit": units.read / n,
        "dynamodb_storage_gb_month": stored_gb_months / n,
        "dynamodb_pitr_gb_month": stored_gb_months / n,
        "stepfunctions_transition": window.transitions / n,
        "eventbridge_event": (n + function_events) / n,
        "scheduler_invocation": schedules_created / n,
        "http_api_request": http_requests / n,
        "cloudwatch_logs_ingested_gb": log_bytes / 1024**3 / n,
        "xray_trace_recorded": sampling * (invocations + window.executions) / n,
    }
    costs = cost_breakdown(usage, prices)
    total = sum(costs.values())
    providers = {p: c / n for p, c in window.sandbox.items()}
    if ses_sends:
        providers["ses"] = ses_sends / n
    messages = sum(providers.values())
    vendors = vendor_costs(messages, prices)
    fees = provider_fees(providers, prices)
    functions = sorted(invocations_by_function | {f: 0 for f in by_function})
    recorded_counts = Counter((c.function, f"{c.service}:{c.operation}") for c in window.recorded)
    mismatch = {
        f"{f} {op}": [window.calls.get((f, op), 0), recorded_counts.get((f, op), 0)]
        for f, op in set(window.calls) | set(recorded_counts)
        if window.calls.get((f, op), 0) != recorded_counts.get((f, op), 0)
    }
    return {
        "notes": figure(window.notes, "", "what did not happen as it would on AWS during the batch"),
        "count_check": figure(
            mismatch or "equal",
            "calls (runner, recorder)",
            "the runner's call counts against the bench's own hooks on the same clients: "
            "any difference is listed",
        ),
        "notifications": figure(n, "notifications", "the batch: events put on the bus, one person each"),
        "seconds": figure(
            round(window.seconds, 2),
            "s",
            "wall time of the batch on the local stack (moto, sandboxes, 2-core machine)",
        ),
        "aws_calls_per_notification": figure(
            round(total_calls / n, 3), "calls/notification", HOW["aws_calls"]
        ),
        "aws_calls_by_api": figure(
            {k: round(v / n, 3) for k, v in sorted(by_api.items())}, "calls/notification", HOW["aws_calls"]
        ),
        "aws_calls_by_function": figure(
            {f: {k: round(v / n, 3) for k, v in sorted(c.items())} for f, c in sorted(by_function.items())},
            "calls/notification",
            HOW["aws_calls"],
        ),
        "router_calls_per_notification": figure(
            round(sum(by_function.get("RouterFunction", Counter()).values()) / n, 3),
            "calls/notification",
            HOW["aws_calls"],
        ),
        "transitions_per_notification": figure(
            round(window.transitions / n, 3), "transitions/notification", HOW["transitions"]
        ),
        "executions_per_notification": figure(
            round(window.executions / n, 3), "executions/notification", HOW["transitions"]
        ),
        "provider_calls_per_notification": figure(
            round(messages, 3), "calls/notification", HOW["provider_calls"]
        ),
        "provider_calls_by_provider": figure(
            {k: round(v, 3) for k, v in sorted(providers.items())},
            "calls/notification",
            HOW["provider_calls"],
        ),
        "cpu_ms_per_notification": figure(
            round(sum(cpu_by_function.values()) * 1000 / n, 3), "ms/notification", HOW["cpu"]
        ),
        "cpu_ms_by_function": figure(
            {f: round(cpu_by_function[f] * 1000 / n, 3) for f in functions if f in cpu_by_function},
            "ms/notification",
            HOW["cpu"],
        ),
        "gc_ms_excluded_per_notification": figure(
            round(gc_seconds * 1000 / n, 3),
            "ms/notification",
            "full garbage collections that ran in the invocations' threads, left out of the CPU figures: "
            "their cost here is this process's heap (moto's state, the sandboxes), not a Lambda container's",
        ),
        "local_wall_ms_by_function": figure(
            {f: round(wall_by_function[f] * 1000 / n, 2) for f in functions if f in wall_by_function},
            "ms/notification",
            "handler wall time here (moto in this process, sandboxes answering at once): "
            "not what Lambda bills",
        ),
        "invocations_by_function": figure(
            {
                f: {"invocations": invocations_by_function[f], "records": records_by_function[f]}
                for f in functions
                if invocations_by_function[f]
            },
            "invocations, records",
            "the batch's invocations of each function and the SQS records they handled",
        ),
        "dynamodb_units_per_notification": figure(
            {
                "read": round(units.read / n, 3),
                "write": round(units.write / n, 3),
                "index_write": round(units.index_write / n, 3),
            },
            "request units/notification",
            "from the items' sizes (writes 1 KB steps, x2 in a transaction, ConditionCheck as a "
            "transactional write; reads 4 KB steps, half when eventually consistent), index writes "
            "for each LSI/GSI entry created, "
            "changed or removed; a Put sized by its item, an Update by the item as it ends the run",
        ),
        "dynamodb_index_write_units_by_index": figure(
            {k: round(v / n, 3) for k, v in sorted(units.by_index.items())},
            "write request units/notification",
            "the index_write units above, by index (Table.Index)",
        ),
        "notification_record_bytes": figure(
            round(stored_bytes_plain / max(1, stored_items)) if stored_items else None,
            "bytes",
            "mean size of the batch's notification records as they end the run (DynamoDB's item-size rules)",
        ),
        "usage_per_notification": figure(
            {k: v for k, v in usage.items() if v}, "each price's unit/notification", HOW["cost"]
        ),
        "cost_usd_per_million": figure(round(total, 4), "USD/million notifications", HOW["cost"]),
        "cost_breakdown_usd_per_million": figure(
            {k: round(v, 4) for k, v in sorted(costs.items(), key=lambda kv: -kv[1])},
            "USD/million notifications",
            HOW["cost"],
        ),
        "provider_fees_usd_per_million": figure(
            {k: round(v, 2) for k, v in fees.items()},
            "USD/million notifications",
            "the providers' list fees (local/prices.json), apart from Herald's cost",
        ),
        "vendors_usd_per_million": figure(
            {k: round(v, 2) for k, v in vendors.items()},
            "USD/million notifications",
            "Knock: $0.005 per channel message (the provider calls above); "
            "Novu: $1.20 per 1,000 runs (one a notification)",
        ),
        "vendor_ratio": figure(
            {k: round(v / total, 1) if total else None for k, v in vendors.items()},
            "x Herald's AWS cost",
            "the vendor's list price divided by Herald's AWS cost on this path "
            "(provider fees excluded from both)",
        ),
    }


def _sqs_payload_bytes(call: Call) -> int:
    params = call.params
    if call.operation == "SendMessage":
        return len(str(params.get("MessageBody", "")).encode())
    if call.operation == "SendMessageBatch":
        return sum(len(str(e.get("MessageBody", "")).encode()) for e in params.get("Entries", []))
    return 0


# ---------------------------------------------------------------------------------------------
# Targets and the table (pure, given a report)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A figure of one path that must stay at or under `limit`, at `sizes` (None: every size)."""

    text: str
    path: str
    figure: str
    limit: float
    unit: str
    sizes: tuple[int, ...] | None
    source: str


TARGETS: tuple[Target, ...] = (
    Target(
        "medium_push, full path, <= $8 per million notifications",
        "medium_push",
        "cost_usd_per_million",
        8.0,
        "USD/million notifications",
        None,
        "issue 13 item 5",
    ),
    Target(
        "high_timeout_email, full path, <= $60 per million notifications",
        "high_timeout_email",
        "cost_usd_per_million",
        60.0,
        "USD/million notifications",
        None,
        "issue 13 item 5",
    ),
    Target(
        "the router <= 1.5 AWS calls per notification at batch 10 (medium_push)",
        "medium_push",
        "router_calls_per_notification",
        1.5,
        "calls/notification",
        (10,),
        "issue 13 item 2",
    ),
    Target(
        "the router <= 1.2 AWS calls per notification at batch 100 (medium_push)",
        "medium_push",
        "router_calls_per_notification",
        1.2,
        "calls/notification",
        (100,),
        "issue 13 item 2",
    ),
    Target(
        "medium_push, full path, <= 4 AWS calls per notification",
        "medium_push",
        "aws_calls_per_notification",
        4.0,
        "calls/notification",
        None,
        "issue 13 item 2",
    ),
)


def check_targets(report: Mapping[str, Any], *, smoke: bool = False) -> list[dict[str, Any]]:
    """Each target with what was measured at each size it applies to, and whether it is met (None:
    not checked — a smoke run, or the path or size was not measured)."""
    results = []
    for target in TARGETS:
        measured_sizes = report.get("paths", {}).get(target.path, {}).get("sizes", {})
        wanted = [str(s) for s in target.sizes] if target.sizes is not None else list(measured_sizes)
        values = {
            size: measured_sizes[size][target.figure]["value"] for size in wanted if size in measured_sizes
        }
        met: bool | None
        if smoke or not values or len(values) < len(wanted):
            met = None
        else:
            met = all(value <= target.limit for value in values.values())
        results.append(
            {
                "target": target.text,
                "source": target.source,
                "limit": target.limit,
                "value": values,
                "unit": target.unit,
                "how": f"`{target.figure}` of {target.path} at batch size(s) {', '.join(wanted) or '-'}: "
                "met when every one is at or under the limit",
                "met": met,
                "measured": ", ".join(
                    (f"${v:.2f}" if target.unit.startswith("USD") else f"{v:g}") + f" at batch {size}"
                    for size, v in values.items()
                )
                or "not measured",
            }
        )
    return results


def format_paths(report: Mapping[str, Any]) -> str:
    """The ten paths side by side: rows are paths; AWS calls (all functions, and the router's) and
    USD per million at each batch size; the rest at the largest size."""
    sizes = [str(s) for s in report.get("sizes", [])]
    if not sizes:
        return "  (no paths measured)"
    last = sizes[-1]
    header = ["path"]
    header += [f"calls @{s}" for s in sizes]
    header += [f"router @{s}" for s in sizes]
    header += ["SFN tr.", "provider", "CPU ms"]
    header += [f"$/M @{s}" for s in sizes]
    header += ["storage $/M", "fees $/M", "Knock x", "Novu x"]
    rows = []
    notes = []
    for name, path in report.get("paths", {}).items():
        measured = path.get("sizes", {})
        if last not in measured:
            continue
        big = measured[last]

        def at(size: str, key: str, measured: Mapping[str, Any] = measured) -> str:
            return f"{measured[size][key]['value']:.2f}" if size in measured else "-"

        breakdown = big["cost_breakdown_usd_per_million"]["value"]
        storage = sum(v for k, v in breakdown.items() if "storage" in k or "pitr" in k)
        ratio = big["vendor_ratio"]["value"]
        row = [name]
        row += [at(s, "aws_calls_per_notification") for s in sizes]
        row += [at(s, "router_calls_per_notification") for s in sizes]
        row += [
            f"{big['transitions_per_notification']['value']:g}",
            f"{big['provider_calls_per_notification']['value']:g}",
            f"{big['cpu_ms_per_notification']['value']:.1f}",
        ]
        row += [at(s, "cost_usd_per_million") for s in sizes]
        row += [
            f"{storage:.2f}",
            f"{sum(big['provider_fees_usd_per_million']['value'].values()):.2f}",
            f"{ratio['knock']:g}" if ratio.get("knock") is not None else "-",
            f"{ratio['novu']:g}" if ratio.get("novu") is not None else "-",
        ]
        rows.append(row)
        total = big["cost_usd_per_million"]["value"] or 1.0
        top = sorted(breakdown.items(), key=lambda kv: -kv[1])[:3]
        notes.append(f"  {name:<24} " + ", ".join(f"{_short_price(k)} {v / total:.0%}" for k, v in top))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  "
        + "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(header, widths, strict=True))
        )
    ]
    lines.append("  " + "  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            "  "
            + "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    lines.append(
        "  calls: the functions' AWS calls per notification; router: the router's share; "
        f"SFN tr., provider, CPU ms "
        f"(all functions), storage, fees (the providers', not in $/M) and the vendor ratios at batch {last}."
    )
    lines.append(f"\n  What dominates each path's AWS cost (batch {last}):")
    lines += notes
    caveats = [
        f"  {name} x{size}: {note}"
        for name, path in report.get("paths", {}).items()
        for size, figures in path.get("sizes", {}).items()
        for note in figures.get("notes", {}).get("value", [])
    ]
    if caveats:
        lines.append("\n  Notes:")
        lines += caveats
    return "\n".join(lines)


_SHORT = {
    "dynamodb_write_request_unit": "DynamoDB writes",
    "dynamodb_read_request_unit": "DynamoDB reads",
    "dynamodb_storage_gb_month": "DynamoDB storage",
    "dynamodb_pitr_gb_month": "DynamoDB backups",
    "stepfunctions_transition": "Step Functions",
    "lambda_gb_second_arm64": "Lambda duration",
    "lambda_request": "Lambda requests",
    "sqs_request": "SQS",
    "eventbridge_event": "EventBridge",
    "scheduler_invocation": "Scheduler",
    "http_api_request": "HTTP API",
    "cloudwatch_logs_ingested_gb": "CloudWatch Logs",
    "xray_trace_recorded": "X-Ray",
}


def _short_price(key: str) -> str:
    return _SHORT.get(key, key)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def run(
    sizes: Sequence[int],
    *,
    paths: Sequence[str] = PATH_NAMES,
    warm_up: bool = True,
    log_path: Path,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Start the local stack, play each path at each size, and return the report."""
    from aws_lambda_powertools.utilities import parameters

    from local.stack import LocalStack

    prices = load_prices()
    chosen = [p for p in PATHS if p.name in paths]
    report: dict[str, Any] = {
        "command": "python -m local.bench_paths " + " ".join(sys.argv[1:]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "sizes": list(sizes),
        "stack_parameters": STACK_PARAMETERS,
        "prices_checked": prices["checked"],
        "paths": {},
        "failures": {},
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as sink:
        stream = CountingStream(sink)  # type: ignore[arg-type]
        # The stack's own logs go to the file uncounted; only what the handlers print is counted.
        logging.basicConfig(
            stream=sink,
            level=logging.INFO,
            format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
            force=True,
        )
        logging.getLogger("botocore").setLevel(logging.WARNING)
        # The handlers bind stdout when the runner imports them: their output is counted, not shown.
        # stderr (warnings) to the file too, uncounted; the progress lines go to the terminal's.
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(sink):
            started = time.monotonic()
            stack = LocalStack(
                aws_port=0,
                sandbox_port=0,
                api_port=0,
                parameters=STACK_PARAMETERS,
                runner_options={**RUNNER_OPTIONS, "ses_event_types": _ses_event_types()},
                state_file=None,
            )
            with stack:
                parameters.clear_caches()
                progress(f"local stack up in {time.monotonic() - started:.0f} s")
                bench = PathBench(stack, stream, progress)
                try:
                    for spec in chosen:
                        try:
                            if warm_up and spec.then != "timeout":
                                bench.play(spec, 1, label="w", measure=False)
                            report["paths"][spec.name] = {
                                "summary": spec.summary,
                                "type": spec.type,
                                "sizes": {},
                            }
                            for size in sizes:
                                window = bench.play(spec, size, label="b")
                                assert window is not None
                                figures = window_figures(
                                    window,
                                    bench.tables,
                                    bench.memory,
                                    bench.source_queue_urls,
                                    bench.retention_days,
                                    prices,
                                )
                                report["paths"][spec.name]["sizes"][str(size)] = figures
                                calls = figures["aws_calls_per_notification"]["value"]
                                cost = figures["cost_usd_per_million"]["value"]
                                progress(
                                    f"{spec.name:<24} x{size:<4} {calls:6.2f} calls/n  "
                                    f"${cost:8.2f}/M  ({window.seconds:.0f} s)"
                                )
                        except PathIncomplete as error:
                            report["failures"][spec.name] = str(error)
                            progress(f"{spec.name}: FAILED: {error}")
                finally:
                    bench.close()
        report["seconds"] = round(time.monotonic() - started, 1)
    return report


def _ses_event_types() -> list[str]:
    """The SES event types the template's configuration set publishes (its MatchingEventTypes)."""
    from tools.cfn_yaml import load_template

    resources = load_template(REPO / "template.yaml")["Resources"]
    for resource in resources.values():
        if resource.get("Type") == "AWS::SES::ConfigurationSetEventDestination":
            return list(resource["Properties"]["EventDestination"]["MatchingEventTypes"])
    return []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.bench_paths", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="batch sizes (default 10,100)"
    )
    parser.add_argument("--paths", default=",".join(PATH_NAMES), help="which paths (default: all ten)")
    parser.add_argument(
        "--no-warm-up", action="store_true", help="skip the unmeasured batch of 1 before each path"
    )
    parser.add_argument("--out", type=Path, default=REPO / ".local" / "bench-paths.json")
    parser.add_argument("--log", type=Path, default=REPO / ".local" / "bench-paths-handlers.log")
    args = parser.parse_args(argv)
    sys.path[:0] = [str(REPO), str(REPO / "layers" / "herald")]
    console = sys.stderr

    def progress(line: str) -> None:
        print(f"  {line}", file=console, flush=True)

    unknown = set(args.paths.split(",")) - set(PATH_NAMES)
    if unknown:
        parser.error(f"unknown path(s): {sorted(unknown)}")
    report = run(
        [int(s) for s in args.sizes.split(",")],
        paths=args.paths.split(","),
        warm_up=not args.no_warm_up,
        log_path=args.log,
        progress=progress,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return 1 if report["failures"] else 0


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


if __name__ == "__main__":
    raise SystemExit(main())
