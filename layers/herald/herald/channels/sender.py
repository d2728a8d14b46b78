"""The pipeline every channel sender runs for one SQS record.

    parse body → (not before its time) → claim the channel on the notification record
      → deliver: resolve the recipient, re-check suppression / consent, render, call the provider
      → apply effects (dead tokens, opted-out phones) → record the outcome + delivery log
      → escalation: an undeliverable primary fails the task token → metrics

Outcomes and SQS:

- a body that is not a ChannelMessage for this queue's channel is rejected: moved to the DLQ at
  once with the reason (`herald.batch.RejectingBatchProcessor`), never retried;
- sent / failed / suppressed / not delivered: recorded, the record succeeds (SQS deletes it);
- the recipient was erased (no record, a directory tombstone: decision 017): nothing is sent or
  written, the record succeeds as not delivered (an escalation primary fails its task token);
- uncertain (the request may have reached the provider: a read timeout, a reset after writing, an
  exception once an adapter marked its point of no return, `herald.channels.transport`): recorded
  with `DeliveryUncertain`, the record succeeds and the channel is final, never sent again;
  webhooks retry instead (receivers deduplicate on Idempotency-Key);
- retry later: recorded as `retry` (which releases the claim and carries the retry run on), then
  budgeted in time (`herald.channels.outage`, decision 010): within `ProviderOutageToleranceSeconds`
  of the run's first failure the message waits a full-jitter exponential backoff over the run's
  failures (or the provider's Retry-After when longer); past it, it goes to the DLQ with the
  reason as message attributes, the run ends (a redriven copy starts a fresh budget) and
  `OutageToleranceExceeded` is counted;
- a duplicate (the channel is already final) is a no-op; one whose claim is still held by another
  invocation is retried after the claim expires;
- an escalation step (a task token) for a notification the person already acknowledged (decision
  019): nothing is sent, the step's token is answered with `SendTaskSuccess` (the chain ends) and the
  channel is recorded not delivered with code `acknowledged`; the record succeeds.

Waiting (a backoff, a claim held elsewhere, `not_before` or `herald_retry_at` in the future, a
deadline hand-back) sets the message's visibility and raises `RetryLaterError`, so the powertools
BatchProcessor reports a batch item failure and SQS redelivers it later. A message that has used
all but `RESERVED_RECEIVES` of the queue's `maxReceiveCount`, or must wait longer than a visibility
change allows, is renewed instead: a copy is sent to the queue (delayed, `herald_retry_at` beyond 15
minutes) and the original succeeds, so SQS never dead-letters a message within its budget. Only
records that crash (no provider answer) reach the DLQ through `maxReceiveCount`.

A channel whose deliverer batches (push: `BatchDeliverer`) runs the same pipeline for the records
of an SQS batch together (`send_together`, decision 026): every claim first, one `deliver_batch`,
then each record's outcome recorded and settled on its own, with everything above still per record.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from botocore.exceptions import ClientError
from pydantic import ValidationError, field_validator, model_validator

from herald.acknowledgement import FINISHED_TASK_ERRORS, Via, answer_task
from herald.batch import RejectedRecord
from herald.catalog import Catalog, UnknownNotificationType
from herald.channels.context import BatchDeliverer, ChannelDeliverer, Crashed, DeliveryContext, Skip
from herald.channels.outage import (
    MAX_VISIBILITY_STEP_SECONDS,
    SQS_MAX_DELAY_SECONDS,
    Backoff,
    GiveUp,
    OutageBudget,
    must_renew,
)
from herald.channels.outage import SQS_MAX_VISIBILITY_SECONDS as SQS_MAX_VISIBILITY_SECONDS
from herald.channels.result import (
    CHANNEL_VACANT,
    DEAD_TOKEN,
    UNEXPECTED_ERROR,
    Accepted,
    Effects,
    PermanentFailure,
    RetryLater,
    SendResult,
    Uncertain,
    short,
)
from herald.channels.transport import provider_may_have_it, send_attempt
from herald.dead_letter import (
    DEAD_LETTER_REASON_ATTRIBUTE,
    EVENT_ID_ATTRIBUTE,
    FAILING_SINCE_ATTRIBUTE,
    FAILURES_ATTRIBUTE,
    MESSAGE_ID_ATTRIBUTE,
    NOTIFICATION_ID_ATTRIBUTE,
    RENEWALS_ATTRIBUTE,
    RETRY_AT_ATTRIBUTE,
    from_lambda_event,
    number_attribute,
    string_attribute,
    with_attributes,
    without_bookkeeping,
)
from herald.delivery import (
    UNDELIVERED_STATES,
    Acknowledged,
    AlreadyFinal,
    Claim,
    DeliveryLedger,
    DeliveryState,
    InFlight,
    LogEntry,
    RecipientErased,
    RetryRun,
)
from herald.devices import Contended, Devices
from herald.messages import ChannelMessage, UnresolvedReference, parse_channel_body
from herald.rendering import TemplateRenderError, TemplateSourceError
from herald.stores.keys import push_address, sms_address
from herald.stores.notifications import stamp
from herald.stores.suppression import SuppressionStore
from herald.stores.users import UserStore
from herald.tracing import in_current_trace
from herald.users import UserProfile

logger = Logger(child=True)

DEFAULT_LEASE_SECONDS = 300
LEASE_MARGIN_SECONDS = 30
ESCALATION_ERROR = "Herald.PrimaryUndeliverable"
NOT_DELIVERED_CODES = frozenset({CHANNEL_VACANT, DEAD_TOKEN})


class MetricsSink(Protocol):
    def add_metric(self, name: str, unit: Any, value: float, *args: Any, **kwargs: Any) -> None: ...


class RetryLaterError(Exception):
    """Raised for a record SQS must redeliver later (its visibility was already set)."""

    def __init__(self, reason: str, delay_seconds: int) -> None:
        super().__init__(f"{reason} (retry in {delay_seconds}s)")
        self.reason = reason
        self.delay_seconds = delay_seconds


class ChannelRecord(SqsRecordModel):
    """An SQS record whose body is a ChannelMessage, bare or in the escalation task's envelope.

    A body that does not validate fails this record alone: `herald.batch.RejectingBatchProcessor`
    moves it to the queue's DLQ at once with the reason (it could never succeed)."""

    body: ChannelMessage  # type: ignore[assignment]
    # The body exactly as received: a renewed or dead-lettered copy keeps fields this release
    # does not know (rolling deploys).
    raw_body: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _keep_raw_body(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("body"), str | bytes) and "raw_body" not in data:
            raw = data["body"]
            return {**data, "raw_body": raw.decode() if isinstance(raw, bytes) else raw}
        return data

    @field_validator("body", mode="before")
    @classmethod
    def _parse_body(cls, raw: Any) -> Any:
        return parse_channel_body(raw) if isinstance(raw, str | bytes) else raw


def peek_event_id(raw_body: str | None) -> str | None:
    """The event id of a body that may not validate (for the rejection log)."""
    try:
        data = json.loads(raw_body or "")
        data = data.get("message", data) if isinstance(data, dict) else {}
        event_id = data.get("event_id") if isinstance(data, dict) else None
        return str(event_id) if event_id is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Outcome:
    """What happened to one record."""

    state: str  # a DeliveryState value, or "duplicate" / "in_flight"
    provider: str | None = None
    provider_message_id: str | None = None
    reason: str | None = None
    retry_after: float | None = None
    run: RetryRun | None = None  # a retry: the retry run as recorded with it

    @property
    def retry(self) -> bool:
        return self.state in (DeliveryState.RETRY.value, "in_flight")


@dataclass
class _Begun:
    """A claimed message on its way to the provider."""

    message: ChannelMessage  # hydrated
    claim: Claim
    attempt: int
    context: DeliveryContext | None = None


# The outcomes of the records `send_together` attempted, for `handle_record` (`settled`).
_settled: ContextVar[Mapping[str, Outcome | BaseException] | None] = ContextVar(
    "herald_settled_records", default=None
)


def utc_now() -> datetime:
    return datetime.now(UTC)


class ChannelSender:
    def __init__(
        self,
        deliverer: ChannelDeliverer,
        *,
        ledger: DeliveryLedger,
        users: UserStore,
        suppression: SuppressionStore,
        catalog: Catalog,
        sqs: Any,
        queue_url: str,
        sfn: Any | None = None,
        metrics: MetricsSink | None = None,
        backoff: Backoff | None = None,
        outage: OutageBudget | None = None,
        max_receive_count: int | None = None,
        dead_letter_queue_url: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        deadline_margin_seconds: float = 25.0,
        devices: Devices | None = None,
    ) -> None:
        """`devices`: drops dead push tokens with their owner items (decision 017; without it, a
        hand-built sender removes them from the profile only);
        `outage`: the retry-later budget (default: one hour over `backoff`);
        `max_receive_count`: the queue's RedrivePolicy `maxReceiveCount` (None: never renew);
        `dead_letter_queue_url`: where a message past the outage tolerance goes (None: it keeps
        retrying and SQS dead-letters it after `maxReceiveCount`)."""
        self.deliverer = deliverer
        self._deadline_margin_ms = deadline_margin_seconds * 1000
        self.channel = deliverer.channel
        self._ledger = ledger
        self._users = users
        self._suppression = suppression
        self._catalog = catalog
        self._sqs = sqs
        self._queue_url = queue_url
        self._sfn = sfn
        self._metrics = metrics
        self._outage = outage or OutageBudget(backoff=backoff or Backoff())
        self._max_receive_count = max_receive_count
        self._dead_letter_queue_url = dead_letter_queue_url
        self._clock = clock
        self._devices = devices

    # -- SQS record --------------------------------------------------------------------------

    def handle_record(self, record: ChannelRecord, lambda_context: Any = None) -> dict[str, Any]:
        """The BatchProcessor's record handler: returns a summary or raises for SQS to retry.

        A record this invocation already sent with its batch (`send_together`) takes that outcome;
        any other is processed here, alone."""
        message = record.body
        if message.channel != self.channel:
            raise RejectedRecord(f"a {message.channel} message on the {self.channel} queue", message.event_id)
        receive_count = _receive_count(record)
        settled = (_settled.get() or {}).get(record.messageId)
        if isinstance(settled, BaseException):
            raise settled  # an AWS error while it was processed with its batch: SQS retries it
        if settled is not None:
            return self._settle(record, settled, receive_count)
        waiting = self._must_wait(record, lambda_context)
        if waiting is not None:
            return self._wait(record, waiting[0], receive_count, waiting[1])
        outcome = self.process(message, attempt=receive_count, lease_seconds=_lease_seconds(lambda_context))
        return self._settle(record, outcome, receive_count)

    def _must_wait(self, record: ChannelRecord, lambda_context: Any) -> tuple[float, str] | None:
        """(seconds, why) when the record must not be attempted now; None when it may."""
        message = record.body
        if (
            lambda_context is not None
            and lambda_context.get_remaining_time_in_millis() < self._deadline_margin_ms
        ):
            # Too close to the invocation's deadline for a provider call to finish: a call cut off by
            # the Lambda timeout would leave an unknowable ("uncertain") delivery. Hand it back unclaimed.
            return 1, "the invocation's deadline is too near for a send"
        retry_at = _retry_at(record)  # a renewed copy's own wait
        not_before, renewed = self._seconds_until(message.not_before), self._seconds_until(retry_at)
        if not_before or renewed:
            why = f"not before {message.not_before}" if not_before >= renewed else f"retry at {retry_at}"
            return max(not_before, renewed), why
        return None

    def _settle(self, record: ChannelRecord, outcome: Outcome, receive_count: int) -> dict[str, Any]:
        """What SQS does with the record after its attempt: delete it, or have it back later."""
        if outcome.state == "in_flight":
            claim_left = math.ceil(outcome.retry_after or 1)
            return self._wait(record, claim_left, receive_count, outcome.reason or "in flight")
        if outcome.state == DeliveryState.RETRY.value:
            return self._retry_or_dead_letter(record, outcome, receive_count)
        return {"state": outcome.state, "provider": outcome.provider, **_ids(record.body)}

    # -- a batch sent together (decision 026) ------------------------------------------------

    @property
    def sends_together(self) -> bool:
        """Whether this channel sends the records of a batch together (its deliverer batches)."""
        return isinstance(self.deliverer, BatchDeliverer)

    def send_together(
        self, records: Sequence[Mapping[str, Any]], lambda_context: Any = None
    ) -> dict[str, Outcome | BaseException]:
        """Attempt the records of an SQS batch together: each claimed on its own, then delivered
        in one `deliver_batch` (one suppression read, one concurrent send), then each outcome
        recorded on its own. Returns each attempted record's outcome (or the AWS error it met) by
        message id, for `handle_record` within `settled(...)`.

        Left for `handle_record` to take alone, after this: records that do not parse (rejected),
        belong to another channel, must wait (`not_before`, a renewed copy's retry time, the
        deadline), and a second copy of a notification already in the batch (it then finds the
        channel final: a duplicate, as when the two are handled one after the other)."""
        if not self.sends_together:
            return {}
        chosen: list[tuple[ChannelRecord, int]] = []
        seen: set[tuple[str, str]] = set()
        for raw in records:
            try:
                record = ChannelRecord.model_validate(raw)
            except ValidationError:
                continue
            message = record.body
            key = (message.user_id, message.notification_id)
            if message.channel != self.channel or key in seen:
                continue
            if self._must_wait(record, lambda_context) is not None:
                continue
            seen.add(key)
            chosen.append((record, _receive_count(record)))
        if not chosen:
            return {}
        items = [(record.body, attempt) for record, attempt in chosen]
        outcomes = self.process_many(items, lease_seconds=_lease_seconds(lambda_context))
        return {record.messageId: outcome for (record, _), outcome in zip(chosen, outcomes, strict=True)}

    @contextmanager
    def settled(self, outcomes: Mapping[str, Outcome | BaseException]) -> Iterator[None]:
        """Within the block, `handle_record` takes these records' outcomes instead of sending."""
        token = _settled.set(outcomes)
        try:
            yield
        finally:
            _settled.reset(token)

    # -- the outage budget (herald.channels.outage, decision 010) ----------------------------

    def _retry_or_dead_letter(
        self, record: ChannelRecord, outcome: Outcome, receive_count: int
    ) -> dict[str, Any]:
        now = self._clock()
        run = outcome.run or RetryRun(failing_since=now, failures=1)
        decision = self._outage.decide(
            failing_since=run.failing_since,
            failures=run.failures,
            now=now,
            retry_after=outcome.retry_after,
            last_error=outcome.reason,
        )
        if isinstance(decision, GiveUp) and self._dead_letter(record, run, decision):
            return {"state": "dead_lettered", "reason": decision.reason, **_ids(record.body)}
        if isinstance(decision, GiveUp):  # the DLQ is unreachable: keep retrying, nothing is lost
            seconds = self._outage.backoff.delay(run.failures, outcome.retry_after)
        else:
            seconds = decision.seconds
        return self._wait(record, seconds, receive_count, outcome.reason or outcome.state)

    def _dead_letter(self, record: ChannelRecord, run: RetryRun, decision: GiveUp) -> bool:
        """Past the tolerance: the message to the DLQ with the reason, its run ended, counted."""
        message = record.body
        if not self._dead_letter_queue_url:
            return False
        added = {
            DEAD_LETTER_REASON_ATTRIBUTE: string_attribute(decision.reason),
            EVENT_ID_ATTRIBUTE: string_attribute(message.event_id),
            NOTIFICATION_ID_ATTRIBUTE: string_attribute(message.notification_id),
            MESSAGE_ID_ATTRIBUTE: string_attribute(record.messageId),
            FAILING_SINCE_ATTRIBUTE: string_attribute(run.failing_since.isoformat()),
            FAILURES_ATTRIBUTE: number_attribute(run.failures),
        }
        try:
            self._sqs.send_message(
                QueueUrl=self._dead_letter_queue_url,
                MessageBody=_raw_body(record),
                MessageAttributes=with_attributes(_carried_attributes(record), added),
            )
        except ClientError:
            logger.exception("could not dead-letter the message: it keeps retrying", extra=_ids(message))
            return False
        logger.error(
            "provider outage past the tolerance: message dead-lettered",
            extra={**_ids(message), "reason": decision.reason, "failures": run.failures},
        )
        self._count("OutageToleranceExceeded")
        entry = LogEntry(self.channel, "dead_lettered", detail=decision.reason[:1000])
        try:
            self._ledger.end_retry_run(message, run, entry)
        except ClientError:  # a redriven copy then spends one attempt before it is dead-lettered again
            logger.exception("could not end the retry run on the notification record", extra=_ids(message))
        if message.task_token:
            self._fail_escalation(message, f"{self.channel.value} dead-lettered: {decision.reason}")
        return True

    def _wait(self, record: ChannelRecord, seconds: float, receive_count: int, reason: str) -> dict[str, Any]:
        """Come back in `seconds`: hide the message that long (raises RetryLaterError), or renew
        it when SQS would dead-letter it at its next receive or the wait is too long for a
        visibility change (returns: the original is deleted, the copy comes back)."""
        seconds = max(1, math.ceil(seconds))
        renew = must_renew(receive_count, self._max_receive_count) or seconds > MAX_VISIBILITY_STEP_SECONDS
        if renew and self._renew(record, seconds):
            return {"state": "renewed", "retry_in": seconds, **_ids(record.body)}
        hidden = self._back_off(record, min(seconds, MAX_VISIBILITY_STEP_SECONDS))
        if not hidden and not renew and self._renew(record, seconds):  # else the queue's timeout applies
            return {"state": "renewed", "retry_in": seconds, **_ids(record.body)}
        raise RetryLaterError(reason, seconds)

    def _renew(self, record: ChannelRecord, seconds: int) -> bool:
        """Send a copy of the message that comes back in `seconds`; False if it could not be sent."""
        renewals = _int_attribute(record, RENEWALS_ATTRIBUTE) + 1
        added = {RENEWALS_ATTRIBUTE: number_attribute(renewals)}
        if seconds > SQS_MAX_DELAY_SECONDS:
            retry_at = self._clock() + timedelta(seconds=seconds)
            added[RETRY_AT_ATTRIBUTE] = number_attribute(math.ceil(retry_at.timestamp()))
        try:
            self._sqs.send_message(
                QueueUrl=self._queue_url,
                MessageBody=_raw_body(record),
                DelaySeconds=min(seconds, SQS_MAX_DELAY_SECONDS),
                MessageAttributes=with_attributes(_carried_attributes(record), added),
            )
        except ClientError:
            logger.exception("could not renew the message", extra=_ids(record.body))
            return False
        self._count("MessagesRenewed")
        logger.info(
            "message renewed",
            extra={**_ids(record.body), "retry_in": seconds, "renewals": renewals},
        )
        return True

    def _back_off(self, record: ChannelRecord, seconds: int) -> bool:
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self._queue_url, ReceiptHandle=record.receiptHandle, VisibilityTimeout=int(seconds)
            )
        except ClientError:
            logger.exception("could not change the message's visibility")
            return False
        return True

    def _seconds_until(self, moment: datetime | None) -> int:
        if moment is None:
            return 0
        return max(0, math.ceil((moment - self._clock()).total_seconds()))

    # -- one message -------------------------------------------------------------------------

    def process(
        self, message: ChannelMessage, *, attempt: int = 1, lease_seconds: int = DEFAULT_LEASE_SECONDS
    ) -> Outcome:
        """Claim, deliver, record. Never raises for a provider's answer; raises for AWS errors."""
        begun = self._begin(message, attempt, lease_seconds)
        if isinstance(begun, Outcome):
            return begun
        if isinstance(self.deliverer, BatchDeliverer):
            (answer,) = self._deliver_together([begun])
            return self._conclude(begun, answer)
        with send_attempt():  # adapters mark the point of no return (herald.channels.transport)
            try:
                begun.context = self._context(begun.message)
                answer: SendResult | Skip | Crashed = self.deliverer.deliver(begun.context)
            except Exception as error:
                answer = Crashed(error, provider_may_have_it())
        return self._conclude(begun, answer)

    def process_many(
        self, items: Sequence[tuple[ChannelMessage, int]], *, lease_seconds: int = DEFAULT_LEASE_SECONDS
    ) -> list[Outcome | BaseException]:
        """`process` for several messages (with their attempt numbers) whose deliveries go
        together: every claim first (none sent before all are held, so a crash mid-batch leaves
        stale claims, recorded uncertain later, never a second send), one `deliver_batch`, then
        each outcome recorded on its own. An AWS error concerns its message alone: it is returned
        in that message's place (the caller raises it for SQS to retry that record)."""
        if not items:
            return []
        results: list[Outcome | BaseException | None] = [None] * len(items)
        begun: list[tuple[int, _Begun]] = []

        def begin(item: tuple[ChannelMessage, int]) -> _Begun | Outcome | BaseException:
            try:
                return self._begin(item[0], item[1], lease_seconds)
            except Exception as error:
                return error

        # Each record's claim, then each record's outcome, is its own notification record's write:
        # made at once across the batch (DynamoDB round trips overlap); every claim is held before
        # anything is sent, as one after the other.
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_RECORDS, len(items))) as pool:
            for index, started in enumerate(pool.map(in_current_trace(begin), items)):
                if isinstance(started, _Begun):
                    begun.append((index, started))
                else:
                    results[index] = started
            answers = self._deliver_together([started for _, started in begun]) if begun else []

            def conclude(pair: tuple[_Begun, SendResult | Skip | Crashed]) -> Outcome | BaseException:
                try:
                    return self._conclude(*pair)
                except Exception as error:
                    return error

            concluded = pool.map(
                in_current_trace(conclude),
                [(started, answer) for (_, started), answer in zip(begun, answers, strict=True)],
            )
            for (index, _), outcome in zip(begun, concluded, strict=True):
                results[index] = outcome
        return [result if result is not None else RuntimeError("not processed") for result in results]

    def _begin(self, message: ChannelMessage, attempt: int, lease_seconds: int) -> _Begun | Outcome:
        """Claim the channel; an Outcome when there is nothing to send (a duplicate, in flight
        elsewhere, erased, acknowledged, an unresolved reference)."""
        claim = self._ledger.claim(
            message, lease_seconds=lease_seconds, resend_stale=self.deliverer.resend_stale_claims
        )
        if isinstance(claim, InFlight):
            self._count("ClaimInFlight")
            return Outcome(
                "in_flight", reason="another invocation holds the claim", retry_after=claim.seconds_left
            )
        if isinstance(claim, AlreadyFinal):
            return self._duplicate(message, claim)
        if isinstance(claim, RecipientErased):
            return self._erased(message, claim)
        if isinstance(claim, Acknowledged):
            return self._acknowledged(message, claim)
        if claim.took_over_stale:
            self._count("StaleClaimResent")
            logger.warning(
                "resending after a stale claim (receiver deduplicates on Idempotency-Key)",
                extra=_ids(message),
            )
        try:  # a reference message: its data, address and tokens come from the record the claim read
            message = message.hydrated(claim.record)
        except UnresolvedReference as error:
            unresolved = PermanentFailure("herald", str(error), code="record_missing")
            return self._record(message, claim, unresolved, {}, attempt)
        return _Begun(message, claim, attempt)

    def _context(self, message: ChannelMessage) -> DeliveryContext:
        return DeliveryContext(
            message=message,
            entry=self._catalog.entry(message.type),
            now=self._clock(),
            load_profile=self._load_profile,
        )

    def _deliver_together(self, begun: Sequence[_Begun]) -> list[SendResult | Skip | Crashed]:
        """One `deliver_batch` for the claimed messages (a message whose type is unknown is
        answered without it)."""
        assert isinstance(self.deliverer, BatchDeliverer)
        answers: list[SendResult | Skip | Crashed | None] = [None] * len(begun)
        ready: list[tuple[int, DeliveryContext]] = []
        for index, started in enumerate(begun):
            try:
                started.context = self._context(started.message)
            except Exception as error:
                answers[index] = Crashed(error)
                continue
            ready.append((index, started.context))
        if ready:
            with send_attempt():
                try:
                    delivered = self.deliverer.deliver_batch([context for _, context in ready])
                except Exception as error:  # the deliverer's own promise broken: each message's
                    crashed = Crashed(error, provider_may_have_it())
                    delivered = [crashed for _ in ready]
            for (index, _), answer in zip(ready, delivered, strict=True):
                answers[index] = answer
        return [answer if answer is not None else Crashed(RuntimeError("no answer")) for answer in answers]

    def _conclude(self, begun: _Begun, answer: SendResult | Skip | Crashed) -> Outcome:
        """Apply the provider's effects and record the outcome (raises when the claim was released
        for a retry after an exception that sent nothing)."""
        result = self._after_crash(begun, answer) if isinstance(answer, Crashed) else answer
        self._apply_effects(begun.message, result)
        attributes = begun.context.record_attributes if begun.context is not None else {}
        return self._record(begun.message, begun.claim, result, attributes, begun.attempt)

    def _after_crash(self, begun: _Begun, crashed: Crashed) -> SendResult:
        """The result of an exception from the delivery step; raises it, after releasing the claim,
        when no request left (or a resend has no second effect), so SQS retries the record."""
        error = crashed.error
        if isinstance(error, UnknownNotificationType):
            return PermanentFailure("catalog", str(error), code="unknown_type")
        if isinstance(error, TemplateRenderError):
            return PermanentFailure("renderer", short(error), code=type(error).__name__)
        if isinstance(error, TemplateSourceError):
            return RetryLater("renderer", short(error), code="template_source")
        if crashed.provider is None or self.deliverer.resend_stale_claims:
            # no request left (or a resend has no second effect): release the claim for a retry
            self._ledger.finish(
                begun.claim,
                DeliveryState.RETRY,
                LogEntry(
                    self.channel,
                    "error",
                    detail=short(f"{type(error).__name__}: {error}"),
                    attempt=begun.attempt,
                ),
                reason=short(error),
                provider_attempt=False,  # a crash is not a provider answer: no budget spent
            )
            self._count("DeliveryErrors")
            raise error
        # the request may have reached the provider: never send it again
        logger.error(
            "the provider call failed after the request went out", extra=_ids(begun.message), exc_info=error
        )
        self._count("DeliveryErrors")
        return Uncertain(
            crashed.provider,
            short(f"unexpected error after the request went out: {type(error).__name__}: {error}"),
            code=UNEXPECTED_ERROR,
        )

    def _record(
        self,
        message: ChannelMessage,
        claim: Claim,
        result: SendResult | Skip,
        attributes: dict[str, Any],
        attempt: int,
    ) -> Outcome:
        if isinstance(result, Uncertain) and self.deliverer.resend_stale_claims:
            # a resend has no second effect on this channel (Idempotency-Key): retry it
            result = RetryLater(result.provider, result.reason, code=result.code, effects=result.effects)
        state, provider, reason, code, provider_id, detail = _describe(result)
        entry = LogEntry(
            channel=self.channel,
            outcome=state.value,
            provider=provider,
            detail=detail,
            code=code,
            provider_message_id=provider_id,
            attempt=attempt,
        )
        run = claim.run_after_failure(self._clock()) if state is DeliveryState.RETRY else None
        recorded = self._ledger.finish(
            claim,
            state,
            entry,
            provider_message_id=provider_id,
            reason=reason,
            code=code,
            set_attributes=attributes or None,
            run=run,
        )
        # The provider's report came before our answer (decision 039): the channel is settled as
        # reported, and the escalation and the record's retry follow that, not our answer.
        settled = recorded if recorded is not None else state
        reported = settled is not state
        self._count(_METRIC_BY_STATE[state])
        log = _LOG_BY_STATE.get(state, logger.info)
        log(
            "delivery attempt",
            extra={
                **_ids(message),
                "state": state.value,
                "provider": provider,
                "code": code,
                "detail": detail,
            },
        )
        if message.task_token and settled in UNDELIVERED_STATES:
            self._fail_escalation(message, f"{self.channel.value} {settled.value}: {reason or detail}")
        elif message.task_token and message.ends_when_delivered and settled in _DELIVERED:
            self._end_escalation_on_delivery(message)
        if reported:
            return Outcome(settled.value, provider, provider_id, "the provider's report came first")
        retry_after = result.retry_after if isinstance(result, RetryLater) else None
        return Outcome(state.value, provider, provider_id, reason or detail, retry_after, run=run)

    def _duplicate(self, message: ChannelMessage, claim: AlreadyFinal) -> Outcome:
        if claim.just_marked_uncertain:
            self._count("DeliveryUncertain")
            logger.error(
                "stale claim: outcome unknown, recorded as uncertain and not resent", extra=_ids(message)
            )
        else:
            self._count("DuplicatesSkipped")
            logger.info(
                "duplicate message: the channel is already final",
                extra={**_ids(message), "state": claim.state.value},
            )
        if message.task_token:
            if claim.state is DeliveryState.SENT and message.ends_when_delivered:
                self._end_escalation_on_delivery(message)
            elif claim.state is DeliveryState.SENT:
                self._ledger.store_task_token(message)  # the ack endpoint needs it
            elif claim.state in UNDELIVERED_STATES:
                self._fail_escalation(message, f"{self.channel.value} already {claim.state.value}")
        return Outcome(
            "duplicate" if not claim.just_marked_uncertain else claim.state.value, reason=claim.state.value
        )

    def _erased(self, message: ChannelMessage, erased: RecipientErased) -> Outcome:
        """Queued before the person's erasure: not sent, nothing written (not even a log entry)."""
        self._count(_METRIC_BY_STATE[DeliveryState.NOT_DELIVERED])
        logger.info("the recipient was erased: not delivered", extra=_ids(message))
        if message.task_token:  # the escalation's email then meets the same tombstone
            self._fail_escalation(message, f"{self.channel.value} not delivered: {erased.reason}")
        return Outcome(DeliveryState.NOT_DELIVERED.value, reason=erased.reason)

    def _acknowledged(self, message: ChannelMessage, acknowledged: Acknowledged) -> Outcome:
        """An escalation step for a notification already acknowledged: not sent; the chain ends."""
        token, sfn = message.task_token, self._sfn
        if sfn is None:  # a wiring mistake: the chain then waits out the step's timeout
            logger.warning("no Step Functions client: the acknowledged step's token is not answered")
        elif token and answer_task(sfn, token, acknowledged.acked_at, Via.SENDER):
            self._count("EscalationsAcknowledged")
        state = acknowledged.delivery.get("state")
        if state and state != DeliveryState.RETRY.value:  # this step went out before the ack
            self._count("DuplicatesSkipped")
            logger.info("acknowledged: the channel is already final", extra={**_ids(message), "state": state})
            return Outcome("duplicate", reason=str(state))
        reason = f"acknowledged at {acknowledged.acked_at}: the escalation ends here, nothing sent"
        self._ledger.record_acknowledged(message, reason)
        self._count(_METRIC_BY_STATE[DeliveryState.NOT_DELIVERED])
        logger.info("the notification was acknowledged: step not sent", extra=_ids(message))
        return Outcome(DeliveryState.NOT_DELIVERED.value, reason=reason)

    # -- effects and escalation --------------------------------------------------------------

    def _apply_effects(self, message: ChannelMessage, result: SendResult | Skip) -> None:
        effects: Effects = getattr(result, "effects", None) or Effects()
        if not effects:
            return
        provider = getattr(result, "provider", self.channel.value)
        try:
            for token in effects.dead_tokens:
                # no plain `contact`: the token leaves the profile now, so an erasure of its holder
                # could not find the entry again; and a token has no support value (decision 017)
                self._suppression.suppress(
                    push_address(token),
                    reason="dead_token",
                    source=provider,
                    notification_id=message.notification_id,
                )
                self._drop_dead_token(message.user_id, token)
                self._count("DeadTokensRemoved")
            if effects.opt_out_phone:
                self._suppression.suppress(
                    sms_address(effects.opt_out_phone),
                    reason="opted_out",
                    source=provider,
                    contact=effects.opt_out_phone,
                    notification_id=message.notification_id,
                )
                self._count("PhonesOptedOut")
        except (ClientError, Contended):
            # the outcome must still be recorded; the next failure will report the effect again
            logger.exception(
                "could not apply the provider's effects", extra={**_ids(message), "effects": repr(effects)}
            )
            self._count("EffectErrors")

    def _drop_dead_token(self, user_id: str, token: str) -> None:
        if self._devices is not None:  # map and owner item together (herald.devices)
            self._devices.drop_dead(user_id, token)
            return
        try:
            self._users.remove_device(user_id, token)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise  # no profile any more: nothing to remove

    def _end_escalation_on_delivery(self, message: ChannelMessage) -> None:
        """A step whose delivery ends the chain (the next runs only if it cannot be delivered) was
        delivered: the execution ends now instead of at the step's timeout."""
        if self._sfn is None or not message.task_token:
            logger.warning("no Step Functions client: the delivered step's token is not answered")
            return
        if answer_task(self._sfn, message.task_token, stamp(self._clock()), Via.DELIVERED):
            self._count("EscalationsEndedByDelivery")
        self._ledger.clear_task_token(message)

    def _fail_escalation(self, message: ChannelMessage, cause: str) -> None:
        """The primary cannot reach the user: the state machine sends the email now."""
        if self._sfn is None or not message.task_token:
            return
        try:
            self._sfn.send_task_failure(
                taskToken=message.task_token, error=ESCALATION_ERROR, cause=cause[:32000]
            )
        except ClientError as error:
            if error.response["Error"]["Code"] not in FINISHED_TASK_ERRORS:
                raise
            logger.info(
                "escalation already moved on",
                extra={**_ids(message), "error": error.response["Error"]["Code"]},
            )
        else:
            self._count("EscalationsFailedOver")
        self._ledger.clear_task_token(message)

    # -- helpers -----------------------------------------------------------------------------

    def _load_profile(self, user_id: str) -> UserProfile | None:
        try:
            return self._users.get_profile(user_id)
        except ValidationError:
            logger.exception("the user's profile does not validate", extra={"user_id": user_id})
            return None

    def _count(self, name: str) -> None:
        """One count of `name`; the sender function adds `channel` as a default dimension
        (herald.channels.handler), so the name is the same on every channel."""
        if self._metrics is not None:
            with _METRICS_LOCK:  # a batch's records are settled in parallel (process_many)
                self._metrics.add_metric(name=name, unit="Count", value=1)


_LOG_BY_STATE = {DeliveryState.RETRY: logger.warning, DeliveryState.UNCERTAIN: logger.error}
_METRICS_LOCK = threading.Lock()
MAX_PARALLEL_RECORDS = 10  # an SQS batch's records, claimed and settled at once
# A step in one of these was delivered: a chain that ends on delivery ends.
_DELIVERED = frozenset({DeliveryState.SENT, DeliveryState.DELIVERED})
_METRIC_BY_STATE = {
    DeliveryState.SENT: "Delivered",
    DeliveryState.FAILED: "DeliveryFailed",
    DeliveryState.RETRY: "DeliveryRetried",
    DeliveryState.SUPPRESSED: "DeliverySuppressed",
    DeliveryState.NOT_DELIVERED: "DeliveryNotDelivered",
    DeliveryState.UNCERTAIN: "DeliveryUncertain",
    DeliveryState.SENDING: "DeliveryErrors",
}


def _describe(
    result: SendResult | Skip,
) -> tuple[DeliveryState, str | None, str | None, str | None, str | None, str | None]:
    """state, provider, reason, code, provider message id, log detail."""
    if isinstance(result, Skip):
        return result.state, None, result.reason, result.code, None, result.reason
    if isinstance(result, Accepted):
        return DeliveryState.SENT, result.provider, None, None, result.provider_message_id, result.detail
    if isinstance(result, RetryLater):
        return DeliveryState.RETRY, result.provider, result.reason, result.code, None, result.reason
    if isinstance(result, Uncertain):  # the provider may have it: recorded, never sent again
        return DeliveryState.UNCERTAIN, result.provider, result.reason, result.code, None, result.reason
    if result.effects.opt_out_phone:
        state = DeliveryState.SUPPRESSED
    elif result.code in NOT_DELIVERED_CODES:
        state = DeliveryState.NOT_DELIVERED
    else:
        state = DeliveryState.FAILED
    return state, result.provider, result.reason, result.code, None, result.reason


def _ids(message: ChannelMessage) -> dict[str, str]:
    return {"notification_id": message.notification_id, "channel": message.channel.value}


def _raw_body(record: ChannelRecord) -> str:
    return record.raw_body if record.raw_body is not None else record.body.queue_body()


def _carried_attributes(record: ChannelRecord) -> dict[str, Any]:
    """The record's message attributes a copy keeps (not Herald's bookkeeping of this copy)."""
    return without_bookkeeping(from_lambda_event(record.messageAttributes))


def _attribute_text(record: ChannelRecord, name: str) -> str | None:
    attribute = (record.messageAttributes or {}).get(name)
    return getattr(attribute, "stringValue", None) if attribute is not None else None


def _int_attribute(record: ChannelRecord, name: str) -> int:
    try:
        return int(float(_attribute_text(record, name) or 0))
    except ValueError:
        return 0


def _retry_at(record: ChannelRecord) -> datetime | None:
    """A renewed copy's `herald_retry_at` (epoch seconds): not to be attempted before."""
    epoch = _int_attribute(record, RETRY_AT_ATTRIBUTE)
    return datetime.fromtimestamp(epoch, UTC) if epoch > 0 else None


def _receive_count(record: ChannelRecord) -> int:
    try:
        return max(1, int(record.attributes.ApproximateReceiveCount or 1))
    except (TypeError, ValueError):
        return 1


def _lease_seconds(lambda_context: Any) -> int:
    """The claim outlives this invocation: its remaining time plus a margin."""
    remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return DEFAULT_LEASE_SECONDS
    try:
        return math.ceil(int(remaining()) / 1000) + LEASE_MARGIN_SECONDS
    except (TypeError, ValueError):
        return DEFAULT_LEASE_SECONDS
