"""Batch processing shared by the SQS consumers.

A record that can never succeed (it does not validate, names an unknown type, ...) is rejected:
logged with its event id and the reason, and moved to the queue's DLQ at once with the reason as
message attributes, so an operator sees why without digging through logs and the record does not
burn `maxReceiveCount` retries. Anything else that fails is reported as a batch item failure and
retried by SQS (then redriven to the DLQ after `maxReceiveCount`). The attribute names, shared with
the channel senders' outage dead-letters and the `herald redrive` CLI, are in `herald.dead_letter`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from herald.dead_letter import (
    EVENT_ID_ATTRIBUTE,
    MESSAGE_ID_ATTRIBUTE,
    REJECTION_ATTRIBUTE,
    string_attribute,
)
from herald.tracing import LazyTracer

__all__ = [
    "REJECTION_ATTRIBUTE",
    "LambdaHandler",
    "RejectedRecord",
    "RejectingBatchProcessor",
    "batch_handler",
    "rejection_reason",
]

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


class RejectedRecord(Exception):
    """This record can never be processed; it goes to the DLQ with `reason`."""

    def __init__(self, reason: str, event_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id


def problems(error: ValidationError, limit: int = 10) -> str:
    """What failed validation, by field path and message, without the offending values."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in error.errors()[:limit]
    )


def rejection_reason(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        return f"invalid event: {problems(error)}"
    return str(error)


class RejectingBatchProcessor(BatchProcessor):
    """A powertools BatchProcessor that sends permanently bad records straight to a DLQ."""

    def __init__(
        self,
        *,
        model: Any,
        sqs: Any,
        dead_letter_queue_url: Callable[[], str],
        logger: Logger,
        event_id_of: Callable[[str | None], str | None],
        on_rejected: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(event_type=EventType.SQS, model=model, raise_on_entire_batch_failure=False)
        self._sqs = sqs
        self._dead_letter_queue_url = dead_letter_queue_url
        self._log = logger
        self._event_id_of = event_id_of
        self._on_rejected = on_rejected

    def failure_handler(self, record: Any, exception: Any):  # type: ignore[override]
        error = exception[1]
        if not isinstance(error, RejectedRecord | ValidationError):
            return super().failure_handler(record, exception)
        message_id = getattr(record, "message_id", None) or getattr(record, "messageId", None)
        raw = next((r for r in self.records if r.get("messageId") == message_id), {})
        event_id = getattr(error, "event_id", None) or self._event_id_of(raw.get("body"))
        reason = error.reason if isinstance(error, RejectedRecord) else rejection_reason(error)
        self._log.error(
            "record rejected", extra={"event_id": event_id, "message_id": message_id, "reason": reason}
        )
        try:
            self._sqs.send_message(
                QueueUrl=self._dead_letter_queue_url(),
                MessageBody=raw.get("body") or "",
                MessageAttributes={
                    REJECTION_ATTRIBUTE: string_attribute(reason),
                    EVENT_ID_ATTRIBUTE: string_attribute(event_id or "unknown"),
                    MESSAGE_ID_ATTRIBUTE: string_attribute(message_id or "unknown"),
                },
            )
        except Exception:  # the DLQ is unreachable: let SQS retry and redrive instead
            self._log.exception("could not move the rejected record to the DLQ", extra={"event_id": event_id})
            return super().failure_handler(record, exception)
        if self._on_rejected:
            self._on_rejected(reason)
        return self.success_handler(record=raw, result={"rejected": reason})


def batch_handler(
    record_handler: Callable[..., Any],
    processor: RejectingBatchProcessor,
    *,
    logger: Logger,
    tracer: Tracer | LazyTracer,
    metrics: Metrics | EphemeralMetrics,
    around: Callable[[dict[str, Any], LambdaContext], AbstractContextManager[Any]] | None = None,
) -> LambdaHandler:
    """The Lambda entry point of an SQS consumer: one decorator stack (context in the logs, a
    trace, metrics flushed with the cold start), the batch reported with partial failures.
    `around(event, context)`: a block the records are handled in (the push sender sends the
    batch's records together there first)."""

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler
    @metrics.log_metrics(capture_cold_start_metric=True)
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        with around(event, context) if around is not None else nullcontext():
            return process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            )

    return lambda_handler
