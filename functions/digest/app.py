"""Digest: a schedule (DigestSchedule, every 15 minutes by default) → one email per person listing
their medium notifications still unread `DigestDelaySeconds` after creation, at their local daytime.
Thin: the work is herald.digest (decision 020); the email goes through the Email queue and the email
sender (its claim, suppression and rendering)."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.catalog import load_catalog
from herald.digest import DigestService, DigestSettings
from herald.rendering import default_renderer
from herald.settings import load
from herald.tracing import LazyTracer

logger = Logger()
tracer = LazyTracer()  # X-Ray on the first sampled invocation, not at cold start (decision 031)
metrics = EphemeralMetrics()  # its own state: the local stack runs every function in one process

settings = load(DigestSettings)
service = DigestService(
    dynamodb=boto3.client("dynamodb"),
    sqs=boto3.client("sqs"),
    settings=settings,
    catalog=load_catalog(),
    renderer=default_renderer(),
    metrics=metrics,
)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(scheduled_at=event.get("time"))
    report = service.run(time_left=lambda: context.get_remaining_time_in_millis() / 1000)
    return report.as_dict()
