"""Schedules for the local stack: what moto stores but never fires.

Two kinds, both driven by an injectable clock (epoch seconds) so tests can fast-forward:

- EventBridge Scheduler schedules created at run time (Herald's router creates one-time
  `at(...)` schedules for quiet-hours deferrals and `send_at`): every `interval_seconds` the
  schedules of every group are listed, each new or modified one is read with `get_schedule`, and
  when one is due its `Target.Input` is delivered to the target (SQS queue, Step Functions state
  machine, Lambda function of the runner, EventBridge bus, SNS topic). A one-time schedule with
  `ActionAfterCompletion: DELETE` is then deleted; otherwise it is remembered as fired and never
  fires again (unless it is modified). `rate(...)`/`cron(...)` schedules fire on every occurrence.
  A failed delivery is retried with backoff until the target's RetryPolicy is exhausted, then
  sent to the target's DeadLetterConfig queue if there is one (as Scheduler does).
- `Schedule` events of functions (`FunctionSpec.schedules`: EventBridge rules with `rate(...)`
  or `cron(...)`): the function is invoked with a CloudWatch scheduled event (or the rule's
  constant `Input`).

Not emulated: FlexibleTimeWindow FLEXIBLE fires at the start of the window (AWS picks a random
instant inside it); missed occurrences of a recurring schedule fire once, not once each.
"""

from __future__ import annotations

import calendar
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from local.model import ScheduleSource
from local.periodic import PeriodicWorker

logger = logging.getLogger("local.schedules")

Clock = Callable[[], float]
Invoke = Callable[[str, Any], Any]

# ---------------------------------------------------------------------------------------------
# Schedule expressions: at(...), rate(...), cron(...) (EventBridge / Scheduler syntax)
# ---------------------------------------------------------------------------------------------

_AT = re.compile(r"^at\(\s*(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\s*\)$")
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_WEEKDAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_CRON_SEARCH_DAYS = 366 * 10


class ScheduleExpressionError(ValueError):
    pass


def _aws_weekday(day: date) -> int:
    """EventBridge numbers days of the week 1 (SUN) .. 7 (SAT)."""
    return (day.weekday() + 1) % 7 + 1


def _values(item: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    """One comma-separated item of a cron field: `*`, `N`, `A-B`, `*/S`, `A/S`, `A-B/S`."""

    def number(text: str) -> int:
        text = text.strip().upper()
        if text in names:
            return names[text]
        if not text.isdigit():
            raise ScheduleExpressionError(f"bad cron value {text!r}")
        value = int(text)
        if not low <= value <= high:
            raise ScheduleExpressionError(f"cron value {value} outside {low}-{high}")
        return value

    base, _, step_text = item.partition("/")
    step = int(step_text) if step_text else 1
    if step < 1:
        raise ScheduleExpressionError(f"bad cron step in {item!r}")
    if base == "*":
        start, end = low, high
    elif "-" in base:
        first, last = base.split("-", 1)
        start, end = number(first), number(last)
    else:
        start = number(base)
        end = high if step_text else start
    if start <= end:
        span = list(range(start, end + 1))
    else:  # wrap-around range such as FRI-MON or 22-2
        span = list(range(start, high + 1)) + list(range(low, end + 1))
    return set(span[::step])


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        values |= _values(item, low, high, names or {})
    return frozenset(values)


def _last_day(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def _nearest_weekday(year: int, month: int, day: int) -> int:
    """`15W`: the weekday nearest to the 15th, without leaving the month."""
    last = _last_day(year, month)
    day = min(day, last)
    weekday = date(year, month, day).weekday()  # Mon 0 .. Sun 6
    if weekday == 5:  # Saturday -> Friday, or Monday when the 1st is a Saturday
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday -> Monday, or Friday when Sunday is the last day
        return day + 1 if day < last else day - 2
    return day


def _day_of_month_matcher(text: str) -> Callable[[date], bool]:
    if text == "?":
        return lambda day: True
    checks: list[Callable[[date], bool]] = []
    for item in text.split(","):
        item = item.strip().upper()
        if item == "L":
            checks.append(lambda d: d.day == _last_day(d.year, d.month))
        elif item == "LW":
            checks.append(lambda d: d.day == _last_weekday_of_month(d.year, d.month))
        elif item.endswith("W"):
            target = int(item[:-1])
            checks.append(lambda d, t=target: d.day == _nearest_weekday(d.year, d.month, t))
        else:
            days = _values(item, 1, 31, {})
            checks.append(lambda d, days=days: d.day in days)
    return lambda day: any(check(day) for check in checks)


def _last_weekday_of_month(year: int, month: int) -> int:
    day = _last_day(year, month)
    while date(year, month, day).weekday() >= 5:
        day -= 1
    return day


def _day_of_week_matcher(text: str) -> Callable[[date], bool]:
    if text == "?":
        return lambda day: True
    checks: list[Callable[[date], bool]] = []
    for item in text.split(","):
        item = item.strip().upper()
        if "#" in item:  # 2#1: the first Monday of the month
            weekday_text, nth_text = item.split("#", 1)
            weekday, nth = _field(weekday_text, 1, 7, _WEEKDAYS), int(nth_text)
            checks.append(lambda d, w=weekday, n=nth: _aws_weekday(d) in w and (d.day - 1) // 7 + 1 == n)
        elif item == "L":
            checks.append(lambda d: _aws_weekday(d) == 7)
        elif item.endswith("L"):  # 6L: the last Friday of the month
            weekday = _field(item[:-1], 1, 7, _WEEKDAYS)
            checks.append(
                lambda d, w=weekday: _aws_weekday(d) in w and d.day + 7 > _last_day(d.year, d.month)
            )
        else:
            weekdays = _values(item, 1, 7, _WEEKDAYS)
            checks.append(lambda d, w=weekdays: _aws_weekday(d) in w)
    return lambda day: any(check(day) for check in checks)


@dataclass(frozen=True)
class At:
    """`at(YYYY-MM-DDTHH:MM:SS)` in a time zone: fires once."""

    when: datetime

    def first(self) -> float | None:
        return self.when.timestamp()

    def next_after(self, t: float) -> float | None:
        return None


@dataclass(frozen=True)
class Rate:
    """`rate(N unit)`: every `seconds`, counted from `anchor` (creation or start date)."""

    seconds: int
    anchor: float

    def first(self) -> float | None:
        return self.anchor + self.seconds

    def next_after(self, t: float) -> float | None:
        periods = max(0, math.floor((t - self.anchor) / self.seconds)) + 1
        return self.anchor + periods * self.seconds


@dataclass(frozen=True)
class Cron:
    """`cron(minutes hours day-of-month month day-of-week year)` in a time zone."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: frozenset[int]
    years: frozenset[int]
    day_of_month: Callable[[date], bool] = field(compare=False)
    day_of_week: Callable[[date], bool] = field(compare=False)
    timezone: ZoneInfo
    anchor: float

    def first(self) -> float | None:
        return self.next_after(self.anchor)

    def next_after(self, t: float) -> float | None:
        start = datetime.fromtimestamp(t, self.timezone).replace(second=0, microsecond=0)
        day = start.date()
        for _ in range(_CRON_SEARCH_DAYS):
            if day.year > 2199:
                return None
            if (
                day.year in self.years
                and day.month in self.months
                and self.day_of_month(day)
                and self.day_of_week(day)
            ):
                for hour in self.hours:
                    for minute in self.minutes:
                        candidate = datetime(
                            day.year, day.month, day.day, hour, minute, tzinfo=self.timezone
                        ).timestamp()
                        if candidate > t:
                            return candidate
            day += timedelta(days=1)
        return None


Expression = At | Rate | Cron


def parse_schedule_expression(expression: str, *, timezone: str = "UTC", anchor: float = 0.0) -> Expression:
    """Parse an EventBridge / Scheduler schedule expression. `anchor` (epoch seconds) is when a
    recurring schedule starts counting (its creation or start date)."""
    zone = ZoneInfo(timezone or "UTC")
    text = expression.strip()
    if match := _AT.match(text):
        local = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")
        return At(local.replace(tzinfo=zone))
    if match := _RATE.match(text):
        value = int(match.group(1))
        if value < 1:
            raise ScheduleExpressionError(f"rate must be positive: {expression!r}")
        return Rate(value * _RATE_UNITS[match.group(2).rstrip("s")], anchor)
    if match := _CRON.match(text):
        parts = match.group(1).split()
        if len(parts) != 6:
            raise ScheduleExpressionError(f"cron needs 6 fields, got {len(parts)}: {expression!r}")
        minutes, hours, day_of_month, months, day_of_week, years = parts
        if (day_of_month == "?") == (day_of_week == "?"):
            raise ScheduleExpressionError(
                f"cron needs `?` in exactly one of day-of-month and day-of-week: {expression!r}"
            )
        return Cron(
            minutes=tuple(sorted(_field(minutes, 0, 59))),
            hours=tuple(sorted(_field(hours, 0, 23))),
            months=_field(months, 1, 12, _MONTHS),
            years=_field(years, 1970, 2199),
            day_of_month=_day_of_month_matcher(day_of_month),
            day_of_week=_day_of_week_matcher(day_of_week),
            timezone=zone,
            anchor=anchor,
        )
    raise ScheduleExpressionError(f"not a schedule expression: {expression!r}")


def iso_utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_event(*, account: str, region: str, rule_name: str, time: float) -> dict[str, Any]:
    """The CloudWatch / EventBridge `Scheduled Event` a scheduled rule sends to its target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": iso_utc(time),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{rule_name}"],
        "detail": {},
    }


# ---------------------------------------------------------------------------------------------
# Delivery to targets
# ---------------------------------------------------------------------------------------------


def _arn_parts(arn: str) -> tuple[str, str, str, str]:
    """(service, region, account, resource) of an ARN."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        raise ValueError(f"not an ARN: {arn!r}")
    return parts[2], parts[3], parts[4], parts[5]


class TargetDelivery:
    """Delivers a payload to a Scheduler target ARN the way Scheduler would."""

    def __init__(
        self,
        *,
        sqs: Any,
        stepfunctions: Any = None,
        events: Any = None,
        sns: Any = None,
        invoke: Invoke | None = None,
        function_for_arn: Callable[[str], str | None] | None = None,
    ) -> None:
        self._sqs = sqs
        self._sfn = stepfunctions
        self._events = events
        self._sns = sns
        self._invoke = invoke
        self._function_for_arn = function_for_arn
        self._queue_urls: dict[str, str] = {}

    def queue_url(self, arn: str) -> str:
        if arn not in self._queue_urls:
            _, _, account, name = _arn_parts(arn)
            self._queue_urls[arn] = self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)[
                "QueueUrl"
            ]
        return self._queue_urls[arn]

    def deliver(self, target: dict[str, Any], payload: str, *, schedule_name: str) -> str:
        """Send `payload` to `target`; returns a short description for the log."""
        arn = target["Arn"]
        service, _, _, resource = _arn_parts(arn)
        if service == "sqs":
            params: dict[str, Any] = {"QueueUrl": self.queue_url(arn), "MessageBody": payload}
            group = (target.get("SqsParameters") or {}).get("MessageGroupId")
            if group:
                params["MessageGroupId"] = group
                params["MessageDeduplicationId"] = uuid.uuid4().hex
            message_id = self._sqs.send_message(**params)["MessageId"]
            return f"sqs {resource} (message {message_id})"
        if service == "scheduler" and resource == "aws-sdk:sfn:startExecution" and self._sfn is not None:
            # the universal target: the input is the API request itself (PascalCase parameters)
            request = json.loads(payload)
            self._sfn.start_execution(
                stateMachineArn=request["StateMachineArn"],
                input=request.get("Input", "{}"),
                **({"name": request["Name"]} if request.get("Name") else {}),
            )
            return f"sfn:StartExecution {request.get('Name', '')}".strip()
        if service == "states" and self._sfn is not None:
            name = f"{schedule_name[:40]}-{uuid.uuid4().hex[:16]}"
            self._sfn.start_execution(stateMachineArn=arn, input=payload, name=name)
            return f"state machine {resource.split(':')[-1]} (execution {name})"
        if service == "lambda" and self._invoke is not None:
            logical_id = self._function_for_arn(arn) if self._function_for_arn else None
            if logical_id is None:
                raise LookupError(f"no local function for {arn}")
            try:
                event: Any = json.loads(payload)
            except ValueError:
                event = payload
            self._invoke(logical_id, event)
            return f"function {logical_id}"
        if service == "events" and self._events is not None:
            parameters = target.get("EventBridgeParameters") or {}
            bus = resource.split("/", 1)[-1]
            response = self._events.put_events(
                Entries=[
                    {
                        "EventBusName": bus,
                        "Source": parameters.get("Source", "aws.scheduler"),
                        "DetailType": parameters.get("DetailType", "Scheduled Event"),
                        "Detail": payload,
                    }
                ]
            )
            if response.get("FailedEntryCount"):
                raise RuntimeError(f"put_events failed: {response.get('Entries')}")
            return f"event bus {bus}"
        if service == "sns" and self._sns is not None:
            self._sns.publish(TopicArn=arn, Message=payload)
            return f"topic {resource}"
        raise LookupError(f"target not supported locally: {arn}")


def with_context(payload: str, tracked: _Tracked, due: float) -> str:
    """Scheduler's context attributes in a target's input, as Scheduler substitutes them at each
    invocation: the occurrence's scheduled time (kept across retries), the schedule's ARN, an
    execution id and the attempt number."""
    values = {
        "<aws.scheduler.scheduled-time>": iso_utc(due),
        "<aws.scheduler.schedule-arn>": tracked.arn,
        "<aws.scheduler.execution-id>": str(uuid.uuid4()),
        "<aws.scheduler.attempt-number>": str(tracked.attempts + 1),
    }
    for attribute, value in values.items():
        payload = payload.replace(attribute, value)
    return payload


# ---------------------------------------------------------------------------------------------
# EventBridge Scheduler emulation + scheduled rules of functions
# ---------------------------------------------------------------------------------------------


@dataclass
class _Tracked:
    arn: str
    group: str
    name: str
    version: str  # LastModificationDate: a modified schedule starts afresh
    definition: dict[str, Any]
    expression: Expression | None
    next_fire: float | None
    first_due: float | None = None
    attempts: int = 0
    retry_at: float = 0.0


@dataclass
class _FunctionSchedule:
    logical_id: str
    source: ScheduleSource
    expression: Expression
    next_fire: float | None


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value)).timestamp()


class Schedules(PeriodicWorker):
    """Fires due EventBridge Scheduler schedules and the scheduled rules of functions.

    `tick()` does one pass (and returns how many deliveries it made); `start()` runs it every
    `interval_seconds` in a thread until `stop()`.
    """

    name = "schedules"

    def __init__(
        self,
        *,
        scheduler: Any,
        delivery: TargetDelivery,
        account: str,
        region: str,
        function_schedules: Iterable[tuple[str, ScheduleSource]] = (),
        invoke: Invoke | None = None,
        clock: Clock = time.time,
        interval_seconds: float = 0.5,
    ) -> None:
        super().__init__(interval_seconds, logger)
        self._scheduler = scheduler
        self._delivery = delivery
        self._account = account
        self._region = region
        self._invoke = invoke
        self._clock = clock
        self._tracked: dict[str, _Tracked] = {}
        self._function_schedules: list[_FunctionSchedule] = []
        self._pending_function_schedules = list(function_schedules)
        self._tick_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if not self.start_thread():
            return
        logger.info(
            "schedules: watching EventBridge Scheduler every %.1fs; %d scheduled rule(s) of functions",
            self._interval,
            len(self._pending_function_schedules) + len(self._function_schedules),
        )

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_thread(timeout)

    def work(self) -> object:
        return self.tick()

    # -- one pass ---------------------------------------------------------------------------
    def tick(self) -> int:
        with self._tick_lock:
            now = self._clock()
            fired = self._tick_function_schedules(now)
            fired += self._tick_scheduler(now)
            return fired

    def _tick_function_schedules(self, now: float) -> int:
        while self._pending_function_schedules:
            logical_id, source = self._pending_function_schedules.pop(0)
            try:
                expression = parse_schedule_expression(source.expression, anchor=now)
            except ScheduleExpressionError as error:
                logger.error("schedules: %s %s: %s", logical_id, source.name, error)
                continue
            self._function_schedules.append(
                _FunctionSchedule(logical_id, source, expression, expression.first())
            )
        fired = 0
        for entry in self._function_schedules:
            if entry.next_fire is None or entry.next_fire > now or self._invoke is None:
                continue
            scheduled = entry.next_fire
            entry.next_fire = entry.expression.next_after(now)
            if entry.source.input is not None:
                try:
                    event: Any = json.loads(entry.source.input)
                except ValueError:
                    event = entry.source.input
            else:
                event = scheduled_event(
                    account=self._account, region=self._region, rule_name=entry.source.name, time=scheduled
                )
            logger.info(
                "schedules: %s fires %s (%s, due %s)",
                entry.source.name,
                entry.logical_id,
                entry.source.expression,
                iso_utc(scheduled),
            )
            try:
                self._invoke(entry.logical_id, event)
            except Exception:
                logger.exception("schedules: %s failed for %s", entry.logical_id, entry.source.name)
            fired += 1
        return fired

    def _list_schedules(self) -> list[dict[str, Any]]:
        summaries: list[dict[str, Any]] = []
        for page in self._scheduler.get_paginator("list_schedules").paginate():
            summaries.extend(page.get("Schedules", []))
        return summaries

    def _track(self, summary: dict[str, Any], now: float) -> _Tracked | None:
        arn = summary["Arn"]
        version = str(summary.get("LastModificationDate") or "")
        tracked = self._tracked.get(arn)
        if tracked is not None and tracked.version == version:
            return tracked
        group = summary.get("GroupName") or "default"
        name = summary["Name"]
        definition = self._scheduler.get_schedule(Name=name, GroupName=group)
        definition.pop("ResponseMetadata", None)
        anchor = _epoch(definition.get("StartDate")) or _epoch(definition.get("CreationDate")) or now
        expression: Expression | None
        try:
            expression = parse_schedule_expression(
                definition["ScheduleExpression"],
                timezone=definition.get("ScheduleExpressionTimezone") or "UTC",
                anchor=anchor,
            )
            next_fire = expression.first()
        except (ScheduleExpressionError, KeyError, ValueError) as error:
            logger.error("schedules: %s/%s has an unusable expression: %s", group, name, error)
            expression, next_fire = None, None
        tracked = _Tracked(arn, group, name, version, definition, expression, next_fire)
        self._tracked[arn] = tracked
        logger.debug(
            "schedules: tracking %s/%s %s next %s",
            group,
            name,
            definition.get("ScheduleExpression"),
            iso_utc(next_fire) if next_fire is not None else "never",
        )
        return tracked

    def _tick_scheduler(self, now: float) -> int:
        summaries = self._list_schedules()
        present = {s["Arn"] for s in summaries}
        for arn in list(self._tracked):
            if arn not in present:
                del self._tracked[arn]
        fired = 0
        for summary in summaries:
            tracked = self._track(summary, now)
            if tracked is None or tracked.next_fire is None or tracked.next_fire > now:
                continue
            if (tracked.definition.get("State") or summary.get("State") or "ENABLED") != "ENABLED":
                continue
            end = _epoch(tracked.definition.get("EndDate"))
            if end is not None and tracked.next_fire > end:
                tracked.next_fire = None
                continue
            if tracked.retry_at > now:
                continue
            if self._fire(tracked, now):
                fired += 1
        return fired

    def _fire(self, tracked: _Tracked, now: float) -> bool:
        definition = tracked.definition
        target = definition.get("Target") or {}
        due = tracked.next_fire if tracked.next_fire is not None else now
        if tracked.first_due is None:
            tracked.first_due = due
        payload = with_context(target.get("Input") or "{}", tracked, tracked.first_due)
        try:
            where = self._delivery.deliver(target, payload, schedule_name=tracked.name)
        except Exception as error:
            return self._delivery_failed(tracked, target, payload, error, now)
        tracked.attempts = 0
        tracked.first_due = None
        self._completed(tracked, now, f"delivered to {where} (due {iso_utc(due)})")
        return True

    def _delivery_failed(
        self, tracked: _Tracked, target: dict[str, Any], payload: str, error: Exception, now: float
    ) -> bool:
        label = f"{tracked.group}/{tracked.name}"
        policy = target.get("RetryPolicy") or {}
        max_age = float(policy.get("MaximumEventAgeInSeconds", 86400))
        max_attempts = int(policy.get("MaximumRetryAttempts", 185))
        tracked.attempts += 1
        first_due = tracked.first_due if tracked.first_due is not None else now
        if tracked.attempts <= max_attempts and now - first_due < max_age:
            delay = min(60.0, 2.0 ** min(tracked.attempts, 6))
            tracked.retry_at = now + delay
            logger.warning(
                "schedules: %s could not be delivered (%s); retry %d in %.0fs",
                label,
                error,
                tracked.attempts,
                delay,
            )
            return False
        dead_letter = (target.get("DeadLetterConfig") or {}).get("Arn")
        outcome = "dropped"
        if dead_letter:
            try:
                self._delivery.deliver({"Arn": dead_letter}, payload, schedule_name=tracked.name)
                outcome = f"sent to the dead-letter queue {dead_letter.rsplit(':', 1)[-1]}"
            except Exception as dlq_error:
                outcome = f"dropped (dead-letter queue failed too: {dlq_error})"
        logger.error(
            "schedules: %s gave up after %d attempts (%s): %s", label, tracked.attempts, error, outcome
        )
        tracked.attempts = 0
        tracked.first_due = None
        self._completed(tracked, now, outcome)
        return False

    def _completed(self, tracked: _Tracked, now: float, what: str) -> None:
        label = f"{tracked.group}/{tracked.name}"
        tracked.retry_at = 0.0
        if isinstance(tracked.expression, At):
            tracked.next_fire = None  # a one-time schedule fires once
            if (tracked.definition.get("ActionAfterCompletion") or "NONE") == "DELETE":
                try:
                    self._scheduler.delete_schedule(Name=tracked.name, GroupName=tracked.group)
                    what += "; schedule deleted"
                except Exception as error:
                    what += f"; could not delete the schedule ({error})"
            logger.info("schedules: %s %s", label, what)
            return
        tracked.next_fire = tracked.expression.next_after(now) if tracked.expression else None
        logger.info(
            "schedules: %s %s; next %s",
            label,
            what,
            iso_utc(tracked.next_fire) if tracked.next_fire is not None else "never",
        )
