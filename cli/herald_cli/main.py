"""`herald` — operator commands, against a deployed stack (`--stack-name NAME`) or the local stack
(`--local`, described by the `.local/stack.json` that `make local` writes).

    herald trace <notification id | event id> [--user ID]
    herald user <user id> [--limit N]
    herald explain <user id> <type> [--data JSON] [--urgency U] [--locale L]
    herald send <type> --user ID | --role R | --topic T | --all [--data JSON] [--send-at T] [--wait]
    herald schedule list | put <name> --expression E [--timezone Z] --type T <recipients> | delete <name>
    herald suppression list [--channel C] [--lifted] | add <contact> --reason R | lift <contact> --why W
    herald redrive <queue>
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from aws_lambda_powertools import Metrics
from botocore.exceptions import BotoCoreError, ClientError
from click.core import ParameterSource
from pydantic import ValidationError

from herald import suppression_admin
from herald.batch import RejectedRecord
from herald.catalog import load_catalog
from herald.ingest import IngestEnvelope
from herald.models import DETAIL_TYPE, Channel, Urgency
from herald.routing.service import RouterService
from herald.schedules import (
    CLI_OWNER_PREFIX,
    FILE_OWNER,
    RecurringNotification,
    ScheduleError,
    ScheduleManager,
)
from herald.sends import ManualSend, SendRefused, describe, publish
from herald.settings import ConfigurationError, RouterSettings, SchedulesSettings, load
from herald.stores.notifications import NotificationStore
from herald.stores.suppression import ConsentRequired, SuppressionChanged, SuppressionStore
from herald.stores.users import UserStore
from herald.timeline import find_notification
from herald.topics import TopicStore
from herald_cli.outcome import MAX_WAITED_MEMBERS, members, notification_keys, wait_for
from herald_cli.redrive import (
    QUEUES,
    RedriveError,
    messages_waiting,
    move_messages,
    queue_pair,
    start_move_task,
    wait_for_move_task,
)
from herald_cli.suppression import address_of, render_entries, render_lift_records
from herald_cli.target import DEFAULT_STATE_FILE, AwsTarget, LocalTarget, StackTarget, TargetError
from herald_cli.timeline import render_trace, render_user


@click.group()
def cli() -> None:
    """Herald operator commands."""


def on_stack(command: Callable[..., None]) -> Callable[..., None]:
    """The options that name the stack (`--stack-name NAME` or `--local`); the command receives the
    resolved `target`. Operator errors become one clear line, not a traceback."""

    @click.option("--stack-name", envvar="HERALD_STACK_NAME", help="The deployed stack (AWS).")
    @click.option("--local", "local", is_flag=True, help="The local stack (`make local`) instead of AWS.")
    @click.option(
        "--state-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=DEFAULT_STATE_FILE,
        show_default=True,
        help="The local stack's description, written by `make local`.",
    )
    @click.option("--region", help="AWS region (default: your AWS configuration's).")
    @click.option("--profile", help="AWS profile (default: your AWS configuration's).")
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        stack_name: str | None,
        local: bool,
        state_file: Path,
        region: str | None,
        profile: str | None,
        **kwargs: Any,
    ) -> None:
        from_environment = click.get_current_context().get_parameter_source("stack_name")
        if local and from_environment is ParameterSource.ENVIRONMENT:
            stack_name = None  # an exported HERALD_STACK_NAME does not outvote --local
        if local == bool(stack_name):
            raise click.UsageError("name the stack: --stack-name NAME (AWS) or --local (the local stack)")
        try:
            target: StackTarget = (
                LocalTarget.read(state_file)
                if local
                else AwsTarget.connect(str(stack_name), region=region, profile=profile)
            )
            command(*args, target=target, **kwargs)
        except (TargetError, RedriveError, ConfigurationError) as error:
            raise click.ClickException(str(error)) from error
        except (ClientError, BotoCoreError) as error:
            raise click.ClickException(f"AWS: {error}") from error

    return wrapper


def what_to_send(command: Callable[..., None]) -> Callable[..., None]:
    """The recipients (exactly one of --user, --role, --topic, --all), --data, --urgency and
    --locale; the command receives them as a manual send's `fields`."""

    @click.option("--user", "user_id", help="One person.")
    @click.option("--role", help="Everyone holding this role (the directory's).")
    @click.option("--topic", help="Everyone following this topic.")
    @click.option("--all", "everyone", is_flag=True, help="Everyone the directory knows.")
    @click.option("--data", "data_json", default="{}", help="The event's data, as a JSON object.")
    @click.option("--urgency", type=click.Choice([u.value for u in Urgency]), help="A producer's override.")
    @click.option("--locale", help="The event's locale (default: each person's).")
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        user_id: str | None,
        role: str | None,
        topic: str | None,
        everyone: bool,
        data_json: str,
        urgency: str | None,
        locale: str | None,
        **kwargs: Any,
    ) -> None:
        chosen = [
            name for name, value in (("--user", user_id), ("--role", role), ("--topic", topic)) if value
        ]
        chosen += ["--all"] if everyone else []
        if len(chosen) != 1:
            raise click.UsageError("name the recipients once: --user ID, --role R, --topic T or --all")
        audience = (
            None if user_id else ({"role": role} if role else {"topic": topic} if topic else {"all": True})
        )
        fields = {
            "user_id": user_id,
            "audience": audience,
            "data": _json_object(data_json),
        }
        fields |= {"urgency": urgency, "locale": locale}
        command(*args, fields={k: v for k, v in fields.items() if v is not None}, **kwargs)

    return wrapper


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--data") from error
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--data")
    return value


def _notifications(target: StackTarget) -> NotificationStore:
    return NotificationStore(target.client("dynamodb"), target.physical_id("NotificationsTable"))


def _suppression(target: StackTarget) -> SuppressionStore:
    return SuppressionStore(target.client("dynamodb"), target.physical_id("SuppressionTable"))


# -- trace / user ------------------------------------------------------------------------------


@cli.command()
@click.argument("identifier")
@click.option("--user", "user_id", help="The recipient, for one member of a role broadcast's event.")
@on_stack
def trace(identifier: str, user_id: str | None, target: StackTarget) -> None:
    """The decision trace and the delivery log of one notification, as a timeline.

    IDENTIFIER is a notification id (`ntf-...`) or the event id a service put on the bus. A role
    broadcast's event has one notification per member: name the member with --user.
    """
    store = _notifications(target)
    record = find_notification(store, identifier, user_id)
    if record is None:
        raise click.ClickException(
            f"no notification {identifier!r} in {target.label}"
            + ("" if user_id else " (a role broadcast's event needs --user)")
            + ": it may never have been routed, or it expired or was erased"
        )
    click.echo("\n".join(render_trace(record)))


@cli.command()
@click.argument("user_id")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@on_stack
def user(user_id: str, limit: int, target: StackTarget) -> None:
    """A person's most recent notifications and what became of each, channel by channel."""
    click.echo("\n".join(render_user(user_id, _notifications(target).recent(user_id, limit))))


# -- explain ----------------------------------------------------------------------------------


@cli.command()
@click.argument("user_id")
@click.argument("notification_type")
@click.option("--data", "data_json", default="{}", help="The event's data, as a JSON object.")
@click.option("--urgency", type=click.Choice([u.value for u in Urgency]), help="A producer's override.")
@click.option("--locale", help="The event's locale (default: the person's).")
@on_stack
def explain(
    user_id: str,
    notification_type: str,
    data_json: str,
    urgency: str | None,
    locale: str | None,
    target: StackTarget,
) -> None:
    """What the router would decide for USER_ID and NOTIFICATION_TYPE now, rule by rule — with the
    stack's router settings and its person, presence, suppression and rate-counter data — without
    writing or sending anything."""
    data = _json_object(data_json)
    detail = {"event_id": f"explain-{uuid.uuid4().hex}", "type": notification_type, "user_id": user_id}
    detail |= {"data": data}
    detail |= ({"urgency": urgency} if urgency else {}) | ({"locale": locale} if locale else {})
    try:
        envelope = IngestEnvelope.model_validate(
            {
                "version": "0",
                "id": detail["event_id"],
                "source": "herald.cli",
                "account": "000000000000",
                "time": datetime.now(UTC).isoformat(),
                "region": "-",
                "resources": [],
                "detail-type": DETAIL_TYPE,
                "detail": detail,
            }
        )
    except ValueError as error:
        raise click.ClickException(f"not a valid request: {error}") from error
    settings = load(RouterSettings, target.function_environment("RouterFunction"))
    dynamodb = target.client("dynamodb")
    router = RouterService(
        dynamodb=dynamodb,
        sqs=None,  # never called: explaining writes and sends nothing
        scheduler=None,
        sfn=None,
        settings=settings,
        catalog=load_catalog(),
        metrics=Metrics(namespace="HeraldCli"),
    )
    try:
        decision = router.explain(envelope)
    except RejectedRecord as error:
        raise click.ClickException(f"the router would reject this request: {error.reason}") from error
    click.echo(f"{notification_type} for user {user_id}, now ({target.label}); nothing is written or sent")
    click.echo(f"  urgency {decision.urgency} · category {decision.category} · locale {decision.locale}")
    for step in decision.trace:
        channel = f"[{step.channel}] " if step.channel else ""
        click.echo(f"  {step.verdict:<6} {step.rule:<15} {channel}{step.reason}")
    planned = sorted(c.value for c in decision.planned_channels)
    click.echo(f"outcome: {decision.status}" + (f" via {', '.join(planned)}" if planned else ""))


# -- send ---------------------------------------------------------------------------------------


@cli.command()
@click.argument("notification_type")
@what_to_send
@click.option("--send-at", help="Deliver at this ISO 8601 time with a UTC offset (default: now).")
@click.option("--event-id", help="Your event id: sending again with it delivers once (default: a new one).")
@click.option("--wait", is_flag=True, help="Wait until every channel has settled, and print the outcome.")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=120, show_default=True)
@on_stack
def send(
    notification_type: str,
    fields: dict[str, Any],
    send_at: str | None,
    event_id: str | None,
    wait: bool,
    timeout: float,
    target: StackTarget,
) -> None:
    """Put NOTIFICATION_TYPE on the stack's bus for one person (--user) or an audience (--role,
    --topic, --all), exactly as a producer would; prints the event id (follow it with `herald trace`)."""
    fields = {"type": notification_type, **fields}
    fields |= {k: v for k, v in (("send_at", send_at), ("event_id", event_id)) if v is not None}
    try:
        manual = ManualSend.model_validate(fields)
        request = manual.request(load_catalog())
    except (ValidationError, SendRefused) as error:
        raise click.ClickException(f"not sent: {error}") from error
    sent = publish(target.client("events"), target.physical_id("HeraldBus"), request)
    click.echo(f"sent {describe(request)} on {target.label}\nevent {sent}")
    if not wait:
        return
    if request.due_later(datetime.now(UTC)):
        click.echo(f"not waiting: it is held until {request.send_at}")
        return
    dynamodb = target.client("dynamodb")
    users_table = target.physical_id("UsersTable")
    recipients = (
        []
        if request.audience is None
        else members(
            UserStore(dynamodb, users_table),
            TopicStore(dynamodb, users_table),
            request.audience,
            MAX_WAITED_MEMBERS + 1,
        )
    )
    if len(recipients) > MAX_WAITED_MEMBERS:
        recipients = recipients[:MAX_WAITED_MEMBERS]
        click.echo(f"waiting on the audience's first {MAX_WAITED_MEMBERS:,} members only")
    keys = notification_keys(sent, request.user_id, recipients)
    progress = wait_for(dynamodb, target.physical_id("NotificationsTable"), keys, timeout=timeout)
    click.echo("\n".join(progress.summary()))
    if not progress.done:
        raise click.ClickException(f"not settled within {timeout:g} s: see `herald trace {sent}` later")


# -- schedule -----------------------------------------------------------------------------------


@cli.group()
def schedule() -> None:
    """Recurring notifications: schedules.yaml's (deployed with the stack) and operators' own."""


def _schedules(target: StackTarget) -> ScheduleManager:
    """The recurring group, as the stack's schedules function sees it (its environment)."""
    settings = load(SchedulesSettings, target.function_environment("SchedulesFunction"))
    return ScheduleManager(
        target.client("scheduler"), group=settings.group, bus_arn=settings.bus_arn, role_arn=settings.role_arn
    )


@schedule.command("list")
@on_stack
def schedule_list(target: StackTarget) -> None:
    """Every recurring schedule: when, what, to whom, and whose it is."""
    found = _schedules(target).list()
    if not found:
        click.echo("no recurring schedules")
    for item in found:
        detail = json.loads(item["Target"].get("Input") or "{}")
        who = (detail.get("user_id") and f"user {detail['user_id']}") or json.dumps(detail.get("audience"))
        when = f"{item['ScheduleExpression']} {item.get('ScheduleExpressionTimezone', 'UTC')}"
        state = str(item.get("State", "?")).lower()
        click.echo(
            f"{item['Name']:<28} {when} [{state}] {detail.get('type')} to {who} · {item.get('Description')}"
        )


@schedule.command("put")
@click.argument("name")
@click.option("--expression", required=True, help="cron(...) or rate(...), EventBridge Scheduler's syntax.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone of the expression.")
@click.option("--disabled", is_flag=True, help="Create or keep it, but do not fire.")
@click.option("--type", "notification_type", required=True, help="A catalog type.")
@what_to_send
@click.option("--force", is_flag=True, help="Replace one of schedules.yaml's (it becomes yours).")
@on_stack
def schedule_put(
    name: str,
    expression: str,
    timezone: str,
    disabled: bool,
    notification_type: str,
    fields: dict[str, Any],
    force: bool,
    target: StackTarget,
) -> None:
    """Create or replace the recurring schedule NAME (yours: a deploy leaves it alone)."""
    send_fields = {"type": notification_type, **fields}
    try:
        recurring = RecurringNotification.model_validate(
            {
                "name": name,
                "expression": expression,
                "timezone": timezone,
                "enabled": not disabled,
                "send": send_fields,
            }
        ).checked(load_catalog())
    except (ValidationError, ScheduleError) as error:
        raise click.ClickException(f"not scheduled: {error}") from error
    manager = _schedules(target)
    if manager.owner(name) == FILE_OWNER and not force:
        raise click.ClickException(
            f"{name} is schedules.yaml's: change the file, or take it over with --force"
        )
    done = manager.put(recurring, f"{CLI_OWNER_PREFIX}{target.operator()}")
    click.echo(f"{done} {name}: {recurring.expression} {recurring.timezone}, {notification_type}")


@schedule.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete one of schedules.yaml's too (until the file changes).")
@on_stack
def schedule_delete(name: str, force: bool, target: StackTarget) -> None:
    """Delete the recurring schedule NAME. One of schedules.yaml's is the file's: remove it there (a
    forced delete lasts until the next deploy that changes the layer)."""
    manager = _schedules(target)
    if manager.owner(name) == FILE_OWNER and not force:
        raise click.ClickException(f"{name} is schedules.yaml's: remove it from the file, or --force")
    if not manager.delete(name):
        raise click.ClickException(f"no recurring schedule {name!r}")
    click.echo(f"deleted {name}")


# -- suppression --------------------------------------------------------------------------------


@cli.group()
def suppression() -> None:
    """The one suppression list across channels: list, add, lift."""


@suppression.command("list")
@click.option("--channel", type=click.Choice(["email", "sms", "push"]), help="Only this channel's entries.")
@click.option("--lifted", is_flag=True, help="The record of lifted entries (who lifted them and why).")
@on_stack
def suppression_list(channel: str | None, lifted: bool, target: StackTarget) -> None:
    """The entries (a scan of the suppression table)."""
    entries = list(_suppression(target).entries(f"{channel}#" if channel else "", lifted=lifted))
    lines = render_lift_records(entries) if lifted else render_entries(entries)
    click.echo("\n".join(lines))


@suppression.command("add")
@click.argument("contact")
@click.option("--channel", type=click.Choice(["email", "sms", "push"]), help="Default: from the contact.")
@click.option("--reason", required=True, help="Why Herald must not use it (recorded on the entry).")
@on_stack
def suppression_add(contact: str, channel: str | None, reason: str, target: StackTarget) -> None:
    """Suppress an email address, a phone number (E.164) or a device token."""
    address, plain = address_of(contact, Channel(channel) if channel else None)
    _suppression(target).suppress(address, reason, f"operator:{target.operator()}", contact=plain)
    click.echo(f"suppressed {contact} ({address}): {reason}")


@suppression.command("lift")
@click.argument("contact")
@click.option("--channel", type=click.Choice(["email", "sms", "push"]), help="Default: from the contact.")
@click.option("--why", required=True, help="Why it may be used again (recorded with who lifted it).")
@click.option("--force", is_flag=True, help="Lift a person's own opt-out (STOP) too: they normally START.")
@on_stack
def suppression_lift(contact: str, channel: str | None, why: str, force: bool, target: StackTarget) -> None:
    """Lift an entry: Herald may use the contact again (its soft-bounce count starts over). Who
    lifted it and why is recorded."""
    address, _ = address_of(contact, Channel(channel) if channel else None)
    counters = target.physical_id("RateCountersTable")
    try:
        lifted = suppression_admin.lift(
            _suppression(target), address, counters_table=counters, by=target.operator(), why=why, force=force
        )
    except SuppressionChanged as error:
        raise click.ClickException(
            f"{contact} was reported again while being lifted: list it and decide again"
        ) from error
    except ConsentRequired as error:
        raise click.ClickException(
            f"{contact} is the person's own opt-out (STOP): they opt back in by replying START; "
            "lift it for them only with --force"
        ) from error
    if lifted is None:
        raise click.ClickException(f"{contact} is not suppressed")
    entry = lifted.entry
    click.echo(
        f"lifted {contact}: was {entry.get('reason')} ({entry.get('source')}, "
        f"since {entry.get('created_at')}); recorded as lifted by {lifted.record['lifted_by']}: {why}"
    )


# -- redrive ------------------------------------------------------------------------------------


@cli.command()
@click.argument("queue", type=click.Choice(sorted(QUEUES)))
@click.option("--rate", type=click.IntRange(1, 500), help="AWS: messages moved per second (default: SQS's).")
@click.option("--wait/--no-wait", default=False, help="AWS: wait until the move task finishes.")
@click.option("--limit", type=click.IntRange(min=1), help="Local: move at most this many messages.")
@on_stack
def redrive(queue: str, rate: int | None, wait: bool, limit: int | None, target: StackTarget) -> None:
    """Move QUEUE's dead-lettered messages back to QUEUE.

    A message dead-lettered past the provider outage tolerance starts a fresh budget when it comes
    back (docs/decisions/010-outage-budget-in-time.md). On AWS this starts an SQS message move task
    (StartMessageMoveTask); on the local stack the messages are moved one batch at a time.
    """
    sqs = target.client("sqs")
    pair = queue_pair(sqs, target.physical_id(QUEUES[queue]))
    if isinstance(target, LocalTarget):
        _redrive_local(sqs, pair, limit)
    else:
        _redrive_aws(sqs, pair, rate, wait)


def _redrive_local(sqs: Any, pair: Any, limit: int | None) -> None:
    report = move_messages(sqs, pair, limit=limit)
    click.echo(
        f"moved {report.moved} message(s) from {pair.dead_letter_queue_name} to {pair.queue_name} "
        "(local stack: received, re-sent without the dead-letter attributes, deleted)"
    )
    for failure in report.failures:
        click.echo(f"  not moved: {failure}", err=True)
    if report.failed:
        raise click.ClickException(f"{report.failed} message(s) could not be sent back and stay in the DLQ")


def _redrive_aws(sqs: Any, pair: Any, rate: int | None, wait: bool) -> None:
    waiting = messages_waiting(sqs, pair.dead_letter_queue_url)
    if waiting == 0:
        click.echo(f"{pair.dead_letter_queue_name} is empty: nothing to redrive")
        return
    handle = start_move_task(sqs, pair, rate=rate)
    click.echo(
        f"started moving about {waiting} message(s) from {pair.dead_letter_queue_name} to "
        f"{pair.queue_name}\n  task: {handle}"
    )
    if not wait:
        follow = f"aws sqs list-message-move-tasks --source-arn {pair.dead_letter_queue_arn}"
        click.echo(f"  follow it with: {follow}")
        return
    task = wait_for_move_task(sqs, pair, handle)
    click.echo(
        f"  {task.get('Status', 'UNKNOWN')}: moved {task.get('ApproximateNumberOfMessagesMoved', 0)} of "
        f"{task.get('ApproximateNumberOfMessagesToMove', waiting)}"
        + (f" ({task['FailureReason']})" if task.get("FailureReason") else "")
    )
    if task.get("Status") == "FAILED":
        raise click.ClickException("the move task failed")


if __name__ == "__main__":
    cli()
