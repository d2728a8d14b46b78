"""moto as AWS on loopback: a `ThreadedMotoServer` with Step Functions executions enabled.

    with MotoServer(port=0) as aws:          # 0: a free port; None: $HERALD_AWS_PORT or 4566
        sqs = aws.client("sqs")               # boto3 aimed at it (us-east-1, dummy credentials)

Starting it also sets `MOTO_PORT` (moto's Step Functions interpreter calls
`localhost:$MOTO_PORT` for its service integrations); stopping it puts the old value back.
moto keeps its state per process, not per server: two servers in one process (or a server and
`mock_aws`) share it, and stopping a server does not clear it (`reset()` does).

Importing this module also serialises moto's DynamoDB requests in this process
(`serialise_dynamodb`): moto's TransactWriteItems snapshots whole tables and, when one of its
conditions fails, puts the snapshot back, erasing every write that other threads made meanwhile
(and the snapshot itself can fail with "dictionary changed size during iteration"). DynamoDB
isolates a transaction from other writes; one request at a time is how moto can too. And its
snapshot is of the items the transaction names, not of whole tables (`snapshot_transactions_by_item`):
copying a table of thousands of items for every transaction made the local stack slower the more
it held (32 % of a profile of the 10,000-person broadcast, at 8,000 people).

Importing it also stops moto from keeping every DynamoDB and SQS model object it ever created
(`untrack_models`): moto lists each instance for its dashboard (`/moto-api/data.json`) until a
reset, so each TransactWriteItems's snapshot of whole tables, each replaced item and each SQS
message stayed in memory. A 10,000-person broadcast grew the local stack past 24 GB (the router
counts rates in transactions on a table of 9,000 counters). Nothing reads those services from
data.json (the SES simulator reads `ses`, which stays tracked).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import threading
import urllib.request
from typing import Any, Self

import boto3
from botocore.config import Config
from moto.core.model_instances import model_data
from moto.dynamodb.responses import DynamoHandler
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

logger = logging.getLogger("local.aws")

DEFAULT_PORT = 4566
PORT_ENV = "HERALD_AWS_PORT"
REGION = "us-east-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"  # moto accepts any credentials
MOTO_CONFIG: dict[str, Any] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}


_DYNAMODB_REQUESTS = threading.RLock()


def serialise_dynamodb() -> None:
    """Make moto handle one DynamoDB request at a time in this process, in-process (`mock_aws`)
    and server alike (see the module's docstring). Idempotent."""
    if getattr(DynamoHandler.call_action, "serialised", False):
        return
    unserialised = DynamoHandler.call_action

    @functools.wraps(unserialised)
    def call_action(self: DynamoHandler) -> Any:
        with _DYNAMODB_REQUESTS:
            return unserialised(self)

    call_action.serialised = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


serialise_dynamodb()


class _TablesUncopied:
    """What moto's `DynamoDBBackend.transact_write_items` sees as the `copy` module: a table is
    not copied (its rollback is `snapshot_transactions_by_item`'s), anything else is."""

    copy = staticmethod(copy.copy)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        from moto.dynamodb.models.table import Table

        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


_Saved = tuple[Any, Any, Any, Any, int | None]  # table, hash key, range key, item before, stream length


def _saved_items(backend: Any, transact_items: list[dict[str, Any]]) -> list[_Saved]:
    """A copy of each item the transaction names, as it is before the transaction (None: absent)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    saved: list[_Saved] = []
    for entry in transact_items:
        for op_type, op in entry.items():
            table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
            if table is None:
                continue
            attributes = op.get("Item") if op_type == "Put" else op.get("Key")
            try:
                hash_key = DynamoType(attributes[table.hash_key_attr])
                range_key = DynamoType(attributes[table.range_key_attr]) if table.has_range_key else None
                before = copy.deepcopy(table.get_item(hash_key, range_key))
            except Exception:  # no such key (missing, of the wrong kind): moto refuses it unwritten
                continue
            stream = len(table.stream_shard.items) if table.stream_shard is not None else None
            saved.append((table, hash_key, range_key, before, stream))
    return saved


def _restore(saved: list[_Saved]) -> None:
    for table, hash_key, range_key, before, stream in reversed(saved):
        items = table.items[hash_key] if range_key is not None else table.items
        key = range_key if range_key is not None else hash_key
        if before is None:
            items.pop(key, None)
        else:
            items[key] = before
        if stream is not None and table.stream_shard is not None:
            del table.stream_shard.items[stream:]  # as moto's own rollback: no record of undone writes


def snapshot_transactions_by_item() -> None:
    """Make moto's `TransactWriteItems` keep a copy of the items it names, not of whole tables,
    for its rollback (see the module's docstring). Idempotent."""
    import moto.dynamodb.models as models

    backend = models.DynamoDBBackend
    if getattr(backend.transact_write_items, "by_item", False):
        return
    whole_tables = backend.transact_write_items

    @functools.wraps(whole_tables)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = _saved_items(self, transact_items)
        try:
            whole_tables(self, transact_items)
        except Exception:
            _restore(saved)
            raise

    transact_write_items.by_item = True  # type: ignore[attr-defined]
    backend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    models.copy = _TablesUncopied  # type: ignore[attr-defined,assignment]


snapshot_transactions_by_item()

UNTRACKED_SERVICES = ("dynamodb", "sqs")  # high-volume models nobody reads from data.json


def _untracked_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    """moto's `BaseModel.__new__` without the registration: `object.__new__` (moto's models take
    their arguments in `__init__`)."""
    return object.__new__(cls)


def untrack_models(services: tuple[str, ...] = UNTRACKED_SERVICES) -> None:
    """Stop moto from registering these services' model objects (see the module's docstring) and
    forget those registered so far. Survives moto's resets (they only empty the lists). Idempotent."""
    # their model classes register when imported
    import moto.dynamodb.models
    import moto.sqs.models  # noqa: F401

    for service in services:
        for model in model_data[service].values():
            model.__new__ = _untracked_new  # type: ignore[method-assign]
            model.instances_tracked = []  # type: ignore[attr-defined]


untrack_models()


def port_from_env(default: int = DEFAULT_PORT) -> int:
    value = os.environ.get(PORT_ENV, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{PORT_ENV} must be a port number, not {value!r}") from None


def client_config(max_attempts: int = 2) -> Config:
    return Config(retries={"max_attempts": max_attempts})


def aws_client(
    service: str,
    endpoint_url: str,
    *,
    region: str = REGION,
    max_attempts: int = 2,
    **kwargs: Any,
) -> Any:
    """A boto3 client for `service` aimed at a moto server (dummy credentials, few retries:
    moto answers unimplemented calls with 500, which botocore would otherwise retry 4 times)."""
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=kwargs.pop("config", None) or client_config(max_attempts),
        **kwargs,
    )


class _QuietMotoRequestHandler(MotoRequestHandler):
    """moto's request handler without werkzeug's per-request access log line."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _LoopbackMotoServer(ThreadedMotoServer):
    """`ThreadedMotoServer` that reports a failed bind instead of waiting forever for it, and
    closes its socket on stop."""

    def __init__(self, ip_address: str, port: int) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self.bind_error: BaseException | None = None

    def _server_entry(self) -> None:
        try:
            app = DomainDispatcherApplication(create_backend_app)
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=_QuietMotoRequestHandler
            )
        except BaseException as error:
            self.bind_error = error
            self._server_ready_event.set()
            return
        self._server_ready_event.set()
        self._server.serve_forever()

    def stop(self) -> None:
        super().stop()
        if self._server is not None:
            self._server.server_close()


class MotoServer:
    """One moto server on loopback (127.0.0.1 only), configured as the local stack needs."""

    def __init__(self, port: int | None = None, *, host: str = "127.0.0.1") -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the local AWS listens on loopback only, not {host!r}")
        self.host = host
        self.requested_port = port_from_env() if port is None else port
        self.port: int = self.requested_port
        self._server: _LoopbackMotoServer | None = None
        self._previous_moto_port: str | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        with self._lock:
            if self._server is not None:
                return self
            server = _LoopbackMotoServer(self.host, self.requested_port)
            server.start()
            if server.bind_error is not None:
                raise OSError(
                    f"cannot start moto on {self.host}:{self.requested_port}: {server.bind_error} "
                    f"(set {PORT_ENV} to use another port)"
                ) from server.bind_error
            self._server = server
            self.port = server.get_host_and_port()[1]
            self._previous_moto_port = os.environ.get("MOTO_PORT")
            os.environ["MOTO_PORT"] = str(self.port)
        try:
            self.configure()
        except BaseException:
            self.stop()
            raise
        logger.info("moto listening on %s", self.url)
        return self

    def configure(self, config: dict[str, Any] | None = None) -> None:
        """`POST /moto-api/config` (by default: Step Functions executions on, Lambda without Docker)."""
        request = urllib.request.Request(
            f"{self.url}/moto-api/config",
            data=json.dumps(config or MOTO_CONFIG).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def reset(self) -> None:
        """`POST /moto-api/reset`: forget every resource (the configuration is applied again)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
        self.configure()

    def stop(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            server.stop()
            if os.environ.get("MOTO_PORT") == str(self.port):
                if self._previous_moto_port is None:
                    os.environ.pop("MOTO_PORT", None)
                else:
                    os.environ["MOTO_PORT"] = self._previous_moto_port
            logger.info("moto on %s stopped", self.url)

    def client(self, service: str, **kwargs: Any) -> Any:
        return aws_client(service, self.url, **kwargs)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
