"""Turns a routing decision into queue messages, deferred schedules and an escalation execution.

Every channel message is a reference to the notification record (`herald.messages`): what travels
through SQS, EventBridge Scheduler and Step Functions names the notification, never its data."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from herald.catalog import CatalogEntry
from herald.messages import ChannelMessage, EscalationInput, EscalationStepInput
from herald.models import Channel, NotificationRequest
from herald.routing.decision import Decision, PlannedDelivery
from herald.settings import ChannelQueues

SQS_MAX_DELAY_SECONDS = 900
SQS_BATCH_SIZE = 10
SQS_BATCH_BYTES = 256 * 1024  # the whole SendMessageBatch request's payload


class DispatchError(RuntimeError):
    """A queue refused messages; the record is retried (senders' claims prevent double sends)."""


@dataclass
class DispatchReport:
    queued: list[Channel] = field(default_factory=list)
    scheduled: list[Channel] = field(default_factory=list)
    escalation_started: bool = False


def send_batches(sqs: Any, queue_url: str, bodies: Sequence[tuple[str, int]]) -> None:
    """SendMessageBatch in chunks of at most 10 messages and 256 KiB; `bodies` are (body, delay seconds).
    Raises on any failure."""
    for chunk in _chunks(bodies, lambda item: item[0]):
        entries = [
            {"Id": str(i), "MessageBody": body, **({"DelaySeconds": delay} if delay else {})}
            for i, (body, delay) in enumerate(chunk)
        ]
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if response.get("Failed"):
            reasons = "; ".join(f"{f.get('Code')}: {f.get('Message')}" for f in response["Failed"])
            raise DispatchError(f"{len(response['Failed'])} message(s) refused by {queue_url}: {reasons}")


def _chunks[T](items: Sequence[T], body: Callable[[T], str]) -> list[list[T]]:
    """`items` in order, in chunks of at most 10 whose bodies total at most 256 KiB."""
    chunks: list[list[T]] = []
    size = 0
    for item in items:
        item_size = len(body(item).encode())
        if not chunks or len(chunks[-1]) == SQS_BATCH_SIZE or size + item_size > SQS_BATCH_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += item_size
    return chunks


@dataclass(frozen=True)
class _Pending:
    body: str
    delay: int
    owner: str


class Outbox:
    """The channel messages of a batch's records, sent together when the batch ends: one
    `SendMessageBatch` carries up to 10 messages of any records for the same queue. Each message
    has its owner (the SQS message id of the ingest record that planned it); `flush` names the
    owners any of whose messages a queue refused, so that exactly those records are retried (their
    notification record exists: the retry replays its plan, and the senders' claims keep a message
    queued twice from being sent twice)."""

    def __init__(self) -> None:
        self._pending: dict[str, list[_Pending]] = defaultdict(list)

    def add(self, owner: str, queue_url: str, body: str, delay: int) -> None:
        self._pending[queue_url].append(_Pending(body, delay, owner))

    def discard(self, owner: str) -> None:
        """Forget `owner`'s messages (its record failed after planning them; SQS retries it)."""
        for queue_url, pending in self._pending.items():
            self._pending[queue_url] = [p for p in pending if p.owner != owner]

    def owners(self) -> set[str]:
        return {p.owner for pending in self._pending.values() for p in pending}

    def flush(self, sqs: Any) -> dict[str, str]:
        """Send everything; returns each refused owner with why. Never raises for an AWS error: the
        owners of a chunk whose call failed (or went unanswered: those messages may be queued, and
        a retry queues them again for the senders' claims to deduplicate) are refused, the other
        chunks still go."""
        refused: dict[str, str] = {}
        pending, self._pending = self._pending, defaultdict(list)
        for queue_url, messages in pending.items():
            for chunk in _chunks(messages, lambda m: m.body):
                entries = [
                    {"Id": str(i), "MessageBody": m.body, **({"DelaySeconds": m.delay} if m.delay else {})}
                    for i, m in enumerate(chunk)
                ]
                try:
                    response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
                except (ClientError, BotoCoreError) as error:  # an answer, or none (a timeout...)
                    for message in chunk:
                        refused.setdefault(message.owner, f"{queue_url}: {error}")
                    continue
                for failed in response.get("Failed") or []:
                    message = chunk[int(failed["Id"])]
                    refused.setdefault(
                        message.owner, f"{queue_url}: {failed.get('Code')}: {failed.get('Message')}"
                    )
        return refused


class Deferrer:
    """Delivers a message to a queue at a later instant: SQS delay up to 15 min, else a one-time
    EventBridge Scheduler schedule targeting the queue (deleted after it fires)."""

    def __init__(
        self, sqs: Any, scheduler: Any, role_arn: str, group: str, clock: Callable[[], datetime]
    ) -> None:
        self._sqs = sqs
        self._scheduler = scheduler
        self._role_arn = role_arn
        self._group = group
        self._clock = clock

    def delay_seconds(self, at: datetime | None) -> int:
        if at is None:
            return 0
        return max(0, math.ceil((at - self._clock()).total_seconds()))

    def needs_schedule(self, at: datetime | None) -> bool:
        return self.delay_seconds(at) > SQS_MAX_DELAY_SECONDS

    def schedule(self, name: str, at: datetime, target_arn: str, body: str) -> None:
        """A one-time schedule delivering `body` to `target_arn` at `at` (an SQS queue, or Scheduler's
        universal target for an SDK call), deleted after it fires. Named by the caller after what it
        delivers, so a repeat cannot create a second."""
        try:
            self._scheduler.create_schedule(
                Name=name,
                GroupName=self._group,
                ScheduleExpression=f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})",
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                Target={"Arn": target_arn, "RoleArn": self._role_arn, "Input": body},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConflictException":
                raise  # a ConflictException means an earlier attempt already scheduled it


# EventBridge Scheduler's universal target for Step Functions StartExecution: unlike the templated
# state-machine target, its input names the execution, so a deferred escalation is still named
# after its notification and cannot run twice.
START_EXECUTION_TARGET = "arn:{partition}:scheduler:::aws-sdk:sfn:startExecution"
# A start this close is made now: a schedule costs a call and fires with up to a minute's lag.
START_NOW_WITHIN_SECONDS = 60


class Dispatcher:
    def __init__(
        self,
        sqs: Any,
        sfn: Any,
        deferrer: Deferrer,
        queues: ChannelQueues,
        state_machine_arn: str,
        fallback_delay_seconds: int,
    ) -> None:
        self._sqs = sqs
        self._sfn = sfn
        self._deferrer = deferrer
        self._queues = queues
        self._state_machine_arn = state_machine_arn
        self._fallback_delay_seconds = fallback_delay_seconds

    def message(
        self,
        decision: Decision,
        request: NotificationRequest,
        entry: CatalogEntry,
        planned: PlannedDelivery,
        escalation: bool = False,
    ) -> ChannelMessage:
        """A reference message: no `data`, address or device tokens (the sender reads them from the
        notification record, written before anything is dispatched), so neither Scheduler inputs
        nor the escalation's execution history ever hold them (decision 008)."""
        return ChannelMessage(
            notification_id=decision.notification_id,
            event_id=request.event_id,
            user_id=decision.user_id,
            type=entry.name,
            channel=planned.channel,
            urgency=decision.urgency,
            category=decision.category,
            locale=decision.locale,
            not_before=planned.not_before,
            escalation=escalation,
        )

    def dispatch(
        self,
        decision: Decision,
        request: NotificationRequest,
        entry: CatalogEntry,
        outbox: Outbox | None = None,
        owner: str = "",
    ) -> DispatchReport:
        """Schedules and the escalation's start are made now; the messages due within SQS's 15
        minutes go into `outbox` under `owner` (sent when the batch ends), or are sent now without
        one."""
        report = DispatchReport()
        immediate: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for planned in decision.deliveries:
            body = self.message(decision, request, entry, planned).queue_body()
            if self._deferrer.needs_schedule(planned.not_before):
                name = f"{decision.notification_id}-{planned.channel.value}"
                assert planned.not_before is not None
                self._deferrer.schedule(name, planned.not_before, self._queues.arn(planned.channel), body)
                report.scheduled.append(planned.channel)
            else:
                immediate[self._queues.url(planned.channel)].append(
                    (body, self._deferrer.delay_seconds(planned.not_before))
                )
                report.queued.append(planned.channel)
        for queue_url, bodies in immediate.items():
            if outbox is None:
                send_batches(self._sqs, queue_url, bodies)
            else:
                for body, delay in bodies:
                    outbox.add(owner, queue_url, body, delay)
        if decision.escalation:
            self._start_escalation(decision, request, entry)
            report.escalation_started = True
        return report

    def _start_escalation(
        self, decision: Decision, request: NotificationRequest, entry: CatalogEntry
    ) -> None:
        """One execution named after the notification, started now, or at `deliver_at` by a
        one-time schedule (no Wait state: the deferral costs no transition)."""
        plan = decision.escalation
        assert plan is not None
        first, last = plan.steps  # the machine runs chains of two steps (catalog MAX_CHAIN_STEPS)
        delay = self._deferrer.delay_seconds(plan.deliver_at)
        scheduled = delay > START_NOW_WITHIN_SECONDS
        execution = EscalationInput(
            notification_id=decision.notification_id,
            user_id=decision.user_id,
            first=EscalationStepInput(
                queue_url=self._queues.url(first.delivery.channel),
                message=self.message(decision, request, entry, first.delivery, escalation=True).model_copy(
                    update={"ends_when_delivered": first.until == "delivered"}
                ),
                # started up to a minute early, the step also waits out its not_before
                wait_seconds=(first.wait_seconds or self._fallback_delay_seconds)
                + (0 if scheduled else delay),
            ),
            last=EscalationStepInput(
                queue_url=self._queues.url(last.delivery.channel),
                message=self.message(decision, request, entry, last.delivery).model_copy(
                    update={"after_escalation": True}  # an acknowledgement that comes first stops it
                ),
            ),
        )
        if scheduled:
            start = {
                "StateMachineArn": self._state_machine_arn,
                "Name": decision.notification_id,
                "Input": execution.execution_input(),
            }
            partition = self._state_machine_arn.split(":")[1]  # aws, aws-cn, aws-us-gov
            self._deferrer.schedule(
                f"{decision.notification_id}-escalation",
                plan.deliver_at,
                START_EXECUTION_TARGET.format(partition=partition),
                json.dumps(start),
            )
            return
        try:
            self._sfn.start_execution(
                stateMachineArn=self._state_machine_arn,
                name=decision.notification_id,
                input=execution.execution_input(),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ExecutionAlreadyExists":
                raise  # already started by an earlier attempt of this record: nothing to do
