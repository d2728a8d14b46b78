"""X-Ray tracing built on the first sampled invocation, not at cold start (herald.tracing, decision 031)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aws_lambda_powertools import Tracer
from aws_lambda_powertools.tracing import tracer as powertools_tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

from herald.tracing import TRACE_HEADER, LazyTracer, invocation_sampled, tracing_enabled

pytestmark = pytest.mark.unit

SAMPLED = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
NOT_SAMPLED = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
TRACING_VARIABLES = ("POWERTOOLS_TRACE_DISABLED", "LAMBDA_TASK_ROOT", "AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE")


class RecordedSegment(BaseSegment):
    def __init__(self, name: str) -> None:
        self.name = name
        self.annotations: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}
        self.exceptions: list[BaseException] = []

    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        self.annotations[key] = value

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        self.metadata[key] = value

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        self.exceptions.append(exception)


class RecordingProvider(BaseProvider):
    """What powertools' Tracer would hand to X-Ray: the subsegments, in order."""

    def __init__(self) -> None:
        self.segments: list[RecordedSegment] = []
        self.patched = False

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[RecordedSegment]:
        segment = RecordedSegment(name or "")
        self.segments.append(segment)
        yield segment

    def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> Any:
        raise NotImplementedError

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Any) -> None:
        self.patched = True

    def patch_all(self) -> None:
        self.patched = True


@pytest.fixture(autouse=True)
def _fresh_powertools_tracer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """powertools keeps the Tracer's configuration and the cold-start flag process-wide."""
    for name in (*TRACING_VARIABLES, TRACE_HEADER):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(powertools_tracer, "is_cold_start", True)
    Tracer._reset_config()
    yield
    Tracer._reset_config()


@pytest.fixture
def in_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")


class Built:
    """A factory of real powertools Tracers on a recording provider, counting what it built."""

    def __init__(self) -> None:
        self.provider = RecordingProvider()
        self.count = 0

    def __call__(self) -> Tracer:
        self.count += 1
        return Tracer(service="herald", provider=self.provider)


@pytest.mark.parametrize(
    "environment",
    [
        {},
        {"LAMBDA_TASK_ROOT": "/var/task"},
        {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"},
        {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "1"},
        {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "false"},
        {"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"},
        {"LAMBDA_TASK_ROOT": "/var/task", "AWS_CHALICE_CLI_MODE": "true"},
        {"POWERTOOLS_TRACE_DISABLED": "false"},
    ],
)
def test_tracing_is_on_exactly_when_powertools_would_trace(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an environment
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    # WHEN Herald decides whether tracing is on
    enabled = tracing_enabled()

    # THEN it agrees with powertools' own rule
    assert enabled is not Tracer._is_tracer_disabled()


@pytest.mark.parametrize(
    ("header", "sampled"),
    [
        (SAMPLED, True),
        (SAMPLED + ";Lineage=a87bd80c:1|68fd508a:5", True),
        ("Parent=53995c3f42cd8ad8;Sampled=1;Root=1-5759e988-bd862e3fe1be46a994272793", True),
        (NOT_SAMPLED, False),
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?", False),
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", False),  # no parent: the SDK's dummy segment
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8", False),
        ("", False),
    ],
)
def test_an_invocation_is_sampled_as_the_x_ray_sdk_reads_its_header(header: str, sampled: bool) -> None:
    assert invocation_sampled({TRACE_HEADER: header}) is sampled


def test_without_a_sampled_invocation_nothing_is_built_and_the_handler_runs_as_is(
    in_lambda: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a handler decorated by a lazy tracer, in Lambda, on an invocation X-Ray does not sample
    built = Built()
    tracer = LazyTracer(factory=built)

    @tracer.capture_method
    def step(value: int) -> int:
        return value + 1

    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"answer": step(event["value"])}

    monkeypatch.setenv(TRACE_HEADER, NOT_SAMPLED)

    # WHEN it is invoked
    result = handler({"value": 41}, None)

    # THEN it answers, and no Tracer (no X-Ray SDK) was built
    assert result == {"answer": 42}
    assert built.count == 0
    assert tracer.sampled_tracer() is None


def test_a_sampled_invocation_is_traced_as_powertools_traces_it(
    in_lambda: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a lazily traced handler and method, on an invocation X-Ray samples
    built = Built()
    tracer = LazyTracer(factory=built)

    @tracer.capture_method(capture_response=False)
    def step(value: int) -> int:
        return value + 1

    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"answer": step(event["value"])}

    monkeypatch.setenv(TRACE_HEADER, SAMPLED)

    # WHEN it is invoked twice
    first = handler({"value": 1}, None)
    second = handler({"value": 2}, None)

    # THEN one Tracer was built, it patched the libraries, and each invocation has its subsegments
    assert (first, second) == ({"answer": 2}, {"answer": 3})
    assert built.count == 1
    assert built.provider.patched
    names = [segment.name for segment in built.provider.segments]
    assert [name.rpartition(".")[2] for name in names] == ["## handler", "step"] * 2
    handlers = [s for s in built.provider.segments if s.name == "## handler"]
    assert [s.annotations["ColdStart"] for s in handlers] == [True, False]
    assert handlers[0].annotations["Service"] == "herald"
    assert handlers[0].metadata == {"handler response": {"answer": 2}}
    steps = [s for s in built.provider.segments if s.name != "## handler"]
    assert steps[0].metadata == {}  # capture_response=False reached powertools


def test_a_tracer_built_after_unsampled_invocations_does_not_call_a_warm_start_cold(
    in_lambda: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an execution environment whose first invocation was not sampled
    built = Built()
    tracer = LazyTracer(factory=built)

    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: Any) -> str:
        return "ok"

    monkeypatch.setenv(TRACE_HEADER, NOT_SAMPLED)
    handler({}, None)

    # WHEN a later invocation is sampled
    monkeypatch.setenv(TRACE_HEADER, SAMPLED)
    handler({}, None)

    # THEN its trace says it was not a cold start
    assert [s.annotations["ColdStart"] for s in built.provider.segments] == [False]


def test_an_error_propagates_traced_or_not(in_lambda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a handler that fails
    built = Built()
    tracer = LazyTracer(factory=built)

    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: Any) -> None:
        raise ValueError("broken record")

    # WHEN it runs unsampled, then sampled
    monkeypatch.setenv(TRACE_HEADER, NOT_SAMPLED)
    with pytest.raises(ValueError, match="broken record"):
        handler({}, None)
    monkeypatch.setenv(TRACE_HEADER, SAMPLED)
    with pytest.raises(ValueError, match="broken record"):
        handler({}, None)

    # THEN the caller sees the same error both times, and the sampled trace records it
    (segment,) = built.provider.segments
    assert str(segment.metadata["handler error"]) == "broken record"


def test_tracing_switched_off_builds_nothing_even_when_sampled(
    in_lambda: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN POWERTOOLS_TRACE_DISABLED, on a sampled invocation
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv(TRACE_HEADER, SAMPLED)
    built = Built()
    tracer = LazyTracer(factory=built)
    handler = tracer.capture_lambda_handler(lambda event, context: "ok")

    # WHEN it is invoked
    result = handler({}, None)

    # THEN no tracer is built
    assert (result, built.count) == ("ok", 0)
