"""SMS sender: SmsQueue → Twilio (messaging service or from-number, status callback); STOP
(21610) suppresses the phone; marketing only with recorded consent. Thin: the work is
herald.channels (sms_delivery, sender)."""

from __future__ import annotations

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics

from herald.channels.credentials import SecretBacked, SecretSource
from herald.channels.handler import sender_handler
from herald.channels.lazy import LazySmsProvider
from herald.channels.settings import SmsSenderSettings
from herald.channels.sms_delivery import SmsDeliverer
from herald.channels.twilio_sms import TwilioSmsProvider
from herald.channels.wiring import processor_for, sender_for, stores_for
from herald.rendering import default_renderer
from herald.settings import load
from herald.tracing import LazyTracer

logger = Logger()
tracer = LazyTracer()  # X-Ray on the first sampled invocation, not at cold start (decision 031)
metrics = EphemeralMetrics()  # its own state: the local stack runs every sender in one process

settings = load(SmsSenderSettings)
dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
sfn = boto3.client("stepfunctions")  # an escalation's SMS step answers its task token
secrets = SecretSource(max_age=settings.secrets_max_age_seconds)

stores = stores_for(settings, dynamodb)
twilio = LazySmsProvider(
    "twilio",
    SecretBacked(
        secrets,
        settings.twilio_secret_arn,
        lambda secret: TwilioSmsProvider.from_secret(secret, timeout=settings.provider_timeout_seconds),
    ),
)
deliverer = SmsDeliverer(
    twilio, default_renderer(), stores.suppression, status_callback_url=settings.status_callback_url
)
sender = sender_for(deliverer, settings, stores, sqs=sqs, sfn=sfn, metrics=metrics)
processor = processor_for(settings, sqs=sqs, logger=logger, metrics=metrics)

lambda_handler = sender_handler(sender, processor, logger=logger, tracer=tracer, metrics=metrics)
