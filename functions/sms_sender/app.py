"""SMS sender: SmsQueue → Twilio (messaging service or from-number, status callback); STOP
(21610) suppresses the phone; marketing only with recorded consent. Thin: the work is
herald.channels (sms_delivery, sender)."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.channels.credentials import SecretBacked, SecretSource
from herald.channels.lazy import LazySmsProvider
from herald.channels.sender import ChannelRecord
from herald.channels.settings import SmsSenderSettings, load_settings
from herald.channels.sms_delivery import SmsDeliverer
from herald.channels.twilio_sms import TwilioSmsProvider
from herald.channels.wiring import processor_for, sender_for, stores_for
from herald.rendering import default_renderer

logger = Logger()
tracer = Tracer()
metrics = Metrics()

settings = load_settings(SmsSenderSettings)
dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
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
sender = sender_for(deliverer, settings, stores, sqs=sqs, metrics=metrics)
processor = processor_for(settings, sqs=sqs, logger=logger, channel="sms", metrics=metrics)


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
