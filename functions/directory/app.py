"""Directory: DirectoryQueue (`UserUpserted` / `UserDeleted` from the Herald bus) → the Users table,
in the producers' version order; a `UserDeleted` erases the person (herald.erasure). Thin: the work
is herald.directory (decisions 014 and 017)."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics

from herald.batch import RejectingBatchProcessor, batch_handler
from herald.directory import Directory, DirectoryRecord, peek_event_id
from herald.erasure import Erasure
from herald.settings import DirectorySettings, load
from herald.tracing import LazyTracer

logger = Logger()
tracer = LazyTracer()  # X-Ray on the first sampled invocation, not at cold start (decision 031)
metrics = EphemeralMetrics()  # its own state: the local stack runs every function in one process

settings = load(DirectorySettings)  # read once per cold start; nothing is cached in the layer
sqs = boto3.client("sqs")
dynamodb = boto3.client("dynamodb")
directory = Directory(
    dynamodb,
    settings.users_table,
    tombstone_days=settings.tombstone_days,
    erasure=Erasure.for_tables(dynamodb, settings.tables, tombstone_days=settings.tombstone_days),
)
processor = RejectingBatchProcessor(
    model=DirectoryRecord,
    sqs=sqs,
    dead_letter_queue_url=lambda: settings.dlq_url,
    logger=logger,
    event_id_of=peek_event_id,
    on_rejected=lambda reason: metrics.add_metric(name="DirectoryEventsRejected", unit="Count", value=1),
)


@tracer.capture_method
def apply_record(record: DirectoryRecord) -> dict[str, Any]:
    envelope = record.body
    event = envelope.detail
    applied = directory.apply(event)
    metrics.add_metric(
        name="DirectoryEventsApplied" if applied else "DirectoryEventsStale", unit="Count", value=1
    )
    logger.info(
        "directory event applied"
        if applied
        # a repeated UserDeleted still finished its (idempotent) erasure
        else "directory event not newer than the stored version: nothing changed",
        extra={"detail_type": envelope.detail_type, "user_id": event.user_id, "version": event.version},
    )
    return {"applied": applied}


lambda_handler = batch_handler(apply_record, processor, logger=logger, tracer=tracer, metrics=metrics)
