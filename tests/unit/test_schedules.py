"""schedules.yaml (decision 028): each recurring notification is checked against the catalog when
the file loads (`make test` loads the shipped one), and its occurrences carry an event id made of
the schedule's name and Scheduler's scheduled time."""

from __future__ import annotations

import pytest
import yaml

from herald.catalog import load_catalog
from herald.schedules import SCHEDULED_TIME, ScheduleError, packaged_schedules, parse_schedules
from tests.support.aws import REPO_ROOT

pytestmark = pytest.mark.unit

PROMO = "{headline: Monday deals, discount: 10%, cta_url: 'https://example.com/deals'}"


def one(body: str) -> str:
    return f"schedules:\n  monday-deals:\n{body}"


def test_the_shipped_file_is_valid_and_so_is_its_commented_example() -> None:
    assert isinstance(packaged_schedules(load_catalog()), list)
    shipped = (REPO_ROOT / "layers" / "herald" / "herald" / "schedules.yaml").read_text(encoding="utf-8")
    example = "\n".join(
        line.removeprefix("# ")
        for line in shipped.splitlines()
        if line.startswith("#   ") or line == "# schedules:"
    ).replace("<name>:", "monday-deals:")
    [schedule] = parse_schedules(example, load_catalog())
    assert schedule.send.audience is not None and schedule.send.audience.topic == "deals"


def test_a_schedule_becomes_a_producers_request_named_after_each_occurrence() -> None:
    [schedule] = parse_schedules(
        one(
            "    expression: cron(0 9 ? * MON *)\n    timezone: Europe/Lisbon\n    type: marketing_promo\n"
            f"    audience: {{topic: deals}}\n    data: {PROMO}\n"
        ),
        load_catalog(),
    )
    assert (schedule.name, schedule.expression, schedule.timezone, schedule.enabled) == (
        "monday-deals",
        "cron(0 9 ? * MON *)",
        "Europe/Lisbon",
        True,
    )
    detail = schedule.detail()
    assert detail["event_id"] == f"sched-monday-deals-{SCHEDULED_TIME}"
    assert (detail["type"], detail["audience"]) == ("marketing_promo", {"topic": "deals"})


PROMO_DATA = {"headline": "Monday deals", "discount": "10%", "cta_url": "https://example.com/deals"}
VALID = {"expression": "rate(1 day)", "type": "marketing_promo", "user_id": "42", "data": PROMO_DATA}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"type": "no_such_type"}, "no_such_type"),
        ({"data": {}}, "requires data"),
        ({"expression": "every monday"}, "neither cron"),
        ({"expression": "cron(0 9 * * MON *)"}, "exactly one of day-of-month and day-of-week"),
        ({"expression": "cron(0 9 * *)"}, "six fields"),
        ({"expression": "rate(0 minutes)"}, "rate"),
        ({"expression": "rate(1 days)"}, "rate"),
        ({"timezone": "Mars/Olympus"}, "time zone"),
        ({"event_id": "fixed"}, "event id and the time come from each occurrence"),
        ({"audience": {"all": True}}, "exactly one"),
    ],
)
def test_a_schedule_the_catalog_or_scheduler_would_refuse_fails_the_file(
    change: dict[str, object], complaint: str
) -> None:
    text = yaml.safe_dump({"schedules": {"monday-deals": VALID | change}})
    assert parse_schedules(yaml.safe_dump({"schedules": {"monday-deals": VALID}}), load_catalog())
    with pytest.raises(ScheduleError, match=complaint):
        parse_schedules(text, load_catalog())
