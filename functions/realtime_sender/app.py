"""Realtime sender: RealtimeQueue → the in-app render on the inbox record, then a Pusher event on
an occupied `private-user-<id>`; a vacant channel fails an escalation primary's task token.
Thin: the work is herald.channels (realtime_delivery, sender)."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.channels.credentials import SecretBacked, SecretSource
from herald.channels.lazy import LazyRealtimeProvider
from herald.channels.pusher_realtime import PusherRealtimeProvider
from herald.channels.realtime_delivery import RealtimeDeliverer
from herald.channels.sender import ChannelRecord
from herald.channels.settings import RealtimeSenderSettings, load_settings
from herald.channels.wiring import processor_for, sender_for, stores_for
from herald.rendering import default_renderer

logger = Logger()
tracer = Tracer()
metrics = Metrics()

settings = load_settings(RealtimeSenderSettings)
dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
sfn = boto3.client("stepfunctions")
secrets = SecretSource(max_age=settings.secrets_max_age_seconds)

stores = stores_for(settings, dynamodb)
pusher = LazyRealtimeProvider(
    "pusher",
    SecretBacked(
        secrets,
        settings.pusher_secret_arn,
        lambda secret: PusherRealtimeProvider.from_secret(secret, timeout=settings.provider_timeout_seconds),
    ),
)
deliverer = RealtimeDeliverer(pusher, default_renderer())
sender = sender_for(deliverer, settings, stores, sqs=sqs, sfn=sfn, metrics=metrics)
processor = processor_for(settings, sqs=sqs, logger=logger, channel="realtime", metrics=metrics)


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
