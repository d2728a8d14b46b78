"""Work a traced invocation hands to a thread pool stays in its trace (herald.tracing.in_current_trace),
with the real X-Ray SDK as Lambda runs it. Integration: importing the SDK opens its UDP emitter's
socket (nothing is sent: the emitter is replaced)."""

from __future__ import annotations

from typing import Any

import pytest

from herald.tracing import TRACE_HEADER

pytestmark = pytest.mark.integration

SAMPLED = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture
def in_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED", raising=False)
    monkeypatch.delenv("AWS_SAM_LOCAL", raising=False)


# -- work on other threads -------------------------------------------------------------------


class Emitted:
    """The X-Ray SDK's emitter, keeping what it would send to the daemon."""

    def __init__(self) -> None:
        self.entities: list[Any] = []

    def send_entity(self, entity: Any) -> None:
        self.entities.append(entity)

    def set_daemon_address(self, address: Any) -> None:
        pass


@pytest.fixture
def lambda_recorder(in_lambda: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The X-Ray SDK's global recorder as Lambda has it (a `LambdaContext` reading the invocation's
    trace header), its emitter recording instead of sending over UDP."""
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.core.lambda_launcher import LambdaContext

    monkeypatch.setattr(xray_recorder, "_context", LambdaContext())
    monkeypatch.setattr(xray_recorder, "_emitter", Emitted())
    monkeypatch.setattr(xray_recorder, "streaming_threshold", 0)  # Lambda's: each subsegment sent as it ends
    monkeypatch.setenv(TRACE_HEADER, SAMPLED)
    return xray_recorder


@pytest.mark.parametrize("wrapped", [True, False], ids=["in_current_trace", "plain"])
def test_work_on_a_pool_thread_is_traced_under_the_step_that_handed_it_over(
    lambda_recorder: Any, wrapped: bool
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from herald.tracing import in_current_trace

    def send(n: int) -> str:
        with lambda_recorder.in_subsegment(f"send-{n}") as subsegment:
            return str(subsegment.parent_id)

    # GIVEN a sampled invocation whose batch step hands three sends to a pool of one thread
    with lambda_recorder.in_subsegment("batch") as batch, ThreadPoolExecutor(max_workers=1) as pool:
        task = in_current_trace(send) if wrapped else send
        parents = list(pool.map(task, range(3)))
        # the caller's own context is untouched by what the pool's thread did
        assert lambda_recorder.get_trace_entity() is batch
        # and a later task on the same thread, handed over plainly, is not left in the batch step
        later = pool.submit(send, 9).result()

    # THEN with in_current_trace each send's subsegment hangs off the batch step, as emitted; without
    # it, off the invocation's own facade segment (what the thread made of the trace header alone)
    sent = {e.name: e.parent_id for e in lambda_recorder._emitter.entities if e.name.startswith("send-")}
    if wrapped:
        assert parents == [batch.id] * 3
        assert [sent[f"send-{n}"] for n in range(3)] == [batch.id] * 3
    else:
        assert batch.id not in parents
    assert later != batch.id


def test_without_a_sampled_invocation_the_work_is_handed_over_untouched(
    in_lambda: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from herald.tracing import in_current_trace

    monkeypatch.delenv(TRACE_HEADER, raising=False)

    def send() -> None:
        pass

    assert in_current_trace(send) is send  # nothing sampled: no wrapper, no X-Ray call
