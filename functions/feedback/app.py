"""Feedback: FeedbackQueue (SES events from the default bus, source `aws.ses`) → the notifications'
delivery log, the suppression list and marketing opt-outs. Thin: the work is herald.ses_feedback
and herald.feedback (decision 022)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from herald.batch import RejectingBatchProcessor
from herald.delivery import DeliveryLedger
from herald.feedback import FeedbackRecorder
from herald.ses_feedback import SesEvent, SesFeedback, SesFeedbackRecord, SoftBounces, peek_event_id
from herald.settings import FeedbackSettings, load
from herald.stores.suppression import SuppressionStore
from herald.stores.users import UserStore
from herald.tracing import LazyTracer

logger = Logger()
tracer = LazyTracer()  # X-Ray on the first sampled invocation, not at cold start (decision 031)
metrics = EphemeralMetrics()  # its own state: the local stack runs every function in one process

settings = load(FeedbackSettings)  # read once per cold start; nothing is cached in the layer
dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
tables = settings.tables
feedback = SesFeedback(
    FeedbackRecorder(
        DeliveryLedger(dynamodb, tables.notifications),
        SuppressionStore(dynamodb, tables.suppression),
        UserStore(dynamodb, tables.users),
    ),
    SoftBounces(dynamodb, tables.rate_counters, window=timedelta(days=settings.soft_bounce_window_days)),
    threshold=settings.soft_bounce_threshold,
    configuration_set=settings.ses_configuration_set,
)
processor = RejectingBatchProcessor(
    model=SesFeedbackRecord,
    sqs=sqs,
    dead_letter_queue_url=lambda: settings.dlq_url,
    logger=logger,
    event_id_of=peek_event_id,
    on_rejected=lambda reason: metrics.add_metric(name="SesEventsRejected", unit="Count", value=1),
)
# An SES event reaches the queue at least once (EventBridge and SQS both retry): applying it twice
# would log it twice. Keyed on the EventBridge event id, kept longer than any redelivery path (SQS
# retention 4 days, a DLQ redrive within its 14).
IDEMPOTENCY_SECONDS = 15 * 24 * 3600
idempotency_config = IdempotencyConfig(
    event_key_jmespath="key", raise_on_no_idempotency_key=True, expires_after_seconds=IDEMPOTENCY_SECONDS
)
persistence = DynamoDBPersistenceLayer(table_name=tables.idempotency, boto3_client=dynamodb)


class FeedbackWork(BaseModel):
    key: str
    event: SesEvent


@idempotent_function(data_keyword_argument="work", config=idempotency_config, persistence_store=persistence)
def apply_once(work: FeedbackWork) -> dict[str, Any]:
    return feedback.apply(work.event).summary()


@tracer.capture_method
def apply_record(record: SesFeedbackRecord) -> dict[str, Any]:
    event = record.body
    logger.append_keys(ses_event_id=event.id, detail_type=event.detail_type)
    try:
        summary = apply_once(work=FeedbackWork(key=f"ses#{event.id}", event=event))
    finally:
        logger.remove_keys(["ses_event_id", "detail_type"])
    if summary["ignored"]:
        metrics.add_metric(name="SesEventsIgnored", unit="Count", value=1)
    for kind, count in summary["counts"].items():
        metrics.add_metric(name=f"SesFeedback_{kind}", unit="Count", value=count)
    if summary["suppressed"]:
        metrics.add_metric(name="SesAddressesSuppressed", unit="Count", value=summary["suppressed"])
    return summary


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=apply_record, processor=processor, context=context
    )
