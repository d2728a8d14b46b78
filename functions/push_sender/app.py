"""Push sender: PushQueue → FCM (firebase-admin), one message per device token, every message of
an SQS batch sent together (one suppression read, one concurrent send; decision 026) while each
record keeps its own claim and outcome; dead tokens are removed; an undeliverable escalation primary
fails its task token. Thin: the work is herald.channels (push_delivery, fcm, sender)."""

from __future__ import annotations

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics

from herald.channels.credentials import SecretBacked, SecretSource
from herald.channels.fcm import FcmPushProvider
from herald.channels.handler import sender_handler
from herald.channels.lazy import LazyPushProvider
from herald.channels.push_delivery import PushDeliverer
from herald.channels.settings import PushSenderSettings
from herald.channels.wiring import processor_for, sender_for, stores_for
from herald.rendering import default_renderer
from herald.settings import load
from herald.tracing import LazyTracer

logger = Logger()
tracer = LazyTracer()  # X-Ray on the first sampled invocation, not at cold start (decision 031)
metrics = EphemeralMetrics()  # its own state: the local stack runs every sender in one process

settings = load(PushSenderSettings)
dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
sfn = boto3.client("stepfunctions")
secrets = SecretSource(max_age=settings.secrets_max_age_seconds)

stores = stores_for(settings, dynamodb)
fcm = LazyPushProvider(
    "fcm",
    SecretBacked(
        secrets,
        settings.fcm_secret_arn,
        lambda secret: FcmPushProvider.from_secret(secret, timeout=settings.provider_timeout_seconds),
    ),
)
deliverer = PushDeliverer(fcm, default_renderer(), stores.suppression)
sender = sender_for(deliverer, settings, stores, sqs=sqs, sfn=sfn, metrics=metrics)
processor = processor_for(settings, sqs=sqs, logger=logger, metrics=metrics)

lambda_handler = sender_handler(sender, processor, logger=logger, tracer=tracer, metrics=metrics)
