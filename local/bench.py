"""`make bench`: Herald's performance budget (DESIGN §11, issue 13), measured, never asserted in unit tests.

- cold start (local/bench_cold.py): each function's handler import against its floor — boto3, the
  same clients and the same provider SDK, nothing else — in fresh interpreters (median of N);
- router CPU per routing decision (the pure decision, no I/O);
- the ten full paths side by side (local/bench_paths.py, in a fresh interpreter): each end to end on
  the local stack — router, senders, escalation, feedback — with batches of 10 and 100
  notifications: AWS calls by API, Step Functions transitions, provider calls, Lambda CPU per
  function, and USD per million notifications at the list prices of `local/prices.json`, beside
  Knock's and Novu's list prices; the targets of issue 13 (items 2 and 5) checked here;
- Pusher requests and AWS calls per realtime notification to an online person, router and realtime
  sender together (moto and the Pusher sandbox): one trigger when the channel is occupied, none when
  it was vacated before the sender ran;
- a push batch (decisions 026, 029): the wall time of the push sender on one SQS batch of 10
  records x 10 device tokens against the FCM sandbox answering each request after 100 ms (target:
  under 3 round trips), its CPU time and its AWS calls per push, in a fresh interpreter on one core;
- package sizes (local/bench_sizes.py): every function and the layer, unzipped, from the arm64
  `sam build` (built first when missing or older than its sources).

`--check` exits 1 when a target is missed; `--smoke` (CI) plays the paths with 2 notifications and
no warm-up, skips the cold-start, realtime, push-batch and package sections, and checks no target.
A path that does not complete fails the run either way.

Prints a report and writes `.local/bench.json` (each figure `{"value", "unit", "how"}`); what the
handlers themselves print while measured (logs, EMF metrics) goes to `.local/bench-handlers.log` and
`.local/bench-paths-handlers.log`, not into the report.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.bench_paths import DEFAULT_SIZES, SMOKE_SIZES, check_targets, figure, format_paths

REPO = Path(__file__).resolve().parents[1]
IMPORT_RUNS = 5
# The handlers run for their AWS calls, not their output: warnings and errors only, no EMF metric
# lines (what they still print goes to .local/bench-handlers.log; the report is the output).
QUIET_HANDLERS = {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}
BATCH = 10


def _env_for_import(function_env: dict[str, str]) -> dict[str, str]:
    """A fresh interpreter's environment: the function's own, fake credentials (an import makes
    no AWS call), the repository on the path."""
    env = dict(os.environ)
    env.update(function_env)
    env.update(
        {
            "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'layers' / 'herald'}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
        }
    )
    return env


def realtime_path() -> dict[str, Any]:
    """The medium notification to an online person, end to end on moto and the Pusher sandbox: the
    router routes a batch to realtime, the realtime sender handles the batch. Counts the Pusher
    SDK's requests per notification (target 1: the occupancy Herald keeps, no `channel_info`) and
    each function's AWS calls; then the same with the channels vacated between routing and
    sending (no Pusher request at all)."""
    from aws_lambda_powertools.utilities import parameters
    from moto import mock_aws
    from pusher.requests import RequestsBackend

    from herald.catalog import load_catalog
    from herald.stores.presence import PresenceStore
    from herald.stores.users import UserStore
    from herald.users import UserProfile
    from local.sandboxes import SandboxHost
    from tests.support.stack import MOTO_CONFIG, provision

    report: dict[str, Any] = {}
    pusher_requests: list[str] = []
    original_send = RequestsBackend.send_request

    def counting_send(self: RequestsBackend, request: Any) -> Any:
        pusher_requests.append(f"{request.method} {request.path}")
        return original_send(self, request)

    RequestsBackend.send_request = counting_send  # type: ignore[method-assign]
    try:
        with mock_aws(config=MOTO_CONFIG), SandboxHost(port=0) as sandbox:
            stack = provision(stack_name="bench-realtime", sandbox=sandbox)
            os.environ.update({**stack.env, **QUIET_HANDLERS})
            parameters.clear_caches()
            catalog = load_catalog()
            users = UserStore(stack.client("dynamodb"), stack.tables["UsersTable"])
            presence = PresenceStore(stack.client("dynamodb"), stack.tables["PresenceTable"])
            max_age = int(stack.env.get("PRESENCE_MAX_AGE_SECONDS", "21600"))
            for i in range(BATCH):
                users.put_profile(
                    UserProfile(
                        user_id=f"r{i}",
                        email=f"r{i}@example.com",
                        devices={f"rt{i}": {"platform": "ios", "registered_at": "2026-01-01T00:00:00Z"}},
                    )
                )
            for label, vacate_before_send in (("occupied", False), ("vacated before sending", True)):
                now_ms = int(time.time() * 1000)
                for i in range(BATCH):
                    sandbox.pusher.occupy(f"private-user-r{i}")
                    presence.apply(f"r{i}", occupied=True, time_ms=now_ms, max_age_seconds=max_age)
                calls: Counter[str] = Counter()
                router = _fresh_module("functions.router.app")
                _count_calls(calls, "router", router.dynamodb, router.sqs)
                event = _sqs_event(
                    [
                        {
                            "event_id": f"rt-{label.split()[0]}-{i}",
                            "type": "comment_reply",
                            "user_id": f"r{i}",
                            "data": catalog.entry("comment_reply").sample_data,
                        }
                        for i in range(BATCH)
                    ]
                )
                router.lambda_handler(event, _Context())
                if vacate_before_send:
                    for i in range(BATCH):
                        sandbox.pusher.vacate(f"private-user-r{i}")
                        presence.apply(f"r{i}", occupied=False, time_ms=now_ms + 1, max_age_seconds=max_age)
                sender = _fresh_module("functions.realtime_sender.app")
                _count_calls(calls, "realtime_sender", sender.dynamodb, sender.sqs, sender.sfn)
                batch = _receive_batch(stack, "Realtime")
                pusher_requests.clear()
                sender.lambda_handler(batch, _Context())
                report[label] = {
                    "notifications": len(batch["Records"]),
                    "pusher_requests_per_notification": len(pusher_requests) / max(1, len(batch["Records"])),
                    "target": 0 if vacate_before_send else 1,
                    "pusher_requests": dict(Counter(r.split("?")[0] for r in pusher_requests)),
                    "aws_calls_per_notification": {k: v / BATCH for k, v in sorted(calls.items())},
                }
    finally:
        RequestsBackend.send_request = original_send  # type: ignore[method-assign]
    return report


PUSH_RECORDS = 10
PUSH_TOKENS = 10
FCM_LATENCY_MS = 100
PUSH_RUNS = 3


def push_batch_path() -> dict[str, Any]:
    """The push sender on one batch of `PUSH_RECORDS` records of `PUSH_TOKENS` device tokens each,
    against the FCM sandbox answering each request after `FCM_LATENCY_MS`: the handler's wall time
    (the first batch, which also fetches the OAuth token and starts the threads, then the median of
    the next ones), the part of it spent sending to FCM, the handler's CPU time, and its AWS calls
    per push (per record). The sandbox and moto each run in a process of their own, as FCM and
    DynamoDB are other machines: their CPU is not Herald's, and the batch's parallel DynamoDB calls
    overlap as they do on AWS (moto in this process would run them one after another, under one
    interpreter lock). With two cores or more, the handler runs on one core, as the push sender
    has one vCPU (1,769 MB, decision 029), and the two servers on the others."""
    from aws_lambda_powertools.utilities import parameters

    import herald.channels.fcm as fcm
    from herald.catalog import load_catalog
    from local.provision import provision
    from local.sandboxes import google_auth_on_loopback

    send_seconds: list[float] = []
    original_send_batch = fcm.FcmPushProvider.send_batch

    def timed_send_batch(self: Any, pushes: Any) -> Any:
        started = time.perf_counter()
        try:
            return original_send_batch(self, pushes)
        finally:
            send_seconds.append(time.perf_counter() - started)

    entry = load_catalog().entry("order_shipped")
    walls: list[float] = []
    cpu: list[float] = []
    calls: Counter[str] = Counter()
    fcm.FcmPushProvider.send_batch = timed_send_batch  # type: ignore[method-assign]
    saved = dict(os.environ)  # the sender's environment aims boto3 at the moto process
    herald_cores, server_cores = _split_cores()
    try:
        with contextlib.ExitStack() as servers, google_auth_on_loopback():
            with _affinity(server_cores):  # the servers' processes inherit it
                sandbox = servers.enter_context(_sandbox_process())
                aws_url = servers.enter_context(_moto_process())
            servers.enter_context(_affinity(herald_cores))  # the handler's threads inherit it
            stack = _RemoteStack(
                provision(aws_endpoint=aws_url, sandbox=sandbox.credentials, stack_name="bench-push"), aws_url
            )
            os.environ.update({**stack.env, **QUIET_HANDLERS})
            parameters.clear_caches()
            sender = _fresh_module("functions.push_sender.app")
            sandbox.control("POST", "/_faults", {"provider": "fcm", "latency_ms": FCM_LATENCY_MS})
            for run in range(1 + PUSH_RUNS):
                _queue_push_batch(stack, entry, run)
                batch = _receive_batch(stack, "Push")
                if run == PUSH_RUNS:  # the last batch is counted (the others' calls are the same)
                    _count_calls(calls, "push_sender", sender.dynamodb, sender.sqs, sender.sfn)
                sandbox.control("DELETE", "/_outbox")
                started, cpu_started = time.perf_counter(), time.process_time()
                response = sender.lambda_handler(batch, _Context())
                walls.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
                sent = len(sandbox.control("GET", "/_outbox?provider=fcm"))
                if response.get("batchItemFailures") or sent != PUSH_RECORDS * PUSH_TOKENS:
                    raise RuntimeError(f"the push batch did not go out whole: {response}, {sent} sent")
    finally:
        fcm.FcmPushProvider.send_batch = original_send_batch  # type: ignore[method-assign]
        os.environ.clear()
        os.environ.update(saved)
    warm = statistics.median(walls[1:])
    sending = statistics.median(send_seconds[1:])
    return {
        "records": PUSH_RECORDS,
        "tokens_per_record": PUSH_TOKENS,
        "fcm_latency_ms": FCM_LATENCY_MS,
        "first_batch_seconds": walls[0],
        "batch_seconds": warm,
        "batch_round_trips": warm / (FCM_LATENCY_MS / 1000),
        "batch_cpu_seconds": statistics.median(cpu[1:]),
        "herald_cores": sorted(herald_cores),
        "fcm_send_seconds": sending,
        # how many provider latencies the sending took (one request after another: 100)
        "fcm_round_trips": sending / (FCM_LATENCY_MS / 1000),
        "aws_calls_per_push": {k: v / PUSH_RECORDS for k, v in sorted(calls.items())},
    }


def push_batch_in_fresh_process(handlers_output: io.StringIO) -> dict[str, Any]:
    """`push_batch_path` in an interpreter of its own, holding only the push sender as on Lambda
    (this one holds every earlier section's modules and moto's state, which slows its garbage
    collections); what the handler prints is added to `handlers_output`."""
    done = subprocess.run(
        [sys.executable, "-m", "local.bench", "--push-batch"],
        cwd=REPO,
        env=_env_for_import({}),
        capture_output=True,
        text=True,
        check=False,
    )
    handlers_output.write(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"the push batch benchmark failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def _split_cores() -> tuple[set[int], set[int]]:
    """One core for the handler and the rest for the servers, when there are two or more."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return set(cores), set(cores)
    return {cores[0]}, set(cores[1:])


@contextlib.contextmanager
def _affinity(cores: set[int]) -> Iterator[None]:
    """This thread (and the threads and processes it starts meanwhile) on `cores`."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _queue_push_batch(stack: Any, entry: Any, run: int) -> None:
    """`PUSH_RECORDS` people with `PUSH_TOKENS` devices each, their notification records (as the
    router writes them) and one reference message each on the Push queue."""
    from herald.messages import ChannelMessage
    from herald.models import Channel
    from herald.stores.notifications import NotificationRecord, NotificationStore
    from herald.stores.users import UserStore
    from herald.users import UserProfile

    dynamodb, sqs = stack.client("dynamodb"), stack.client("sqs")
    users = UserStore(dynamodb, stack.tables["UsersTable"])
    notifications = NotificationStore(dynamodb, stack.tables["NotificationsTable"])
    for i in range(PUSH_RECORDS):
        user_id = f"p{run}-{i}"
        tokens = [f"fcm-{run}-{i}-{d}" for d in range(PUSH_TOKENS)]
        registered = {"platform": "android", "registered_at": "2026-01-01T00:00:00Z"}
        users.put_profile(UserProfile(user_id=user_id, devices={t: registered for t in tokens}))
        message = ChannelMessage(
            notification_id=f"bench-push-{run}-{i}",
            event_id=f"bench-push-{run}-{i}",
            user_id=user_id,
            type="order_shipped",
            channel=Channel.PUSH,
            urgency=entry.urgency,
            category=entry.category,
            locale="en",
            device_tokens=tokens,  # a reference: the data is read from the record with the claim
        )
        notifications.create(
            NotificationRecord(
                user_id=user_id,
                notification_id=message.notification_id,
                event_id=message.event_id,
                type=message.type,
                category=message.category,
                urgency=message.urgency,
                locale="en",
                data=entry.sample_data,
                created_at=datetime.now(UTC),
                status="routed",
            )
        )
        sqs.send_message(QueueUrl=stack.queue_urls["Push"], MessageBody=message.queue_body())


class _RemoteStack:
    """What the bench's helpers use of a stack (clients, tables, queues, the push sender's
    environment), provisioned in a moto server of its own process."""

    def __init__(self, description: Any, url: str) -> None:
        self._url = url
        resources = description.resources.values()
        self.tables = {r.logical_id: r.physical_id for r in resources if r.type == "AWS::DynamoDB::Table"}
        self.queue_urls = {
            r.logical_id.removesuffix("Queue"): r.physical_id
            for r in resources
            if r.type == "AWS::SQS::Queue"
        }
        self.env = dict(description.functions["PushSenderFunction"].environment)

    def client(self, service: str) -> Any:
        from local.moto_server import aws_client

        return aws_client(service, self._url)


@contextlib.contextmanager
def _moto_process() -> Iterator[str]:
    """`moto_server` on a free loopback port, in a process of its own; yields its URL."""
    import socket
    import urllib.error
    import urllib.request

    from local.moto_server import MOTO_CONFIG

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited ({process.returncode})")
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        else:
            raise RuntimeError("moto_server did not start")
        # as the local stack configures its moto (local.moto_server.MOTO_CONFIG)
        config = urllib.request.Request(
            f"{url}/moto-api/config", data=json.dumps(MOTO_CONFIG).encode(), method="POST"
        )
        urllib.request.urlopen(config, timeout=5).read()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class _SandboxProcess:
    """`python -m local.sandboxes` on a free loopback port, with credentials made here."""

    def __init__(self, port: int, credentials: Any, process: subprocess.Popen[bytes]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.credentials = credentials
        self.process = process

    def control(self, method: str, path: str, body: Any = None) -> Any:
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as answer:
            text = answer.read()
        return json.loads(text) if text else None


@contextlib.contextmanager
def _sandbox_process() -> Any:
    import socket
    import tempfile
    import urllib.error

    from local.sandboxes.credentials import SandboxCredentials

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    credentials = SandboxCredentials.generate(f"http://127.0.0.1:{port}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "credentials.json"
        path.write_text(json.dumps(credentials.to_dict()))
        process = subprocess.Popen(
            [sys.executable, "-m", "local.sandboxes", "--port", str(port), "--credentials", str(path)],
            cwd=REPO,
            env=_env_for_import({}),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sandbox = _SandboxProcess(port, credentials, process)
        try:
            for _ in range(100):
                try:
                    sandbox.control("GET", "/_health")
                    break
                except (urllib.error.URLError, ConnectionError):
                    time.sleep(0.1)
            else:
                raise RuntimeError("the FCM sandbox did not start")
            yield sandbox
        finally:
            process.terminate()
            process.wait(timeout=10)


def _fresh_module(name: str) -> Any:
    """A function's handler module imported anew (its clients and settings are read at import)."""
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def _count_calls(calls: Counter[str], function: str, *clients: Any) -> None:
    for client in clients:
        client.meta.events.register(
            "before-call.*.*",
            lambda model, **_: calls.update([f"{function} {model.service_model.service_name}:{model.name}"]),
        )


def _receive_batch(stack: Any, queue: str) -> dict[str, Any]:
    """One Lambda-shaped SQS event of every message on `queue` (received with a separate client,
    so the receive is not counted as the function's)."""
    from tests.support.sqs import received_event

    sqs = stack.client("sqs")
    url = stack.queue_urls[queue]
    messages: list[dict[str, Any]] = []
    for _ in range(5):
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
        messages += got.get("Messages", [])
        if len(messages) >= BATCH:
            break
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return received_event(messages, arn)


def decision_cpu() -> float:
    """CPU seconds per routing decision (pure function, representative mixed inputs)."""
    from herald.catalog import load_catalog
    from herald.models import Channel, NotificationRequest
    from herald.routing.decision import RoutingInput, decide
    from herald.users import UserProfile

    catalog = load_catalog()
    user = UserProfile(
        user_id="1",
        email="a@example.com",
        phone="+14155550100",
        time_zone="Europe/Paris",
        quiet_hours={"start": "22:00", "end": "07:00"},
        devices={"t": {"platform": "ios", "registered_at": "2026-01-01T00:00:00Z"}},
        preferences={"marketing_opt_in": True},
    )
    inputs = [
        RoutingInput(
            NotificationRequest(event_id=f"e{i}", type=name, user_id="1"),
            catalog.entry(name),
            user,
            i % 2 == 0,
            frozenset(),
            {Channel.PUSH: i % 40},
            {Channel.EMAIL: 20, Channel.PUSH: 30, Channel.SMS: 5},
            datetime(2026, 11, 22, i % 24, tzinfo=UTC),
        )
        for i, name in enumerate(sorted(catalog.types) * 500)
    ]
    start = time.process_time()
    for given in inputs:
        decide(given)
    return (time.process_time() - start) / len(inputs)


class _Context:
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def _sqs_event(details: list[dict[str, Any]]) -> dict[str, Any]:
    records = []
    for i, detail in enumerate(details):
        body = {
            "version": "0",
            "id": f"b{i}",
            "detail-type": "NotificationRequested",
            "source": "bench",
            "account": "123456789012",
            "time": "2026-11-22T12:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        }
        records.append(
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": json.dumps(body),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1",
                    "SenderId": "b",
                    "ApproximateFirstReceiveTimestamp": "1",
                },
                "messageAttributes": {},
                "md5OfBody": "0",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench-Ingest",
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}


def paths_in_fresh_process(sizes: Sequence[int], *, warm_up: bool) -> dict[str, Any]:
    """The ten paths (local/bench_paths.py) in an interpreter of their own, with a local stack of
    their own; its progress lines go to the terminal, its report comes back as JSON."""
    out = REPO / ".local" / "bench-paths.json"
    out.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "local.bench_paths",
        "--sizes",
        ",".join(map(str, sizes)),
        "--out",
        str(out),
        "--log",
        str(REPO / ".local" / "bench-paths-handlers.log"),
    ]
    sys.stdout.flush()  # its progress lines come after what is printed so far
    done = subprocess.run(
        command + ([] if warm_up else ["--no-warm-up"]), cwd=REPO, env=_env_for_import({}), check=False
    )
    if not out.exists():
        raise RuntimeError(f"the paths benchmark wrote no report (exit {done.returncode})")
    return json.loads(out.read_text())


def _figures(raw: dict[str, Any], units: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """`raw` figures as `{"value", "unit", "how"}` (`units`: key -> (unit, how))."""
    return {key: figure(value, *units.get(key, ("", ""))) for key, value in raw.items()}


PUSH_BATCH_UNITS = {
    "records": ("records", "SQS records in the push sender's batch"),
    "tokens_per_record": ("device tokens", "device tokens of each record's person"),
    "fcm_latency_ms": ("ms", "the FCM sandbox's delay before each answer"),
    "first_batch_seconds": ("s", "the first batch's handler wall time (OAuth token, threads)"),
    "batch_seconds": ("s", "median handler wall time of the next batches"),
    "batch_round_trips": ("FCM latencies", "batch_seconds / fcm_latency_ms"),
    "batch_cpu_seconds": ("s", "median process CPU of the handler per batch (servers in other processes)"),
    "herald_cores": ("cores", "the core the handler ran on (the servers on the others)"),
    "fcm_send_seconds": ("s", "median time spent in FcmPushProvider.send_batch"),
    "fcm_round_trips": ("FCM latencies", "fcm_send_seconds / fcm_latency_ms"),
    "aws_calls_per_push": ("calls/record", "botocore hooks on the push sender's clients, per record"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="CI: the paths with 2 notifications, nothing else"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--sizes", help="batch sizes of the paths (default 10,100; smoke 2)")
    args = parser.parse_args(argv)
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else list(SMOKE_SIZES if args.smoke else DEFAULT_SIZES)
    )
    sys.path[:0] = [str(REPO), str(REPO / "layers" / "herald")]
    print(
        "Herald benchmarks (DESIGN §11, issue 13)"
        + ("  --smoke: tiny sizes, no thresholds" if args.smoke else "")
    )
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "make bench  # python -m local.bench "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "smoke": args.smoke,
    }
    handlers_output = io.StringIO()

    if not args.smoke:
        from local.bench_cold import cold_start_figures, print_cold_starts

        print("\nCold start: each handler's import against its floor (issue 13 item 3)")
        cold = cold_start_figures(runs=IMPORT_RUNS)
        print_cold_starts(cold)
        report["cold_start"] = cold

    cpu = decision_cpu()
    print(f"\nRouter CPU per routing decision (pure, no I/O): {cpu * 1e6:.0f} µs")
    report["decision_cpu"] = figure(
        round(cpu * 1e6, 2),
        "µs/decision",
        "process CPU of herald.routing.decide over every catalog type x 500 inputs",
    )

    print(
        "\nFull paths, end to end on the local stack "
        f"(batches of {' and '.join(map(str, sizes))} notifications"
        f"{'' if args.smoke else ', after a warm-up batch of 1'}); figures per notification"
    )
    paths = paths_in_fresh_process(sizes, warm_up=not args.smoke)
    print(format_paths(paths))
    report["paths"] = paths
    failed = dict(paths.get("failures", {}))
    if failed:
        print("\n  Paths that did not complete:")
        for name, reason in failed.items():
            print(f"    {name}: {reason}")

    targets = check_targets(paths, smoke=args.smoke)

    if not args.smoke:
        with contextlib.redirect_stdout(handlers_output), contextlib.redirect_stderr(handlers_output):
            realtime = realtime_path()
        print(f"\nRealtime: medium to an online person, router + realtime sender (batches of {BATCH})")
        for label, figures in realtime.items():
            aws = figures["aws_calls_per_notification"]
            pusher = figures["pusher_requests_per_notification"]
            print(f"  {label:<24} Pusher requests per notification {pusher:g} (target {figures['target']})")
            print(
                f"  {'':<24} AWS calls {sum(aws.values()):.1f}: "
                + ", ".join(f"{k} {v:g}" for k, v in aws.items())
            )
        report["realtime"] = {
            label: {
                "pusher_requests_per_notification": figure(
                    f["pusher_requests_per_notification"],
                    "requests/notification",
                    "Pusher SDK requests of the realtime sender (moto in-process, the Pusher sandbox)",
                ),
                "target": figure(
                    f["target"], "requests/notification", "one trigger when occupied, none when vacated"
                ),
                "aws_calls_per_notification": figure(
                    f["aws_calls_per_notification"],
                    "calls/notification",
                    "botocore hooks, router + realtime sender",
                ),
            }
            for label, f in realtime.items()
        }

        push = push_batch_in_fresh_process(handlers_output)
        per_push = push["aws_calls_per_push"]
        print(
            f"\nPush batch: {push['records']} records x {push['tokens_per_record']} device tokens, "
            f"FCM sandbox at {push['fcm_latency_ms']} ms a request, the handler on one core "
            f"({'core ' + ','.join(map(str, push['herald_cores']))}, the servers on the others)"
        )
        print(
            f"  the whole batch {push['batch_seconds'] * 1000:.0f} ms = {push['batch_round_trips']:.2f} "
            f"round trips (target: under 3), with its claims, suppression read and outcomes; "
            f"the handler's CPU {push['batch_cpu_seconds'] * 1000:.0f} ms"
        )
        print(
            f"  sending the {push['records'] * push['tokens_per_record']} messages "
            f"{push['fcm_send_seconds'] * 1000:.0f} ms ({push['fcm_round_trips']:.1f} round trips); "
            f"the first batch {push['first_batch_seconds'] * 1000:.0f} ms (OAuth token, threads)"
        )
        print(
            f"  AWS calls per push {sum(per_push.values()):.1f}: "
            + ", ".join(f"{k} {v:g}" for k, v in per_push.items())
        )
        report["push_batch"] = _figures(push, PUSH_BATCH_UNITS)

        from local.bench_sizes import package_figures, print_package_sizes

        print("\nPackage sizes, unzipped, from the arm64 `sam build` (issue 13 item 4)")
        packages = package_figures()
        print_package_sizes(packages)
        report["package_sizes"] = packages

    if not args.smoke:
        targets += _section_targets(report)
    report["targets"] = targets
    print("\nTargets (issues 12 and 13; checked by this benchmark only, never by unit tests)")
    for target in targets:
        verdict = {True: "met", False: "NOT met", None: "not checked"}[target["met"]]
        print(f"  {verdict:<11} {target['target']}: {target['measured']}")

    out = REPO / ".local" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    log = out.with_name("bench-handlers.log")
    log.write_text(handlers_output.getvalue())
    print(
        f"\nwrote {out.relative_to(REPO)}; the handlers' output: {log.relative_to(REPO)}, "
        ".local/bench-paths-handlers.log"
    )
    missed = [t for t in targets if t["met"] is False]
    if failed:
        return 1
    return 1 if args.check and missed else 0


def _section_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of the cold-start, package-size and push-batch sections, as `check_targets`'."""
    targets = []
    cold = report.get("cold_start", {})
    ratios = {k.split(".")[1]: v["value"] for k, v in cold.items() if k.endswith(".ratio")}
    if ratios:
        worst = max(ratios, key=lambda name: ratios[name])
        targets.append(
            {
                "target": "every handler's cold import <= 1.15 x its floor",
                "measured": f"worst {worst} {ratios[worst]:.2f}x; "
                + ", ".join(f"{k} {v:.2f}" for k, v in sorted(ratios.items())),
                "met": all(v <= 1.15 for v in ratios.values()),
            }
        )
    packages = report.get("package_sizes", {})
    met = {k.split(".")[1]: v["value"] for k, v in packages.items() if k.endswith(".target_met")}
    if met:
        over = sorted(name for name, ok in met.items() if not ok)
        targets.append(
            {
                "target": "no function package over 40 MB unzipped",
                "measured": "over: " + ", ".join(over) if over else "all under",
                "met": not over,
            }
        )
    push = report.get("push_batch", {})
    if "batch_round_trips" in push:
        trips = push["batch_round_trips"]["value"]
        targets.append(
            {
                "target": "a push batch of 10 x 10 under 3 round trips of 100 ms",
                "measured": f"{trips:.2f}",
                "met": trips < 3,
            }
        )
    return targets


def _push_batch_main() -> int:
    """`--push-batch`: `push_batch_path` as one JSON line on stdout; the handler's output on stderr."""
    sys.path[:0] = [str(REPO), str(REPO / "layers" / "herald")]
    with contextlib.redirect_stdout(sys.stderr):
        push = push_batch_path()
    print(json.dumps(push))
    return 0


if __name__ == "__main__":
    raise SystemExit(_push_batch_main() if sys.argv[1:] == ["--push-batch"] else main())
