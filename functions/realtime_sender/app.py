"""Realtime sender: RealtimeQueue → the in-app render on the inbox record, then one Pusher event
on a `private-user-<id>` the presence table holds occupied; a vacant channel is not triggered
(not_delivered, `RealtimeSkippedVacant`) and fails an escalation primary's task token.
Thin: the work is herald.channels (realtime_delivery, sender)."""

from __future__ import annotations

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics

from herald.channels.credentials import SecretBacked, SecretSource
from herald.channels.handler import sender_handler
from herald.channels.lazy import LazyRealtimeProvider
from herald.channels.pusher_realtime import PusherRealtimeProvider
from herald.channels.realtime_delivery import PresenceReader, RealtimeDeliverer
from herald.channels.settings import RealtimeSenderSettings
from herald.channels.wiring import processor_for, sender_for, stores_for
from herald.rendering import default_renderer
from herald.settings import load
from herald.tracing import LazyTracer

logger = Logger()
tracer = LazyTracer()  # X-Ray on the first sampled invocation, not at cold start (decision 031)
metrics = EphemeralMetrics()  # its own state: the local stack runs every sender in one process

settings = load(RealtimeSenderSettings)
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
deliverer = RealtimeDeliverer(
    pusher,
    default_renderer(),
    PresenceReader(dynamodb, settings.presence_table),
    presence_max_age_seconds=settings.presence_max_age_seconds,
    metrics=metrics,
)
sender = sender_for(deliverer, settings, stores, sqs=sqs, sfn=sfn, metrics=metrics)
processor = processor_for(settings, sqs=sqs, logger=logger, metrics=metrics)

lambda_handler = sender_handler(sender, processor, logger=logger, tracer=tracer, metrics=metrics)
