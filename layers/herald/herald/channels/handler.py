"""The Lambda entry point every channel sender shares: one decorator stack, one place.

A sender function's `app.py` builds its provider adapter and deliverer at cold start and ends with

    lambda_handler = sender_handler(sender, processor, logger=logger, tracer=tracer, metrics=metrics)

Each sender function serves exactly one channel, so `channel` is a default dimension of every
metric it emits (`Delivered`, `DeliveryUncertain`, `RecordsRejected`, ... with `channel=sms`), not
a suffix of the metric's name. Pass an `EphemeralMetrics`: `Metrics` instances share their
dimensions process-wide, and the local stack runs every sender in one process.

A channel whose deliverer batches (push, decision 026) first sends the batch's records together
(`ChannelSender.send_together`); each record is then settled on its own by `handle_record`, so a
record's failure is still that record's batch item failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.batch import LambdaHandler, RejectingBatchProcessor, batch_handler
from herald.channels.sender import ChannelRecord, ChannelSender
from herald.tracing import LazyTracer

__all__ = ["LambdaHandler", "sender_handler"]


def sender_handler(
    sender: ChannelSender,
    processor: RejectingBatchProcessor,
    *,
    logger: Logger,
    tracer: Tracer | LazyTracer,
    metrics: Metrics | EphemeralMetrics,
) -> LambdaHandler:
    """SQS batch → one `sender.handle_record` per record, partial batch failures reported."""
    metrics.set_default_dimensions(channel=sender.channel.value)

    @tracer.capture_method
    def send_one(record: ChannelRecord, lambda_context: LambdaContext | None = None) -> dict[str, Any]:
        return sender.handle_record(record, lambda_context)

    @tracer.capture_method(capture_response=False)  # outcomes and exceptions: not trace metadata
    def send_together(records: list[dict[str, Any]], lambda_context: LambdaContext) -> dict[str, Any]:
        return sender.send_together(records, lambda_context)

    @contextmanager
    def together(event: dict[str, Any], lambda_context: LambdaContext) -> Iterator[None]:
        with sender.settled(send_together(list(event.get("Records") or []), lambda_context)):
            yield

    around = together if sender.sends_together else None
    return batch_handler(send_one, processor, logger=logger, tracer=tracer, metrics=metrics, around=around)
