"""The local EventBridge Scheduler fills the context attributes of a target's input as Scheduler
does: a retried delivery of one occurrence carries that occurrence's scheduled time (so a
recurring notification's event id is the same on every retry), the next occurrence its own."""

from __future__ import annotations

import json
from typing import Any

import pytest

from local.schedules import Schedules, _Tracked, parse_schedule_expression

pytestmark = pytest.mark.unit

INPUT = json.dumps(
    {"event_id": "sched-daily-<aws.scheduler.scheduled-time>", "attempt": "<aws.scheduler.attempt-number>"}
)


class FlakyBus:
    """Refuses the first delivery, records the others."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.calls = 0

    def deliver(self, target: dict[str, Any], payload: str, *, schedule_name: str) -> str:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("bus unavailable")
        self.payloads.append(json.loads(payload))
        return "event bus"


def test_a_retried_occurrence_keeps_its_scheduled_time_and_the_next_has_its_own() -> None:
    bus = FlakyBus()
    schedules = Schedules(scheduler=None, delivery=bus, account="123456789012", region="us-east-1")  # type: ignore[arg-type]
    due = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    tracked = _Tracked(
        arn="arn:aws:scheduler:us-east-1:123456789012:schedule/g/daily",
        group="g",
        name="daily",
        version="v1",
        definition={"Target": {"Arn": "arn:aws:events:us-east-1:123456789012:event-bus/b", "Input": INPUT}},
        expression=parse_schedule_expression("rate(1 day)", anchor=due - 86400),
        next_fire=due,
    )

    assert schedules._fire(tracked, due) is False  # refused: retried later
    assert schedules._fire(tracked, due + 2) is True  # the retry, two seconds late
    tracked.next_fire = due + 86400
    assert schedules._fire(tracked, due + 86400) is True  # the next occurrence

    assert bus.payloads == [
        {"event_id": "sched-daily-2027-01-15T08:00:00Z", "attempt": "2"},
        {"event_id": "sched-daily-2027-01-16T08:00:00Z", "attempt": "1"},
    ]
