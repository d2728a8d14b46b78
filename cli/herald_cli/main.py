"""`herald` — operator commands. `herald redrive <queue> --stack-name NAME` (AWS) or `--local`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import click
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from herald_cli.redrive import (
    QUEUES,
    LocalStackState,
    RedriveError,
    messages_waiting,
    move_messages,
    queue_pair,
    stack_queue_url,
    start_move_task,
    wait_for_move_task,
)

DEFAULT_STATE_FILE = Path(".local") / "stack.json"
# The local stack's moto server accepts any credentials; a developer's profile must not be used.
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@click.group()
def cli() -> None:
    """Herald operator commands."""


@cli.command()
@click.argument("queue", type=click.Choice(sorted(QUEUES)))
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
@click.option("--rate", type=click.IntRange(1, 500), help="AWS: messages moved per second (default: SQS's).")
@click.option("--wait/--no-wait", default=False, help="AWS: wait until the move task finishes.")
@click.option("--limit", type=click.IntRange(min=1), help="Local: move at most this many messages.")
def redrive(
    queue: str,
    stack_name: str | None,
    local: bool,
    state_file: Path,
    region: str | None,
    profile: str | None,
    rate: int | None,
    wait: bool,
    limit: int | None,
) -> None:
    """Move QUEUE's dead-lettered messages back to QUEUE.

    A message dead-lettered past the provider outage tolerance starts a fresh budget when it comes
    back (docs/decisions/010-outage-budget-in-time.md). On AWS this starts an SQS message move task
    (StartMessageMoveTask); on the local stack the messages are moved one batch at a time.
    """
    if local == bool(stack_name):
        raise click.UsageError("name the stack: --stack-name NAME (AWS) or --local (the local stack)")
    logical_id = QUEUES[queue]
    try:
        if local:
            _redrive_local(logical_id, state_file, limit)
        else:
            assert stack_name is not None
            _redrive_aws(logical_id, stack_name, region, profile, rate, wait)
    except RedriveError as error:
        raise click.ClickException(str(error)) from error
    except (ClientError, BotoCoreError) as error:
        raise click.ClickException(f"AWS: {error}") from error


def _redrive_local(logical_id: str, state_file: Path, limit: int | None) -> None:
    state = LocalStackState.read(state_file)
    url = state.queue_urls.get(logical_id)
    if url is None:
        raise RedriveError(f"the local stack in {state_file} has no {logical_id}")
    sqs = boto3.session.Session(region_name=state.region, **LOCAL_CREDENTIALS).client(
        "sqs", endpoint_url=state.aws_endpoint, config=Config(retries={"max_attempts": 2, "mode": "standard"})
    )
    pair = queue_pair(sqs, url)
    report = move_messages(sqs, pair, limit=limit)
    click.echo(
        f"moved {report.moved} message(s) from {pair.dead_letter_queue_name} to {pair.queue_name} "
        "(local stack: received, re-sent without the dead-letter attributes, deleted)"
    )
    for failure in report.failures:
        click.echo(f"  not moved: {failure}", err=True)
    if report.failed:
        raise click.ClickException(f"{report.failed} message(s) could not be sent back and stay in the DLQ")


def _redrive_aws(
    logical_id: str, stack_name: str, region: str | None, profile: str | None, rate: int | None, wait: bool
) -> None:
    session = boto3.session.Session(region_name=region, profile_name=profile)
    sqs: Any = session.client("sqs")
    pair = queue_pair(sqs, stack_queue_url(session.client("cloudformation"), stack_name, logical_id))
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
