"""The pipeline every channel sender runs for one SQS record.

    parse body → (not before its time) → claim the channel on the notification record
      → deliver: resolve the recipient, re-check suppression / consent, render, call the provider
      → apply effects (dead tokens, opted-out phones) → record the outcome + delivery log
      → escalation: an undeliverable primary fails the task token → metrics

Outcomes and SQS:

- a body that is not a ChannelMessage for this queue's channel is rejected: moved to the DLQ at
  once with the reason (`herald.batch.RejectingBatchProcessor`), never retried;
- sent / failed / suppressed / not delivered: recorded, the record succeeds (SQS deletes it);
- retry later: recorded as `retry` (which releases the claim), the message's visibility is set
  to an exponential backoff with full jitter over its `ApproximateReceiveCount` (or the
  provider's Retry-After when longer), and `RetryLaterError` is raised so the powertools
  BatchProcessor reports a batch item failure: SQS redelivers after the backoff and moves the
  message to the DLQ after the queue's `maxReceiveCount`;
- a duplicate (the channel is already final) is a no-op; one whose claim is still held by another
  invocation is retried after the claim expires.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from botocore.exceptions import ClientError
from pydantic import ValidationError, field_validator

from herald.batch import RejectedRecord
from herald.catalog import Catalog, UnknownNotificationType
from herald.channels.context import ChannelDeliverer, DeliveryContext, Skip
from herald.channels.result import (
    CHANNEL_VACANT,
    DEAD_TOKEN,
    Accepted,
    Effects,
    PermanentFailure,
    RetryLater,
    SendResult,
    short,
)
from herald.delivery import (
    UNDELIVERED_STATES,
    AlreadyFinal,
    Claim,
    DeliveryLedger,
    DeliveryState,
    InFlight,
    LogEntry,
)
from herald.messages import ChannelMessage, parse_channel_body
from herald.rendering import TemplateRenderError, TemplateSourceError
from herald.stores.keys import push_address, sms_address
from herald.stores.suppression import SuppressionStore
from herald.stores.users import UserStore
from herald.users import UserProfile

logger = Logger(child=True)

SQS_MAX_VISIBILITY_SECONDS = 43200
DEFAULT_LEASE_SECONDS = 300
LEASE_MARGIN_SECONDS = 30
ESCALATION_ERROR = "Herald.PrimaryUndeliverable"
# Task tokens the state machine no longer waits for: the escalation already moved on.
FINISHED_TASK_ERRORS = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})
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
class Backoff:
    """Full-jitter exponential backoff over the receive count, in whole seconds."""

    base_seconds: float = 20.0
    max_seconds: int = 900
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, receive_count: int, retry_after: float | None = None) -> int:
        ceiling = min(float(self.max_seconds), self.base_seconds * 2 ** max(0, receive_count - 1))
        seconds = self.rng.uniform(0, ceiling)
        if retry_after is not None:
            seconds = max(seconds, retry_after)
        return int(min(SQS_MAX_VISIBILITY_SECONDS, max(1, math.ceil(seconds))))


@dataclass(frozen=True)
class Outcome:
    """What happened to one record."""

    state: str  # a DeliveryState value, or "duplicate" / "in_flight"
    provider: str | None = None
    provider_message_id: str | None = None
    reason: str | None = None
    retry_after: float | None = None

    @property
    def retry(self) -> bool:
        return self.state in (DeliveryState.RETRY.value, "in_flight")


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
        clock: Callable[[], datetime] = utc_now,
        deadline_margin_seconds: float = 25.0,
    ) -> None:
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
        self._backoff = backoff or Backoff()
        self._clock = clock

    # -- SQS record --------------------------------------------------------------------------

    def handle_record(self, record: ChannelRecord, lambda_context: Any = None) -> dict[str, Any]:
        """The BatchProcessor's record handler: returns a summary or raises for SQS to retry."""
        message = record.body
        if message.channel != self.channel:
            raise RejectedRecord(f"a {message.channel} message on the {self.channel} queue", message.event_id)
        receive_count = _receive_count(record)
        if (
            lambda_context is not None
            and lambda_context.get_remaining_time_in_millis() < self._deadline_margin_ms
        ):
            # Too close to the invocation's deadline for a provider call to finish: a call cut off by
            # the Lambda timeout would leave an unknowable ("uncertain") delivery. Hand it back unclaimed.
            self._back_off(record, 1)
            raise RetryLaterError("the invocation's deadline is too near to start a send", 1)
        wait = self._seconds_until(message.not_before)
        if wait > 0:
            delay = min(wait, SQS_MAX_VISIBILITY_SECONDS)
            self._back_off(record, delay)
            raise RetryLaterError(f"not before {message.not_before}", delay)
        outcome = self.process(message, attempt=receive_count, lease_seconds=_lease_seconds(lambda_context))
        if outcome.retry:
            if outcome.state == "in_flight":
                delay = int(min(SQS_MAX_VISIBILITY_SECONDS, max(1, math.ceil(outcome.retry_after or 1))))
            else:
                delay = self._backoff.delay(receive_count, outcome.retry_after)
            self._back_off(record, delay)
            raise RetryLaterError(outcome.reason or outcome.state, delay)
        return {"state": outcome.state, "provider": outcome.provider, **_ids(message)}

    def _back_off(self, record: ChannelRecord, seconds: int) -> None:
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self._queue_url, ReceiptHandle=record.receiptHandle, VisibilityTimeout=int(seconds)
            )
        except ClientError:  # the queue's own visibility timeout applies instead
            logger.exception("could not change the message's visibility")

    def _seconds_until(self, moment: datetime | None) -> int:
        if moment is None:
            return 0
        return max(0, math.ceil((moment - self._clock()).total_seconds()))

    # -- one message -------------------------------------------------------------------------

    def process(
        self, message: ChannelMessage, *, attempt: int = 1, lease_seconds: int = DEFAULT_LEASE_SECONDS
    ) -> Outcome:
        """Claim, deliver, record. Never raises for a provider's answer; raises for AWS errors."""
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
        if claim.took_over_stale:
            self._count("StaleClaimResent")
            logger.warning(
                "resending after a stale claim (receiver deduplicates on Idempotency-Key)",
                extra=_ids(message),
            )

        context: DeliveryContext | None = None
        try:
            context = DeliveryContext(
                message=message,
                entry=self._catalog.entry(message.type),
                now=self._clock(),
                load_profile=self._load_profile,
            )
            result: SendResult | Skip = self.deliverer.deliver(context)
        except UnknownNotificationType as error:
            result = PermanentFailure("catalog", str(error), code="unknown_type")
        except TemplateRenderError as error:
            result = PermanentFailure("renderer", short(error), code=type(error).__name__)
        except TemplateSourceError as error:
            result = RetryLater("renderer", short(error), code="template_source")
        except Exception as error:
            # no provider answered: release the claim so that a retry may send
            self._ledger.finish(
                claim,
                DeliveryState.RETRY,
                LogEntry(
                    self.channel, "error", detail=short(f"{type(error).__name__}: {error}"), attempt=attempt
                ),
                reason=short(error),
            )
            self._count("DeliveryErrors")
            raise

        self._apply_effects(message, result)
        attributes = context.record_attributes if context is not None else {}
        return self._record(message, claim, result, attributes, attempt)

    def _record(
        self,
        message: ChannelMessage,
        claim: Claim,
        result: SendResult | Skip,
        attributes: dict[str, Any],
        attempt: int,
    ) -> Outcome:
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
        self._ledger.finish(
            claim,
            state,
            entry,
            provider_message_id=provider_id,
            reason=reason,
            code=code,
            set_attributes=attributes or None,
        )
        self._count(_METRIC_BY_STATE[state])
        log = logger.warning if state is DeliveryState.RETRY else logger.info
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
        if message.task_token and state in UNDELIVERED_STATES:
            self._fail_escalation(message, f"{self.channel.value} {state.value}: {reason or detail}")
        retry_after = result.retry_after if isinstance(result, RetryLater) else None
        return Outcome(state.value, provider, provider_id, reason or detail, retry_after)

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
            if claim.state is DeliveryState.SENT:
                self._ledger.store_task_token(message)  # the ack endpoint needs it
            elif claim.state in UNDELIVERED_STATES:
                self._fail_escalation(message, f"{self.channel.value} already {claim.state.value}")
        return Outcome(
            "duplicate" if not claim.just_marked_uncertain else claim.state.value, reason=claim.state.value
        )

    # -- effects and escalation --------------------------------------------------------------

    def _apply_effects(self, message: ChannelMessage, result: SendResult | Skip) -> None:
        effects: Effects = getattr(result, "effects", None) or Effects()
        if not effects:
            return
        provider = getattr(result, "provider", self.channel.value)
        try:
            for token in effects.dead_tokens:
                self._suppression.suppress(push_address(token), reason="dead_token", source=provider)
                try:
                    self._users.remove_device(message.user_id, token)
                except ClientError as error:
                    if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                        raise  # no profile any more: nothing to remove
                self._count("DeadTokensRemoved")
            if effects.opt_out_phone:
                self._suppression.suppress(
                    sms_address(effects.opt_out_phone), reason="opted_out", source=provider
                )
                self._count("PhonesOptedOut")
        except ClientError:
            # the outcome must still be recorded; the next failure will report the effect again
            logger.exception(
                "could not apply the provider's effects", extra={**_ids(message), "effects": repr(effects)}
            )
            self._count("EffectErrors")

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
        """`<name>_<channel>`: powertools' dimensions are process-wide, the name is not."""
        if self._metrics is not None:
            self._metrics.add_metric(name=f"{name}_{self.channel.value}", unit="Count", value=1)


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
    if result.effects.opt_out_phone:
        state = DeliveryState.SUPPRESSED
    elif result.code in NOT_DELIVERED_CODES:
        state = DeliveryState.NOT_DELIVERED
    else:
        state = DeliveryState.FAILED
    return state, result.provider, result.reason, result.code, None, result.reason


def _ids(message: ChannelMessage) -> dict[str, str]:
    return {"notification_id": message.notification_id, "channel": message.channel.value}


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
