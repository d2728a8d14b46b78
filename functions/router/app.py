"""Router: ingest queue → decision → channel queues / escalation. Thin: the work is herald.routing."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from herald.batch import RejectingBatchProcessor
from herald.catalog import load_catalog
from herald.ingest import IngestEnvelope, IngestRecord, peek_envelope, peek_event_id
from herald.routing.service import RouterService
from herald.settings import RouterSettings, load
from herald.tracing import LazyTracer

logger = Logger()
tracer = LazyTracer()  # X-Ray on the first sampled invocation, not at cold start (decision 031)
metrics = Metrics()

settings = load(RouterSettings)  # read once per cold start; nothing is cached in the layer
dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
service = RouterService(
    dynamodb=dynamodb,
    sqs=sqs,
    scheduler=boto3.client("scheduler"),
    sfn=boto3.client("stepfunctions"),
    settings=settings,
    catalog=load_catalog(),
    metrics=metrics,
)
# A person's notification is idempotent by its own record (decision 030). A fan-out page and a
# deferral keep their result here: a repeated page would start a second chain of continuations, a
# repeated deferral a second delayed copy. Records
# outlive every way a message can come back: SQS retention (4 days), EventBridge retries (24 h) and
# a redrive from the DLQ (14 days).
IDEMPOTENCY_SECONDS = 15 * 24 * 3600
idempotency_config = IdempotencyConfig(
    event_key_jmespath="key", raise_on_no_idempotency_key=True, expires_after_seconds=IDEMPOTENCY_SECONDS
)
persistence = DynamoDBPersistenceLayer(table_name=settings.tables.idempotency, boto3_client=dynamodb)
processor = RejectingBatchProcessor(
    model=IngestRecord,
    sqs=sqs,
    dead_letter_queue_url=lambda: settings.ingest_dlq_url,
    logger=logger,
    event_id_of=peek_event_id,
    on_rejected=lambda reason: metrics.add_metric(name="RecordsRejected", unit="Count", value=1),
)


class RoutingWork(BaseModel):
    key: str
    envelope: IngestEnvelope


@idempotent_function(data_keyword_argument="work", config=idempotency_config, persistence_store=persistence)
def route_once(work: RoutingWork) -> dict[str, Any]:
    return service.route(work.envelope)


@tracer.capture_method
def route_record(record: IngestRecord) -> dict[str, Any]:
    envelope = record.body
    logger.append_keys(event_id=envelope.request.event_id)
    try:
        if envelope.request.audience is not None or service.defers(envelope):
            return route_once(work=RoutingWork(key=envelope.idempotency_key, envelope=envelope))
        return service.route(envelope, owner=record.messageId)
    except Exception:
        service.abandon(record.messageId)
        raise
    finally:
        logger.remove_keys(["event_id"])


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config.register_lambda_context(context)
    envelopes = [e for r in event.get("Records", []) if (e := peek_envelope(r.get("body"))) is not None]
    service.prefetch(envelopes)
    service.begin_batch()
    response = process_partial_response(
        event=event, record_handler=route_record, processor=processor, context=context
    )
    refused = service.end_batch()  # the batch's channel messages, sent together
    failures = response.setdefault("batchItemFailures", [])
    already = {failure["itemIdentifier"] for failure in failures}
    failures += [{"itemIdentifier": owner} for owner in sorted(refused) if owner not in already]
    return response
