"""Recurring notifications (decision 028): schedules are data — `schedules.yaml`, packaged with the
layer and deployed with the stack, plus the ones operators add with `herald schedule put`.

Each is an EventBridge Scheduler schedule in the stack's recurring group whose target is the Herald
bus itself: at every occurrence Scheduler puts a `NotificationRequested` whose `event_id` is
`sched-<name>-<the occurrence's scheduled time>` (Scheduler's `<aws.scheduler.scheduled-time>`
context attribute). A retried or repeated delivery of one occurrence carries the same event id, so
the router delivers it once per recipient; the next occurrence is a new event.

Who owns a schedule is in its description: `herald:file` (this file: created, updated and deleted by
`sync` on each deploy) or `herald:cli:<who>` (an operator's; a deploy never touches it, unless the
file names the same schedule, and then the file wins).
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any, Literal

import yaml
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from herald.catalog import Catalog
from herald.models import DETAIL_TYPE
from herald.sends import ManualSend, SendRefused
from herald.users import known_time_zone

SOURCE = "herald.schedule"
FILE_OWNER = "herald:file"
CLI_OWNER_PREFIX = "herald:cli:"
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,47}$"
CRON = re.compile(r"^cron\((.+)\)$")
RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
CRON_FIELD = re.compile(r"^[0-9A-Za-z*?,/#LW-]+$")
# Scheduler retries a failed delivery to the bus for up to a day (its maximum), then drops it: an
# occurrence late by more than a day is not worth sending.
RETRY_POLICY = {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}


class ScheduleError(ValueError):
    """A schedule that does not fit the catalog or Scheduler's rules."""


class RecurringNotification(BaseModel):
    """One schedule: when (a cron or rate expression in a time zone) and what (a manual send)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    expression: str = Field(description="cron(...) or rate(...), EventBridge Scheduler's syntax")
    timezone: str = "UTC"
    enabled: bool = True
    send: ManualSend

    @field_validator("expression")
    @classmethod
    def _scheduler_syntax(cls, expression: str) -> str:
        """What EventBridge Scheduler refuses, refused here first (a deploy must not fail half-way):
        cron has six fields and exactly one of day-of-month and day-of-week is `?`; a rate is a
        positive whole number, with a singular unit for 1 and a plural one otherwise."""
        if rate := RATE.match(expression):
            value, unit = int(rate.group(1)), rate.group(2)
            if value < 1 or (value == 1) != (not unit.endswith("s")):
                raise ValueError(f"{expression}: write rate(1 minute), rate(5 minutes) ...")
            return expression
        cron = CRON.match(expression)
        if cron is None:
            raise ValueError(f"{expression!r} is neither cron(...) nor rate(...)")
        fields = cron.group(1).split()
        if len(fields) != 6 or not all(CRON_FIELD.match(f) for f in fields):
            raise ValueError(f"{expression}: cron takes six fields (minutes hours day month weekday year)")
        if (fields[2] == "?") == (fields[4] == "?"):
            raise ValueError(f"{expression}: exactly one of day-of-month and day-of-week must be ?")
        return expression

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        return known_time_zone(zone)

    def checked(self, catalog: Catalog) -> RecurringNotification:
        """Itself, once the catalog accepts what it sends (ScheduleError otherwise)."""
        if self.send.event_id is not None or self.send.send_at is not None:
            raise ScheduleError(f"{self.name}: the event id and the time come from each occurrence")
        try:
            self.send.request(catalog)
        except SendRefused as error:
            raise ScheduleError(f"{self.name}: {error}") from None
        return self

    def detail(self) -> dict[str, Any]:
        """The `NotificationRequested` detail Scheduler puts at each occurrence."""
        fields = self.send.model_dump(mode="json", exclude_none=True)
        return {"event_id": f"sched-{self.name}-{SCHEDULED_TIME}", **fields}


def parse_schedules(text: str, catalog: Catalog) -> list[RecurringNotification]:
    """`schedules.yaml`: `schedules: {<name>: {expression, timezone?, enabled?, type, user_id |
    audience, data, urgency?, locale?}}`, every one checked against the catalog."""
    raw = yaml.safe_load(text) or {}
    entries = raw.get("schedules") or {}
    if not isinstance(entries, dict):
        raise ScheduleError("`schedules` must map each schedule's name to its definition")
    found = []
    for name, spec in entries.items():
        if not isinstance(spec, dict):
            raise ScheduleError(f"{name}: a schedule is a mapping")
        when = {k: spec[k] for k in ("expression", "timezone", "enabled") if k in spec}
        what = {k: v for k, v in spec.items() if k not in when}
        try:
            schedule = RecurringNotification.model_validate({"name": name, **when, "send": what})
        except ValidationError as error:
            raise ScheduleError(f"{name}: {error}") from None
        found.append(schedule.checked(catalog))
    return found


def packaged_schedules(catalog: Catalog) -> list[RecurringNotification]:
    """The schedules file deployed with this layer."""
    return parse_schedules(resources.files("herald").joinpath("schedules.yaml").read_text("utf-8"), catalog)


class ScheduleManager:
    """The recurring group's schedules on EventBridge Scheduler."""

    def __init__(self, scheduler: Any, *, group: str, bus_arn: str, role_arn: str) -> None:
        self._scheduler = scheduler
        self._group = group
        self._bus_arn = bus_arn
        self._role_arn = role_arn

    def put(self, schedule: RecurringNotification, owner: str) -> Literal["created", "updated"]:
        definition = {
            "Name": schedule.name,
            "GroupName": self._group,
            "ScheduleExpression": schedule.expression,
            "ScheduleExpressionTimezone": schedule.timezone,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED" if schedule.enabled else "DISABLED",
            "Description": owner,
            "Target": {
                "Arn": self._bus_arn,
                "RoleArn": self._role_arn,
                "EventBridgeParameters": {"DetailType": DETAIL_TYPE, "Source": SOURCE},
                "Input": json.dumps(schedule.detail(), separators=(",", ":")),
                "RetryPolicy": RETRY_POLICY,
            },
        }
        try:
            self._scheduler.update_schedule(**definition)
            return "updated"
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
        self._scheduler.create_schedule(**definition)
        return "created"

    def owner(self, name: str) -> str | None:
        """Whose schedule `name` is (`herald:file`, `herald:cli:<who>`); None when there is none."""
        try:
            return str(
                self._scheduler.get_schedule(Name=name, GroupName=self._group).get("Description") or ""
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise

    def delete(self, name: str) -> bool:
        try:
            self._scheduler.delete_schedule(Name=name, GroupName=self._group)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return False
            raise
        return True

    def list(self) -> list[dict[str, Any]]:
        """Each schedule of the group as Scheduler holds it (expression, state, owner, target input)."""
        names = []
        for page in self._scheduler.get_paginator("list_schedules").paginate(GroupName=self._group):
            names += [s["Name"] for s in page.get("Schedules", [])]
        return [self._scheduler.get_schedule(Name=name, GroupName=self._group) for name in sorted(names)]

    def sync(self, schedules: list[RecurringNotification]) -> dict[str, list[str]]:
        """Make the group hold the file's schedules: put each one, delete those the file no longer
        names (only the file's own: an operator's stay)."""
        report: dict[str, list[str]] = {"created": [], "updated": [], "deleted": []}
        for schedule in schedules:
            report[self.put(schedule, FILE_OWNER)].append(schedule.name)
        wanted = {s.name for s in schedules}
        for existing in self.list():
            if existing.get("Description") == FILE_OWNER and existing["Name"] not in wanted:
                self.delete(existing["Name"])
                report["deleted"].append(existing["Name"])
        return report

    def remove_file_schedules(self) -> list[str]:
        """The stack is deleted: the file's schedules go with it."""
        return [
            s["Name"] for s in self.list() if s.get("Description") == FILE_OWNER and self.delete(s["Name"])
        ]
