"""The Lambda entry point every channel sender shares: one decorator stack, one place.

A sender function's `app.py` builds its provider adapter and deliverer at cold start and ends with

    lambda_handler = sender_handler(sender, processor, logger=logger, tracer=tracer, metrics=metrics)

Each sender function serves exactly one channel, so `channel` is a default dimension of every
metric it emits (`Delivered`, `DeliveryUncertain`, `RecordsRejected`, ... with `channel=sms`), not
a suffix of the metric's name. Pass an `EphemeralMetrics`: `Metrics` instances share their
dimensions process-wide, and the local stack runs every sender in one process.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.batch import LambdaHandler, RejectingBatchProcessor, batch_handler
from herald.channels.sender import ChannelRecord, ChannelSender

__all__ = ["LambdaHandler", "sender_handler"]


def sender_handler(
    sender: ChannelSender,
    processor: RejectingBatchProcessor,
    *,
    logger: Logger,
    tracer: Tracer,
    metrics: Metrics | EphemeralMetrics,
) -> LambdaHandler:
    """SQS batch → one `sender.handle_record` per record, partial batch failures reported."""
    metrics.set_default_dimensions(channel=sender.channel.value)

    @tracer.capture_method
    def send_one(record: ChannelRecord, lambda_context: LambdaContext | None = None) -> dict[str, Any]:
        return sender.handle_record(record, lambda_context)

    return batch_handler(send_one, processor, logger=logger, tracer=tracer, metrics=metrics)
