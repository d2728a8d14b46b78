"""Webhook sender: WebhookQueue → HMAC-signed POSTs (urllib, no SDK) to subscribers' endpoints,
secret per subscriber from Secrets Manager. Thin: the work is herald.channels (webhook_delivery,
webhook_http, sender)."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.channels.credentials import SecretSource
from herald.channels.sender import ChannelRecord
from herald.channels.settings import WebhookSenderSettings, load_settings
from herald.channels.webhook_delivery import WebhookDeliverer
from herald.channels.webhook_http import UrllibWebhookTransport
from herald.channels.wiring import processor_for, sender_for, stores_for
from herald.rendering import default_renderer

logger = Logger()
tracer = Tracer()
metrics = Metrics()

settings = load_settings(WebhookSenderSettings)
dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
secrets = SecretSource(max_age=settings.secrets_max_age_seconds)

stores = stores_for(settings, dynamodb)
deliverer = WebhookDeliverer(
    UrllibWebhookTransport(timeout=settings.webhook_timeout_seconds),
    default_renderer(),
    secrets,
    secret_prefix=settings.webhook_secret_prefix,
)
sender = sender_for(deliverer, settings, stores, sqs=sqs, metrics=metrics)
processor = processor_for(settings, sqs=sqs, logger=logger, channel="webhook", metrics=metrics)


@tracer.capture_method
def send_one(record: ChannelRecord, lambda_context: LambdaContext | None = None) -> dict[str, Any]:
    return sender.handle_record(record, lambda_context)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=send_one, processor=processor, context=context
    )
