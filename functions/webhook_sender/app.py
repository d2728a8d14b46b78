"""Webhook sender: WebhookQueue → HMAC-signed POSTs (urllib, no SDK) to subscribers' endpoints,
secret per subscriber from Secrets Manager. Thin: the work is herald.channels (webhook_delivery,
webhook_http, sender)."""

from __future__ import annotations

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics

from herald.channels.credentials import SecretSource
from herald.channels.handler import sender_handler
from herald.channels.settings import WebhookSenderSettings
from herald.channels.webhook_delivery import WebhookDeliverer
from herald.channels.webhook_http import UrllibWebhookTransport
from herald.channels.wiring import processor_for, sender_for, stores_for
from herald.rendering import default_renderer
from herald.settings import load
from herald.tracing import LazyTracer

logger = Logger()
tracer = LazyTracer()  # X-Ray on the first sampled invocation, not at cold start (decision 031)
metrics = EphemeralMetrics()  # its own state: the local stack runs every sender in one process

settings = load(WebhookSenderSettings)
dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
secrets = SecretSource(max_age=settings.secrets_max_age_seconds)

stores = stores_for(settings, dynamodb)
deliverer = WebhookDeliverer(
    UrllibWebhookTransport(
        timeout=settings.webhook_timeout_seconds, allow_loopback=settings.webhook_allow_loopback
    ),
    default_renderer(),
    secrets,
    secret_prefix=settings.webhook_secret_prefix,
)
sender = sender_for(deliverer, settings, stores, sqs=sqs, metrics=metrics)
processor = processor_for(settings, sqs=sqs, logger=logger, metrics=metrics)

lambda_handler = sender_handler(sender, processor, logger=logger, tracer=tracer, metrics=metrics)
